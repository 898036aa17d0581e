"""``wsae-lens train`` on the embedded SmolLM2-135M and corpus (tiny budget), and the offline hub error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from sae_lens import SAE
from typer.testing import CliRunner

from wsae_lens.cli import app


def embedded_config(tmp_path: Path, **fields) -> dict:
    return {
        "sae": {"architecture": "weighted_topk", "d_in": 576, "d_sae": 576, "k": 8, "weighting": "variance",
                "weighting_tokens": 256},
        "model_name": "embedded:smollm2-135m",
        "hook_name": "blocks.1.hook_resid_post",
        "dataset_path": "embedded:pydoc-topics",
        "streaming": False,
        "context_size": 32,
        "prepend_bos": False,
        "training_tokens": 1024,
        "train_batch_size_tokens": 256,
        "store_batch_size_prompts": 4,
        "n_batches_in_buffer": 16,
        "device": "cpu",
        "checkpoint_path": str(tmp_path / "checkpoints"),
        "n_checkpoints": 0,
        "output_path": str(tmp_path / "output"),
        **fields,
    }


def test_train_cli_runs_on_the_embedded_default(tmp_path) -> None:
    path = tmp_path / "embedded.yaml"
    path.write_text(yaml.safe_dump(embedded_config(tmp_path)))
    result = CliRunner().invoke(app, ["train", str(path)])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "output" / "cfg.json").read_text())
    assert saved["metadata"]["model_name"] == "embedded:smollm2-135m"
    assert saved["weighting"] == "variance" and saved["weighting_tokens"] == 256  # no special tokens to drop here
    sae = SAE.load_from_disk(tmp_path / "output")
    assert sae.cfg.d_in == 576 and sae.gamma.std() > 0


def test_offline_hub_model_names_the_embedded_default(tmp_path) -> None:
    path = tmp_path / "pythia.yaml"
    path.write_text(yaml.safe_dump(embedded_config(tmp_path, model_name="pythia-160m", dataset_path="monology/pile-uncopyrighted")))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "wsae_lens.cli", "train", str(path)], env=env, capture_output=True,
                          text=True, timeout=300, cwd=Path(__file__).parents[2])
    assert done.returncode == 1, done.stdout + done.stderr
    assert "embedded:smollm2-135m" in done.stderr and "pythia-160m" in done.stderr
    assert "Traceback" not in done.stderr


def test_estimate_cli_reads_an_embedded_runner_config(tmp_path) -> None:
    """The config `wsae-lens train` accepts works for `wsae-lens estimate` too (one config loader), and Γ is
    Var of the first kept tokens, recomputed here by hand from the model's own activations."""
    import torch

    from wsae_lens.estimators import scores_to_gamma
    from wsae_lens.pipeline.loading import load_runner_config

    path = tmp_path / "embedded.yaml"
    cfg = embedded_config(tmp_path)
    path.write_text(yaml.safe_dump(cfg))
    output = tmp_path / "gamma.safetensors"
    result = CliRunner().invoke(app, ["estimate", str(path), "-o", str(output)])
    assert result.exit_code == 0, result.output
    assert "256 tokens" in result.output and "token filter: dropped" in result.output

    from sae_lens.training.activations_store import ActivationsStore

    inputs = load_runner_config(path)
    store = ActivationsStore.from_config(inputs.model, inputs.runner_config(), override_dataset=inputs.dataset)
    rows = torch.cat([store.get_batch_tokens() for _ in range(4)])  # SAELens's own token stream, 16 rows
    _, cache = inputs.model.run_with_cache(rows, names_filter=[cfg["hook_name"]], stop_at_layer=2)
    acts, ids = cache[cfg["hook_name"]].reshape(-1, 576), rows.reshape(-1)
    norms = acts.norm(dim=-1)
    ordinary = torch.ones_like(ids, dtype=torch.bool)  # the config keeps SAELens's exclude_special_tokens=False
    first_batch = torch.arange(acts.shape[0]) < cfg["store_batch_size_prompts"] * cfg["context_size"]
    keep = ordinary & (norms <= 10 * norms[first_batch & ordinary].median())
    expected = scores_to_gamma(acts[keep][:256].double().var(0), alpha=1.0)
    from wsae_lens import load_gamma

    torch.testing.assert_close(load_gamma(output).double(), expected, rtol=1e-4, atol=1e-6)
