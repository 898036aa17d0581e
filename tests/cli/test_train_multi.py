"""`wsae-lens train` with `saes:`: several SAEs (an α sweep, two hooks, gba, topafa) from one YAML, one forward pass."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch
import yaml
from sae_lens import SAE
from sae_lens.training.sae_trainer import SAETrainer
from typer.testing import CliRunner

from tests.cli.test_train import output_of
from tests.multi.helpers import RESID_MID, multi_config_dict
from wsae_lens.cli import app

runner = CliRunner()

SWEEP = {
    "alpha_0": {"architecture": "weighted_topk", "k": 4, "weighting": "uniform"},
    "alpha_0.5": {"architecture": "weighted_topk", "k": 4, "weighting": "variance", "weighting_alpha": 0.5,
                  "weighting_tokens": 512},
    "alpha_1": {"architecture": "weighted_topk", "k": 4, "weighting": "variance", "weighting_alpha": 1.0,
                "weighting_tokens": 512},
    "gba_mid": {"architecture": "gba", "n_groups": 2, "hook_name": RESID_MID},
    "topafa_mid": {"architecture": "topafa", "hook_name": RESID_MID},
}


@pytest.fixture
def multi_yaml(tmp_path, byte_dataset, tiny_model, monkeypatch):
    """A `saes:` YAML over a local parquet dataset; SAELens's model loader gives the tiny model."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    byte_dataset.select(range(128)).to_parquet(str(data_dir / "train.parquet"))
    cfg = multi_config_dict(tmp_path, SWEEP, dataset_path=str(data_dir))
    cfg.pop("logger")
    path = tmp_path / "multi.yaml"
    path.write_text(yaml.safe_dump(cfg))
    monkeypatch.setattr("sae_lens.multi_sae_training_runner.load_model", lambda *a, **k: tiny_model)
    return path, cfg


def test_train_cli_trains_every_sae_of_a_saes_yaml(tmp_path, multi_yaml):
    path, cfg = multi_yaml
    result = runner.invoke(app, ["train", str(path)])
    assert result.exit_code == 0, result.output
    for name, fields in SWEEP.items():
        assert f"Trained {name}: {fields['architecture']} SAE on {fields.get('hook_name', cfg['hook_name'])}" in result.output
        loaded = SAE.load_from_disk(tmp_path / "output" / name)
        saved = json.loads((tmp_path / "output" / name / "cfg.json").read_text())
        assert loaded.cfg.architecture() == fields["architecture"]
        assert saved["metadata"]["hook_name"] == fields.get("hook_name", cfg["hook_name"])
        assert saved["metadata"]["token_filter"]["median_norm"] > 0
        if fields.get("weighting") == "variance":
            assert saved["weighting_alpha"] == fields["weighting_alpha"] and saved["weighting_tokens"] == 512
    gammas = {name: SAE.load_from_disk(tmp_path / "output" / name).gamma for name in ("alpha_0", "alpha_0.5", "alpha_1")}
    assert float(gammas["alpha_0"].std()) == 0.0
    spread = {name: float(g.max() / g.min()) for name, g in gammas.items()}
    assert 1.0 < spread["alpha_0.5"] < spread["alpha_1"]  # Γ = Var^α / norm: α = 1 spreads it more
    assert f"Saved {len(SWEEP)} SAEs to {tmp_path / 'output'}/<name>/" in output_of(result)


def test_train_cli_saes_yaml_errors_name_the_field(tmp_path):
    cfg = multi_config_dict(tmp_path, SWEEP)
    cfg["saes"]["alpha_1"]["weighting_alfa"] = 2.0
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    result = runner.invoke(app, ["train", str(path)])
    assert result.exit_code != 0
    assert "saes.alpha_1 (weighted_topk): unknown field 'weighting_alfa'. Did you mean 'weighting_alpha'?" in output_of(result)


def signal_once_after(monkeypatch, steps: int, signum: int) -> None:
    """Send ``signum`` once, during training step ``steps`` (1-based) of the first SAE's trainer."""
    step = SAETrainer.step
    sent: list[bool] = []

    def step_then_signal(self, batch):
        out = step(self, batch)
        if self.n_training_steps + 1 == steps and not sent:
            sent.append(True)
            os.kill(os.getpid(), signum)
        return out

    monkeypatch.setattr(SAETrainer, "step", step_then_signal)


def test_train_cli_saes_sigterm_writes_a_multi_sae_checkpoint(tmp_path, multi_yaml, monkeypatch):
    path, cfg = multi_yaml
    signal_once_after(monkeypatch, 3, signal.SIGTERM)
    result = runner.invoke(app, ["train", str(path)])
    assert result.exit_code == 143, result.output
    checkpoint = tmp_path / "checkpoints" / str(3 * cfg["train_batch_size_tokens"])
    assert f"checkpoint written to {checkpoint}" in output_of(result) and "Traceback" not in result.output
    assert {p.name for p in checkpoint.iterdir()} >= {*SWEEP, "runner_cfg.json", "activations_store_state.safetensors"}
    for name in SWEEP:  # every SAE after the same 3 steps, with Γ, optimizer and trainer state
        state = torch.load(checkpoint / name / "trainer_state.pt")
        assert state["n_training_steps"] == 3 and len(state["optimizer"]["state"]) > 0
        assert {"sae_weights.safetensors", "cfg.json"} <= {p.name for p in (checkpoint / name).iterdir()}
    assert not (tmp_path / "output").exists()
