"""``wsae-lens sweep`` end to end on the embedded model at a tiny budget: 2 weightings × 2 α × 1 seed."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from wsae_lens.cli import app
from wsae_lens.pipeline.sweep import SweepConfig, setting_of

pytestmark = pytest.mark.slow


def test_sweep_trains_the_grid_and_writes_table_and_plot(tmp_path):
    config = {
        "weightings": {"variance": {"weighting": "variance"},
                       "semantic": {"weighting": "semantic_consistency"}},
        "alphas": [0.5, 1.0],
        "seeds": [0],
        "comparison": {"dataset_path": "embedded:pydoc-topics", "layer": 3, "context_size": 64, "training_tokens": 4096,
                       "epochs": 1, "expansion_factor": 2, "k": 16, "train_batch_size_tokens": 512,
                       "model_batch_size": 8, "held_out_rows": 8, "eval_rows": 4, "progress": False,
                       "output_dir": str(tmp_path / "sweep")},
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["sweep", str(path)])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert sorted(report["metrics"]) == sorted(arm.name for arm in SweepConfig.from_dict(config).arms())
    assert set(report["summary"]) == {"uniform", "variance_a0.5", "variance_a1", "semantic_a0.5", "semantic_a1"}
    for setting, metrics in report["summary"].items():
        ev = metrics["explained_variance"]
        uniform_ev = report["metrics"]["uniform_seed0"]["explained_variance"]
        own_ev = report["metrics"][f"{setting}_seed0"]["explained_variance"]
        assert ev["mean"] == pytest.approx(own_ev) and ev["delta"] == pytest.approx(own_ev - uniform_ev)
    table = (tmp_path / "sweep" / "sweep.md").read_text()
    assert "| variance_a0.5 |" in table and "Δ EV" in table and "| uniform |" in table
    assert (tmp_path / "sweep" / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert setting_of("variance_a-0.5_seed12") == ("variance_a-0.5", 12)
