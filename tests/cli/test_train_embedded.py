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
