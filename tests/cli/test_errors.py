"""Input mistakes print one message and exit with code 2, for every ``wsae-lens`` command.

Each case feeds one command a bad input that is caught before any heavy work (no model is loaded) and
checks the exit code, that the message names the field or file, and that no traceback is printed.
Internal errors, ``--debug`` and ``WSAE_LENS_DEBUG=1`` keep the traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from sae_lens import TopKSAE, TopKSAEConfig
from typer.testing import CliRunner

from tests.conftest import tiny_runner_config_dict
from wsae_lens.cli import app
from wsae_lens.cli.errors import USER_ERROR_EXIT_CODE, UserError, user_error_of

ROOT = Path(__file__).resolve().parents[2]
TRACEBACK_MARKS = ("Traceback", "╭─")
runner = CliRunner()


def command_names() -> set[str]:
    return {info.name or info.callback.__name__ for info in app.registered_commands}


def saved_topk(path: Path, d_in: int = 16, **cfg_changes) -> Path:
    """A tiny saved SAELens TopK SAE; ``cfg_changes`` edit its cfg.json afterwards."""
    TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=64, k=4)).save_model(str(path))
    if cfg_changes:
        cfg = json.loads((path / "cfg.json").read_text())
        cfg.update(cfg_changes)
        (path / "cfg.json").write_text(json.dumps(cfg))
    return path


def runner_yaml(tmp_path: Path, name: str = "runner.yaml", **sae_fields) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(tiny_runner_config_dict(tmp_path, **sae_fields)))
    return path


def bad_inputs(tmp_path: Path) -> dict[str, list[tuple[list[str], list[str]]]]:
    """Per command: (arguments, words the message must contain)."""
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"this is not a safetensors file")
    bad_json = tmp_path / "autointerp.json"
    bad_json.write_text("{n_latents: 3")
    narrow = tmp_path / "narrow.pt"
    torch.save(torch.randn(32, 8), narrow)
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    (no_weights / "cfg.json").write_text("{}")
    topk = saved_topk(tmp_path / "topk")
    unknown_architecture = saved_topk(tmp_path / "unknown_arch", architecture="weighted_topkk")
    sweep_yaml = tmp_path / "sweep.yaml"
    sweep_yaml.write_text("alpha: [1]\n")
    demo_yaml = tmp_path / "demo.yaml"
    demo_yaml.write_text("arms_typo: []\n")
    overrides = tmp_path / "finetune.yaml"
    overrides.write_text("training_tokens: 1024\n")
    return {
        "train": [
            ([str(runner_yaml(tmp_path, "bogus.yaml", weighting="bogus"))], ["weighting='bogus'", "choose one of"]),
            ([str(runner_yaml(tmp_path, "unknown.yaml", architecture="weighted_topkk"))], ["architecture", "weighted_topkk"]),
        ],
        "estimate": [
            ([str(runner_yaml(tmp_path, "negative_alpha.yaml", weighting_alpha=-1)), "-o", str(tmp_path / "g.safetensors")],
             ["weighting_alpha", ">= 0"]),
        ],
        "finetune": [
            ([str(topk), str(overrides), "--weighting", "bogus"], ["weighting='bogus'"]),
            ([str(unknown_architecture), str(overrides)], ["architecture", "weighted_topkk"]),
        ],
        "publish": [([str(no_weights), "user/repo", "--dry-run", str(tmp_path / "staged")], ["sae_weights.safetensors"])],
        "toy-benchmark": [(["--geometry", "bogus"], ["geometry='bogus'"])],
        "zf-plot": [
            ([str(topk), str(corrupt)], [str(corrupt)]),
            ([str(topk), str(narrow)], ["d_in"]),  # an incompatible SAE/activation pair
        ],
        "sweep": [([str(sweep_yaml)], ["unknown sweep fields", "alpha"])],
        "demo": [
            (["--epochs", "0", "--output-dir", str(tmp_path / "demo")], ["epochs", "positive"]),
            (["--config", str(demo_yaml)], ["unknown fields", "arms_typo"]),
        ],
        "autointerp": [
            ([str(topk), "--config", str(bad_json)], [str(bad_json)]),
            ([str(unknown_architecture)], ["architecture", "weighted_topkk"]),
        ],
    }


def test_every_command_has_a_bad_input_case(tmp_path):
    assert set(bad_inputs(tmp_path)) == command_names()


@pytest.mark.parametrize("command", sorted(command_names()))
def test_bad_input_is_one_message_with_exit_code_2(command, tmp_path):
    for arguments, words in bad_inputs(tmp_path)[command]:
        result = runner.invoke(app, [command, *arguments])
        message = " ".join(result.output.split())
        assert result.exit_code == USER_ERROR_EXIT_CODE, (arguments, result.output, result.exception)
        assert "Error:" in message, result.output
        for word in words:
            assert word in message, (word, result.output)
        for mark in TRACEBACK_MARKS:
            assert mark not in result.output, result.output


def test_missing_and_unknown_config_fields_are_named(tmp_path):
    cfg = tiny_runner_config_dict(tmp_path)
    del cfg["sae"]["d_in"]
    cfg["lrr"] = 1e-3
    (tmp_path / "missing.yaml").write_text(yaml.safe_dump(cfg))
    result = runner.invoke(app, ["train", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2 and "missing the required field(s) 'd_in'" in result.output, result.output
    del cfg["lrr"]
    cfg["sae"]["d_in"] = 16
    cfg["lrr"] = 1e-3
    (tmp_path / "unknown.yaml").write_text(yaml.safe_dump(cfg))
    result = runner.invoke(app, ["train", str(tmp_path / "unknown.yaml")])
    assert result.exit_code == 2 and "has no field 'lrr'" in result.output, result.output


def test_internal_errors_keep_their_traceback(monkeypatch):
    def broken_run_demo(*args, **kwargs):
        raise ValueError("an internal bug, not the user's input")

    monkeypatch.setattr("wsae_lens.pipeline.demo.run_demo", broken_run_demo)
    result = runner.invoke(app, ["demo"])
    assert result.exit_code == 1 and isinstance(result.exception, ValueError)
    assert user_error_of(result.exception) is None


def caught(function) -> BaseException:
    try:
        function()
    except Exception as err:  # noqa: BLE001
        return err
    raise AssertionError("no exception")


def test_classifier_separates_input_errors_from_internal_ones():
    from wsae_lens import WeightedTopKTrainingSAEConfig

    config_error = user_error_of(caught(lambda: WeightedTopKTrainingSAEConfig(d_in=4, d_sae=8, k=2, weighting="x")))
    assert config_error is not None and "weighting='x'" in config_error.message
    assert user_error_of(caught(lambda: int("not a number"))) is None  # a ValueError outside input validation
    assert user_error_of(caught(lambda: json.loads("{reply"))) is None  # JSON met while working, not an input
    assert user_error_of(caught(lambda: {}["key"])) is None
    missing = user_error_of(caught(lambda: open("/no/such/file.yaml")))
    assert missing is not None and "/no/such/file.yaml" in missing.message


def test_debug_environment_variable_reraises_user_errors():
    result = runner.invoke(app, ["demo", "--epochs", "0"], env={"WSAE_LENS_DEBUG": "1"})
    assert result.exit_code == 1 and isinstance(result.exception, ValueError)
    assert "epochs must be positive" in str(result.exception)


def test_incompatible_sae_and_activation_source_is_a_user_error(tiny_model, byte_dataset):
    from wsae_lens.autointerp import AutoInterpConfig, ModelActivationSource, byte_token_strings
    from wsae_lens.autointerp.records import scan_source

    sae = TopKSAE(TopKSAEConfig(d_in=8, d_sae=32, k=2))  # the tiny model's residual stream is 16 wide
    source = ModelActivationSource(tiny_model, byte_dataset, "blocks.0.hook_resid_post", token_strings=byte_token_strings)
    with pytest.raises(ValueError) as caught:
        scan_source(sae, source, AutoInterpConfig(n_contexts=4, batch_size=4))
    error = user_error_of(caught.value)
    assert isinstance(error, UserError) and "d_in=8" in error.message and "blocks.0.hook_resid_post" in error.message


def run_cli(*arguments: str, **env: str) -> subprocess.CompletedProcess:
    """``python -m wsae_lens.cli ...`` in a fresh process (the real entry point, rich tracebacks included)."""
    environment = {key: value for key, value in os.environ.items() if key != "WSAE_LENS_DEBUG"}
    environment.update(PYTHONPATH=str(ROOT), COLUMNS="200", **env)
    return subprocess.run([sys.executable, "-m", "wsae_lens.cli", *arguments], capture_output=True, text=True,
                          cwd=ROOT, env=environment, timeout=300)


@pytest.mark.slow
def test_entry_point_prints_one_message_and_debug_shows_the_traceback(tmp_path):
    config = runner_yaml(tmp_path, weighting="bogus")
    plain = run_cli("train", str(config))
    assert plain.returncode == 2, plain.stderr
    assert f"Error: {config}: invalid WeightedTopKTrainingSAEConfig: weighting='bogus' is not supported" in plain.stderr
    assert not any(mark in plain.stdout + plain.stderr for mark in TRACEBACK_MARKS), plain.stderr
    assert len(plain.stderr.strip().splitlines()) <= 3, plain.stderr

    debug = run_cli("--debug", "train", str(config))
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr and "weighting='bogus' is not supported" in debug.stderr
