"""Shared helpers of the multi-SAE tests: a tiny-model config dict, recording each trainer's batches, and
training an SAE alone with SAELens's SAETrainer on recorded batches."""

from __future__ import annotations

import copy
from typing import Any

import torch
from sae_lens.registry import get_sae_training_class
from sae_lens.training.sae_trainer import SAETrainer

from tests.conftest import tiny_runner_config_dict

RESID_POST = "blocks.0.hook_resid_post"
RESID_MID = "blocks.0.hook_resid_mid"

SAES: dict[str, dict[str, Any]] = {
    "topk_var": {"architecture": "weighted_topk", "k": 4, "weighting": "variance", "weighting_tokens": 512},
    "topk_sc": {"architecture": "weighted_topk", "k": 4, "weighting": "semantic_consistency",
                "weighting_alpha": 0.5, "weighting_active_quantile": 0.9, "weighting_tokens": 1024,
                "hook_name": RESID_MID},
    "batchtopk": {"architecture": "weighted_batchtopk", "k": 4, "weighting": "variance", "weighting_alpha": 0.5,
                  "weighting_tokens": 768, "hook_name": RESID_MID},
    "standard": {"architecture": "weighted_standard"},
    "gba": {"architecture": "gba", "n_groups": 2, "update_interval": 5, "hook_name": RESID_MID},
    "topafa": {"architecture": "topafa"},
}


def multi_config_dict(tmp_path, saes: dict[str, dict[str, Any]] | None = None, **runner_fields: Any) -> dict[str, Any]:
    """A multi-SAE config for the tiny byte model (SAEs default to d_in 16, d_sae 64, hook resid_post): the
    single-SAE test config's runner fields, 1,024 training tokens, no periodic checkpoints."""
    saes = copy.deepcopy(SAES if saes is None else saes)
    runner = {key: value for key, value in tiny_runner_config_dict(tmp_path).items() if key not in ("sae", "verbose", "is_dataset_tokenized")}
    return {
        **runner,
        "training_tokens": 1024,
        "n_checkpoints": 0,
        **runner_fields,
        "saes": {name: {"d_in": 16, "d_sae": 64, **fields} for name, fields in saes.items()},
    }


def record_trainer_inputs(monkeypatch) -> dict[int, dict[str, Any]]:
    """Patch SAETrainer.step to record, per trainer, the SAE's state before its first step and every batch."""
    records: dict[int, dict[str, Any]] = {}
    step = SAETrainer.step

    def recording_step(self, batch):
        # the record holds the trainer, so its id cannot be reused by a later trainer (train_alone's)
        record = records.setdefault(id(self), {"trainer": self, "sae": self.sae, "batches": []})
        if not record["batches"]:
            record["initial"] = {k: v.detach().clone() for k, v in self.sae.state_dict().items()}
        record["batches"].append(batch.detach().clone())
        return step(self, batch)

    monkeypatch.setattr(SAETrainer, "step", recording_step)
    return records


def by_sae(records: dict[int, dict[str, Any]], saes: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The records keyed by SAE name."""
    return {name: next(r for r in records.values() if r["sae"] is sae) for name, sae in saes.items()}


def train_alone(sae_cfg: Any, initial: dict[str, torch.Tensor], batches: list[torch.Tensor], trainer_cfg: Any) -> Any:
    """One SAE from ``initial``, trained by SAELens's own SAETrainer.fit on ``batches``."""
    sae = get_sae_training_class(sae_cfg.architecture())[0](copy.deepcopy(sae_cfg))
    sae.load_state_dict(initial)
    trainer = SAETrainer(cfg=trainer_cfg, sae=sae, data_provider=iter(batches), evaluator=None, save_checkpoint_fn=None)
    return trainer.fit()


def max_relative_error(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> float:
    """max over tensors of ‖got − expected‖ / ‖expected‖ (absolute where expected is 0)."""
    assert got.keys() == expected.keys()
    worst = 0.0
    for key in expected:
        a, b = got[key].double(), expected[key].double()
        worst = max(worst, float((a - b).norm() / b.norm().clamp(min=1e-30)) if b.norm() > 0 else float((a - b).norm()))
    return worst
