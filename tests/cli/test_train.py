"""`wsae-lens train`: Γ estimated before training, and errors that name the problem before anything runs."""

from __future__ import annotations

import json

import torch
from sae_lens import SAE
from typer.testing import CliRunner

from wsae_lens.cli import app

runner = CliRunner()


def output_of(result) -> str:
    """CLI output with rich's box drawing and line wrapping removed."""
    return " ".join(result.output.replace("│", " ").split())


def test_train_cli_estimates_gamma_first(tmp_path, runner_yaml, tiny_model, byte_dataset, monkeypatch):
    """Γ at the first training step already equals Var^α of the first 512 kept tokens, computed here by hand."""
    from wsae_lens import WeightedTopKTrainingSAE
    from wsae_lens.estimators import scores_to_gamma

    path, cfg = runner_yaml
    gamma_at_step: list[torch.Tensor] = []
    forward = WeightedTopKTrainingSAE.training_forward_pass

    def recording_forward(self, step_input):
        gamma_at_step.append(self.gamma.detach().clone())
        return forward(self, step_input)

    monkeypatch.setattr(WeightedTopKTrainingSAE, "training_forward_pass", recording_forward)
    result = runner.invoke(app, ["train", str(path)])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "output" / "cfg.json").read_text())
    assert saved["weighting"] == "variance" and saved["weighting_tokens"] == 512

    # by hand: the dataset's rows in order through the model; the filter's median from the first store batch
    rows = torch.as_tensor(byte_dataset[:64]["input_ids"])
    _, cache = tiny_model.run_with_cache(rows, names_filter=[cfg["hook_name"]])
    acts = cache[cfg["hook_name"]].reshape(-1, 16)
    norms = acts.norm(dim=-1)
    first_batch = cfg["store_batch_size_prompts"] * cfg["context_size"]
    kept = acts[norms <= 10 * norms[:first_batch].median()][:512]
    expected = scores_to_gamma(kept.double().var(0), alpha=1.0).float()
    torch.testing.assert_close(gamma_at_step[0], expected, rtol=1e-4, atol=0)  # set before the first step
    torch.testing.assert_close(SAE.load_from_disk(tmp_path / "output").gamma, expected, rtol=1e-4, atol=0)


def test_missing_config_file(tmp_path):
    result = runner.invoke(app, ["train", str(tmp_path / "nope.yaml")])
    assert result.exit_code != 0
    assert "does not exist" in output_of(result)


def test_config_without_architecture(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("sae:\n  d_in: 16\n  d_sae: 64\nmodel_name: tiny\n")
    result = runner.invoke(app, ["train", str(path)])
    assert result.exit_code != 0
    assert "architecture" in output_of(result)


def test_unknown_architecture_lists_known_ones(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("sae:\n  architecture: weighted_topkk\n  d_in: 16\n  d_sae: 64\n")
    result = runner.invoke(app, ["train", str(path)])
    assert result.exit_code != 0
    assert "weighted_topkk" in output_of(result) and "weighted_topk" in output_of(result)


def test_invalid_yaml(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("sae: [unclosed\n")
    result = runner.invoke(app, ["train", str(path)])
    assert result.exit_code != 0
    assert "not valid YAML" in output_of(result)
