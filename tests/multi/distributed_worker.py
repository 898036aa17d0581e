"""One rank of the two-process ``distribute_saes`` test (``python -m tests.multi.distributed_worker RANK WORLD PORT DIR``).

Trains :data:`DISTRIBUTED_SAES` with ``distribute_saes: true`` on gloo and saves to ``DIR/rank<RANK>.pt``, for each
SAE this rank owns, its state before the first step, every (global) batch it trained on and its final state,
plus this rank's local (pre-exchange) batches per step.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

DISTRIBUTED_SAES = {  # round-robin: rank 0 gets topk_var and topafa, rank 1 gba and batchtopk
    "topk_var": {"architecture": "weighted_topk", "k": 4, "weighting": "variance", "weighting_tokens": 512},
    "gba": {"architecture": "gba", "n_groups": 2, "update_interval": 5, "hook_name": "blocks.0.hook_resid_mid"},
    "topafa": {"architecture": "topafa"},
    "batchtopk": {"architecture": "weighted_batchtopk", "k": 4, "weighting": "variance", "weighting_alpha": 0.5,
                  "weighting_tokens": 768},
}
TRAINING_TOKENS = 1024


def main(rank: int, world_size: int, port: int, directory: Path) -> None:
    import pytest

    from tests.conftest import byte_tokenised_text, tiny_byte_transformer
    from tests.multi.helpers import by_sae, multi_config_dict, record_trainer_inputs
    from wsae_lens.distributed import shutdown_distributed
    from wsae_lens.multi import WeightedMultiSAETrainingRunner, multi_config_from_dict
    from wsae_lens.multi.placement import ExchangingProvider

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    local_batches: list[dict[str, torch.Tensor]] = []

    def recording_next(self):
        local = next(self.provider)
        local_batches.append({hook: rows.clone() for hook, rows in local.items()})
        return self.placement.exchange(local)[0]

    with pytest.MonkeyPatch.context() as patch:
        records = record_trainer_inputs(patch)
        patch.setattr(ExchangingProvider, "__next__", recording_next)
        cfg = multi_config_from_dict(multi_config_dict(directory, DISTRIBUTED_SAES, distribute_saes=True,
                                                       training_tokens=TRAINING_TOKENS))
        runner = WeightedMultiSAETrainingRunner(cfg, override_model=tiny_byte_transformer(),
                                                override_dataset=byte_tokenised_text(n_sequences=128))
        try:
            saes = runner.run()
        finally:
            shutdown_distributed()
    owned = {
        name: {"initial": record["initial"], "batches": record["batches"],
               "final": {k: v.detach().clone() for k, v in saes[name].state_dict().items()}}
        for name, record in by_sae(records, saes).items()
    }
    torch.save({"saes": owned, "local": local_batches, "hooks": runner.cfg.hook_names_per_sae},
               directory / f"rank{rank}.pt")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))
