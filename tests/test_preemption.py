"""SIGINT/SIGTERM during training: a complete checkpoint, a one-line message, and an exact resume."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch
from sae_lens import LanguageModelSAERunnerConfig, TrainingSAE
from sae_lens.training.sae_trainer import SAETrainer
from typer.testing import CliRunner

from tests.cli.conftest import runner_yaml  # noqa: F401  (the CLI fixture: tiny model behind a YAML config)
from tests.conftest import tiny_runner_config_dict
from wsae_lens import TokenFilter, TrainingInterrupted, WeightedSAETrainingRunner
from wsae_lens.training import restore_token_filter
from wsae_lens.cli import app

STOP_AFTER_STEPS = 6
TRAIN_BATCH = 128
# What SAELens's periodic checkpoints hold (SAE incl. Γ, trainer/optimizer state, store, runner cfg).
CHECKPOINT_FILES = {
    "sae_weights.safetensors", "cfg.json", "sparsity.safetensors", "trainer_state.pt",
    "activation_scaler.json", "activations_store_state.safetensors", "runner_cfg.json",
}


def signal_after(monkeypatch, steps: int, signum: int) -> None:
    """Send ``signum`` to this process during training step number ``steps`` (1-based)."""
    step = SAETrainer.step

    def step_then_signal(self, batch):
        out = step(self, batch)
        if self.n_training_steps + 1 == steps:
            os.kill(os.getpid(), signum)
        return out

    monkeypatch.setattr(SAETrainer, "step", step_then_signal)


def cached_config(tmp_path: Path, cached_activations_dir: Path, **overrides) -> dict:
    base = tiny_runner_config_dict(tmp_path, weighting="variance", weighting_tokens=512)
    return {
        **base,
        "use_cached_activations": True,
        "cached_activations_path": str(cached_activations_dir),
        "training_tokens": 2048,
        "train_batch_size_tokens": TRAIN_BATCH,
        # one store batch (4 × 32 tokens) is one training batch, served in order: nothing sits in the
        # mixing buffer between steps (SAELens's store checkpoint records only the read position).
        "store_batch_size_prompts": 4,
        "n_batches_in_buffer": 4,
        "activations_mixing_fraction": 0.0,
        "n_checkpoints": 0,
        **overrides,
    }


def train(cfg: dict, tiny_model, byte_dataset):
    torch.manual_seed(0)  # the SAE's initial weights: the same in every run
    runner = WeightedSAETrainingRunner(LanguageModelSAERunnerConfig.from_dict(cfg), override_model=tiny_model,
                                       override_dataset=byte_dataset)
    return runner.run()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_interrupted_run_checkpoints_and_resumes_exactly(signum, tmp_path, tiny_model, byte_dataset,
                                                         cached_activations_dir, monkeypatch):
    reference = train(cached_config(tmp_path / "ref", cached_activations_dir), tiny_model, byte_dataset)

    cfg = cached_config(tmp_path / "run", cached_activations_dir)
    handler_before = signal.getsignal(signal.SIGTERM)  # earlier SAELens runs in this process may have set one
    with monkeypatch.context() as patch:
        signal_after(patch, STOP_AFTER_STEPS, signum)
        with pytest.raises(TrainingInterrupted) as caught:
            train(cfg, tiny_model, byte_dataset)
    interrupted = caught.value
    stopped_at = STOP_AFTER_STEPS * TRAIN_BATCH
    checkpoint = Path(cfg["checkpoint_path"]) / str(stopped_at)
    assert interrupted.checkpoint == checkpoint and interrupted.exit_code == 128 + signum
    assert str(interrupted) == (
        f"Interrupted ({signal.Signals(signum).name}) at {stopped_at:,} of 2,048 training tokens; checkpoint "
        f"written to {checkpoint}. Resume with resume_from_checkpoint: {checkpoint} in the config."
    )
    assert CHECKPOINT_FILES <= {p.name for p in checkpoint.iterdir()}
    state = torch.load(checkpoint / "trainer_state.pt")
    assert state["n_training_samples"] == stopped_at and state["n_training_steps"] == STOP_AFTER_STEPS
    assert len(state["optimizer"]["state"]) > 0  # Adam moments, not a fresh optimizer
    assert not (tmp_path / "run" / "output").exists()
    token_filter = TokenFilter(outlier_norm_ratio=10.0)
    restore_token_filter(token_filter, checkpoint)  # a resumed run drops the tokens the first one dropped
    assert token_filter.median_norm is not None
    assert token_filter.median_norm == TokenFilter.recorded_in(TrainingSAE.load_from_disk(checkpoint)).median_norm
    assert signal.getsignal(signal.SIGTERM) is handler_before  # handlers restored

    resumed = train({**cfg, "resume_from_checkpoint": str(checkpoint)}, tiny_model, byte_dataset)
    expected = reference.state_dict()
    got = resumed.state_dict()
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-6, atol=0)


def test_cli_sigterm_exits_143_with_one_line(runner_yaml, tmp_path, monkeypatch):
    path, cfg = runner_yaml
    signal_after(monkeypatch, 3, signal.SIGTERM)
    result = CliRunner().invoke(app, ["train", str(path)])
    assert result.exit_code == 143, result.output
    checkpoint = Path(cfg["checkpoint_path"]) / str(3 * cfg["train_batch_size_tokens"])
    lines = [line for line in result.output.splitlines() if "Interrupted" in line]  # one line of its own
    assert lines == [
        f"Interrupted (SIGTERM) at {3 * cfg['train_batch_size_tokens']:,} of {cfg['training_tokens']:,} training "
        f"tokens; checkpoint written to {checkpoint}. Resume with resume_from_checkpoint: {checkpoint} in the config."
    ]
    assert "Traceback" not in result.output
    assert CHECKPOINT_FILES <= {p.name for p in checkpoint.iterdir()}


def test_cli_ctrl_c_before_training_exits_130_without_traceback(runner_yaml, monkeypatch):
    path, _ = runner_yaml

    def interrupted(runner, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("wsae_lens.training.prepare_training", interrupted)
    result = CliRunner().invoke(app, ["train", str(path)])
    assert result.exit_code == 130, result.output
    assert result.output.strip().endswith("Interrupted before a checkpoint could be written; nothing was saved.")
    assert "Traceback" not in result.output
