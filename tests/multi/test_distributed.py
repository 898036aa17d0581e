"""``distribute_saes`` on two gloo ranks: each SAE trains on the global batch on its owner rank, exactly as
SAELens's SAETrainer trains it alone, in one process, on the same global batches."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import torch
from sae_lens import SAE

from tests.multi.distributed_worker import DISTRIBUTED_SAES, TRAINING_TOKENS
from tests.multi.helpers import max_relative_error, multi_config_dict, train_alone
from wsae_lens import TokenFilter
from wsae_lens.multi import multi_config_from_dict

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_distributed_saes_train_on_the_global_batch(tmp_path):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    workers = [subprocess.Popen([sys.executable, "-m", "tests.multi.distributed_worker", str(rank), "2", str(port),
                                 str(tmp_path)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
               for rank in range(2)]
    try:
        outputs = [worker.communicate(timeout=300)[0].decode() for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    for worker, output in zip(workers, outputs):
        assert worker.returncode == 0, output[-3000:]
    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(2)]
    assert sorted(ranks[0]["saes"]) == ["topafa", "topk_var"] and sorted(ranks[1]["saes"]) == ["batchtopk", "gba"]

    cfg = multi_config_from_dict(multi_config_dict(tmp_path, DISTRIBUTED_SAES, training_tokens=TRAINING_TOKENS))
    trainer_cfg = replace(cfg.to_sae_trainer_config(), n_checkpoints=0, checkpoint_path=None)
    steps = TRAINING_TOKENS // cfg.train_batch_size_tokens
    for owned in ranks:
        for name, record in owned["saes"].items():
            hook = cfg.hook_names_per_sae[name]
            assert len(record["batches"]) == steps
            for step, batch in enumerate(record["batches"]):  # rank 0's 64 rows, then rank 1's
                assert batch.shape == (128, 16)
                expected = torch.cat([ranks[0]["local"][step][hook], ranks[1]["local"][step][hook]])
                assert torch.equal(batch, expected), (name, step)
            alone = train_alone(cfg.saes[name], record["initial"], record["batches"], trainer_cfg)
            assert max_relative_error(record["final"], alone.state_dict()) <= 1e-6, name
    # the shards are disjoint: the two ranks' rows differ
    assert not torch.equal(ranks[0]["local"][0][cfg.hook_names_per_sae["gba"]], ranks[1]["local"][0][cfg.hook_names_per_sae["gba"]])
    # every SAE saved once, by its owner; both ranks filter with rank 0's median norm
    medians = {}
    for name in DISTRIBUTED_SAES:
        loaded = SAE.load_from_disk(tmp_path / "output" / name)
        medians.setdefault(loaded.cfg.metadata.hook_name, set()).add(TokenFilter.recorded_in(loaded).median_norm)
    assert all(len(values) == 1 for values in medians.values())
    assert SAE.load_from_disk(tmp_path / "output" / "topk_var").cfg.weighting_tokens == 512
    assert json.loads((tmp_path / "output" / "runner_cfg.json").read_text())["saes"].keys() == DISTRIBUTED_SAES.keys()
