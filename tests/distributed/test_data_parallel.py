"""Data-parallel training on 2 CPU ranks (gloo on 127.0.0.1) against one process on the same global batches.

Two ``torch.distributed.run`` launches (each costs ~15 s of imports on this machine, so they do many runs):

* the worker launch trains weighted TopK (float64 and float32), GBA and top-AFA for 50 steps, resumes a
  1-rank checkpoint, and finally has rank 1 SIGKILL itself mid-run;
* the CLI launch (``-m wsae_lens.cli``'s app, tiny model) is stopped by SIGTERM sent to torchrun.

Each rank reads every other row, so with ``activations_mixing_fraction: 0`` and 2-row per-rank batches the
2-rank global batch of every step holds exactly the rows of the 1-rank batch.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from sae_lens import SAE, TrainingSAE

from tests.conftest import tiny_runner_config_dict
from tests.distributed.worker import train
from wsae_lens.activations.store import SHARD_POSITIONS_KEY
from wsae_lens.training import WORLD_SIZE_KEY

ROOT = Path(__file__).resolve().parents[2]
STEPS = 50
BATCH = 128
MIDWAY = 3328  # the n_checkpoints=1 checkpoint: the first step past half of 50 × 128 tokens (26 steps)
KILL_STEP = 35
FAILURE_TIMEOUT_S = 30.0
"""A killed rank stops the job within this (torchrun's agent notices at once and tears the others down)."""
FLOAT64_RTOL = 1e-9
FLOAT32_RTOL = 1e-4
CHECKPOINT_FILES = {
    "sae_weights.safetensors", "cfg.json", "sparsity.safetensors", "trainer_state.pt",
    "activation_scaler.json", "activations_store_state.safetensors", "runner_cfg.json",
}


def config(tmp_path: Path, architecture: str, dtype: str = "float64", **overrides) -> dict:
    sae_fields = {"dtype": dtype}
    if architecture == "weighted_topk":
        sae_fields.update(weighting="variance", weighting_tokens=512)
    if architecture == "gba":
        sae_fields.update(update_interval=5, n_groups=4, freq_high=0.2, freq_low=0.02)
    cfg = tiny_runner_config_dict(tmp_path, architecture, **sae_fields)
    cfg.update(dtype=dtype, training_tokens=STEPS * BATCH, train_batch_size_tokens=BATCH, store_batch_size_prompts=4,
               n_batches_in_buffer=4, activations_mixing_fraction=0.0, dead_feature_window=5,
               feature_sampling_window=10, n_checkpoints=0, lr_warm_up_steps=0)
    cfg.update(overrides)
    return cfg


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(args: list[str], **env: str) -> subprocess.Popen:
    command = ["nice", "-n", "10", sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
               "--master-addr", "127.0.0.1", "--master-port", str(free_port()), "-m", *args]
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", **env}
    return subprocess.Popen(command, cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def assert_state_close(got: dict, expected: dict, rtol: float) -> None:
    """Every tensor within ``rtol`` of the largest |value| of its expected tensor."""
    assert got.keys() == expected.keys()
    for name, want in expected.items():
        have, want = got[name].double(), want.double()
        finite = torch.isfinite(want)
        assert torch.equal(have[~finite], want[~finite]), name  # e.g. GBA's reset peaks (−inf)
        have, want = have[finite], want[finite]
        if want.numel() == 0:
            continue
        diff = (have - want).abs().max().item()
        scale = max(want.abs().max().item(), 1e-12)
        assert diff <= rtol * scale, f"{name}: max |Δ| {diff:.3g} > {rtol:g} × {scale:.3g}"


def trained(tmp_path: Path, cfg: dict) -> dict:
    torch.set_num_threads(1)
    return {k: v.detach().clone() for k, v in train(cfg).state_dict().items()}


RUNS = {  # name: (architecture, dtype, tolerance)
    "weighted_topk": ("weighted_topk", "float64", FLOAT64_RTOL),
    "gba": ("gba", "float64", FLOAT64_RTOL),
    "topafa": ("topafa", "float64", FLOAT64_RTOL),
    "weighted_topk_float32": ("weighted_topk", "float32", FLOAT32_RTOL),
    "cached_activations": ("weighted_topk", "float64", FLOAT64_RTOL),
    "semantic_consistency": ("weighted_topk", "float64", FLOAT64_RTOL),
}


def run_config(tmp_path: Path, name: str, cached: Path) -> dict:
    architecture, dtype, _ = RUNS[name]
    overrides = {"n_checkpoints": 1} if name == "weighted_topk" else {}
    if name == "cached_activations":  # 64 cached sequences: 32 per rank, read in 4-sequence batches
        overrides.update(use_cached_activations=True, cached_activations_path=str(cached))
    cfg = config(tmp_path / name, architecture, dtype, **overrides)
    if name == "semantic_consistency":  # Γ from token-id labels, counted over the batches of both ranks
        cfg["sae"]["weighting"] = "semantic_consistency"
    return cfg


@pytest.fixture(scope="module")
def worker_launch(tmp_path_factory, cached_activations_dir):
    """1-rank references (in this process) and the 2-rank worker launch (runs, 1→2 resume, a killed rank)."""
    tmp = tmp_path_factory.mktemp("dp")
    one = {name: run_config(tmp / "one", name, cached_activations_dir) for name in RUNS}
    two = {name: run_config(tmp / "two", name, cached_activations_dir) for name in RUNS}
    references = {name: trained(tmp, cfg) for name, cfg in one.items()}
    one_rank_midway = Path(one["weighted_topk"]["checkpoint_path"]) / str(MIDWAY)
    resume = config(tmp / "two" / "resumed", "weighted_topk", resume_from_checkpoint=str(one_rank_midway))
    killed = config(tmp / "two" / "killed", "weighted_topk", n_checkpoints=1)
    kill_marker = tmp / "killed_at"
    plan = {"runs": [*({"config": cfg, "out": str(tmp / "out" / name)} for name, cfg in two.items()),
                     {"config": resume, "out": str(tmp / "out" / "resumed")},
                     {"config": killed, "out": str(tmp / "out" / "killed"),
                      "events": {"kill": [1, KILL_STEP, str(kill_marker)]}}]}
    (tmp / "plan.json").write_text(json.dumps(plan))
    process = torchrun(["tests.distributed.worker", str(tmp / "plan.json")])
    output, _ = process.communicate(timeout=300)
    ended = time.time()
    return {"tmp": tmp, "one": one, "two": two, "references": references, "resume": resume, "killed": killed,
            "returncode": process.returncode, "output": output, "ended": ended, "kill_marker": kill_marker}


def rank_state(launch: dict, name: str, rank: int) -> dict:
    path = launch["tmp"] / "out" / name / f"rank{rank}.pt"
    assert path.is_file(), launch["output"][-4000:]
    return torch.load(path)


@pytest.mark.parametrize("name", list(RUNS))
def test_two_ranks_equal_one_rank_on_the_same_global_batches(worker_launch, name):
    _, _, rtol = RUNS[name]
    reference = worker_launch["references"][name]
    for rank in (0, 1):
        assert_state_close(rank_state(worker_launch, name, rank), reference, rtol)
    # not vacuous: training moved the weights far beyond the tolerance
    assert reference["W_dec"].abs().max() > 0
    if name == "gba":  # biases were adapted from the firing statistics, which are in the state too
        assert (reference["bias"] < 0).any() and reference["last_window_freq"].lt(1).all()
    output_dir = Path(worker_launch["two"][name]["output_path"])
    saved = SAE.load_from_disk(str(output_dir))  # rank 0's save loads as SAELens's inference SAE
    assert saved.cfg.metadata[WORLD_SIZE_KEY] == 2
    assert json.loads((output_dir / "runner_cfg.json").read_text())[WORLD_SIZE_KEY] == 2
    single = SAE.load_from_disk(str(worker_launch["one"][name]["output_path"]))
    assert_state_close(saved.state_dict(), single.state_dict(), rtol)


def test_gamma_and_dead_latent_counters_equal_the_single_process_ones(worker_launch):
    one_dir = Path(worker_launch["one"]["weighted_topk"]["checkpoint_path"]) / str(MIDWAY)
    two_dir = Path(worker_launch["two"]["weighted_topk"]["checkpoint_path"]) / str(MIDWAY)
    one, two = TrainingSAE.load_from_disk(str(one_dir)), TrainingSAE.load_from_disk(str(two_dir))
    torch.testing.assert_close(two.gamma, one.gamma, rtol=1e-12, atol=0)
    assert two.cfg.weighting_tokens == one.cfg.weighting_tokens == 512  # tokens read over both ranks
    one_state, two_state = torch.load(one_dir / "trainer_state.pt"), torch.load(two_dir / "trainer_state.pt")
    for key in ("n_training_samples", "n_training_steps", "n_frac_active_samples"):
        assert two_state[key] == one_state[key], key
    for key in ("act_freq_scores", "n_forward_passes_since_fired"):
        assert torch.equal(two_state[key], one_state[key]), key
    assert one_state["n_forward_passes_since_fired"].gt(5).any()  # some latents were dead: AuxK was on


def test_two_rank_checkpoint_resumes_in_one_rank(worker_launch, tmp_path):
    checkpoint = Path(worker_launch["two"]["weighted_topk"]["checkpoint_path"]) / str(MIDWAY)
    assert CHECKPOINT_FILES <= {p.name for p in checkpoint.iterdir()}
    from safetensors.torch import load_file

    store = load_file(str(checkpoint / "activations_store_state.safetensors"))
    assert store[SHARD_POSITIONS_KEY].tolist() == [[52, 0], [52, 0]]  # 26 steps × 2 rows on each rank
    resumed = trained(tmp_path, config(tmp_path, "weighted_topk", resume_from_checkpoint=str(checkpoint)))
    assert_state_close(resumed, worker_launch["references"]["weighted_topk"], FLOAT64_RTOL)


def test_one_rank_checkpoint_resumes_in_two_ranks(worker_launch):
    for rank in (0, 1):
        assert_state_close(rank_state(worker_launch, "resumed", rank), worker_launch["references"]["weighted_topk"],
                           FLOAT64_RTOL)


def test_a_killed_rank_stops_the_job_naming_it(worker_launch):
    output = worker_launch["output"]
    assert worker_launch["returncode"] != 0, output[-4000:]
    killed_at = float(worker_launch["kill_marker"].read_text())
    assert worker_launch["ended"] - killed_at < FAILURE_TIMEOUT_S
    assert "rank      : 1" in output and "SIGKILL" in output, output[-4000:]
    assert not (worker_launch["tmp"] / "out" / "killed").exists()
    checkpoint = Path(worker_launch["killed"]["checkpoint_path"]) / str(MIDWAY)  # the last one, before the kill
    loaded = TrainingSAE.load_from_disk(str(checkpoint))
    uninterrupted = TrainingSAE.load_from_disk(str(Path(worker_launch["two"]["weighted_topk"]["checkpoint_path"]) / str(MIDWAY)))
    assert_state_close(loaded.state_dict(), uninterrupted.state_dict(), 0.0)


def test_cli_sigterm_stops_both_ranks_at_one_step_and_resumes(worker_launch, tmp_path):
    cfg = config(tmp_path, "weighted_topk")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    from tests.conftest import byte_tokenised_text

    byte_tokenised_text().to_parquet(str(data_dir / "train.parquet"))
    cfg["dataset_path"] = str(data_dir)
    path = tmp_path / "runner.yaml"
    path.write_text(yaml.safe_dump(cfg))
    marker = tmp_path / "paused"
    exits = tmp_path / "exits"
    exits.mkdir()
    process = torchrun(["tests.distributed.cli_entry", "train", str(path)], WSAE_TEST_EXIT_DIR=str(exits),
                       WSAE_TEST_EVENTS=json.dumps({"pause": [0, 6, str(marker)]}))
    deadline = time.monotonic() + 240
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.exists(), process.communicate()[0][-4000:]
    process.send_signal(signal.SIGTERM)  # torchrun forwards it to both ranks
    output, _ = process.communicate(timeout=120)
    checkpoint = Path(cfg["checkpoint_path"]) / str(6 * BATCH)
    message = (f"Interrupted (SIGTERM) at {6 * BATCH:,} of {STEPS * BATCH:,} training tokens; checkpoint written to "
               f"{checkpoint}. Resume with resume_from_checkpoint: {checkpoint} in the config.")
    assert [line for line in output.splitlines() if "Interrupted" in line] == [message], output[-4000:]
    assert {p.name: p.read_text() for p in exits.iterdir()} == {"rank0": "143", "rank1": "143"}, output[-4000:]
    assert "Data-parallel training on 2 ranks" in output
    assert CHECKPOINT_FILES <= {p.name for p in checkpoint.iterdir()}
    state = torch.load(checkpoint / "trainer_state.pt")
    assert state["n_training_samples"] == 6 * BATCH and state["n_training_steps"] == 6
    resumed = trained(tmp_path, {**config(tmp_path / "resume", "weighted_topk"),
                                 "resume_from_checkpoint": str(checkpoint)})
    assert_state_close(resumed, worker_launch["references"]["weighted_topk"], FLOAT64_RTOL)
