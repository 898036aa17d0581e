"""The options of examples/reproduce_gba_toy.py that the commands in docs/gba.md use."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "reproduce_gba_toy.py"


@pytest.fixture(scope="module")
def example():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("reproduce_gba_toy", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_start_at_truth_puts_the_true_features_in_every_model(example):
    # lr ≈ 0: the models keep their starting directions, so every true feature is found exactly
    results = example.run([0], steps=2, batch_size=64, lr=1e-12, d_sae=256, update_interval=10,
                          only=["GBA", "TopK k=20"], start_at_truth=True)
    assert results["GBA"][0.9] == [1.0] and results["TopK k=20"][0.9] == [1.0]
    cold = example.run([0], steps=2, batch_size=64, lr=1e-12, d_sae=256, update_interval=10, only=["GBA"])
    assert cold["GBA"][0.9][0] < 0.2  # random unit directions in d = 42


def test_gba_options_reach_the_gba_config_only(example):
    configs = example.model_configs(42, 256, 10, example.parse_options(["n_groups=20", "tied_weights=false"]))
    assert configs["GBA"].n_groups == 20 and configs["GBA"].tied_weights is False
    assert configs["BA (1 group)"].n_groups == 1 and configs["BA (1 group)"].tied_weights is True
    assert configs["GBA fitted range"].n_groups == 10 and configs["GBA fitted range"].freq_low == 0.05


def test_bad_options_are_refused_by_name(example, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["reproduce_gba_toy.py", "--gba-option", "n_grups=20"])
    with pytest.raises(SystemExit):
        example.main()
    assert "n_grups" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="FIELD=VALUE"):
        example.parse_options(["n_groups"])
    monkeypatch.setattr(sys, "argv", ["reproduce_gba_toy.py", "--only", "GBA", "TopK k=25"])
    with pytest.raises(SystemExit):
        example.main()
    err = capsys.readouterr().err
    assert "TopK k=25" in err and "GBA fitted range" in err


def test_sparsities_choose_the_toy_and_hide_the_published_numbers(example, monkeypatch, capsys):
    results = example.run([0], steps=2, batch_size=64, lr=1e-12, d_sae=256, update_interval=10,
                          only=["GBA"], start_at_truth=True, sparsities=(3,))
    assert results["GBA"][0.9] == [1.0]
    with pytest.raises(ValueError, match="sparsity"):  # the value reaches the toy
        example.run([0], steps=2, batch_size=64, lr=1e-12, d_sae=256, update_interval=10, only=["GBA"],
                    sparsities=(200,))
    example.print_table(results, (3,))
    assert "100.0 / 100.0" not in capsys.readouterr().out
    example.print_table(results)
    assert "100.0 / 100.0" in capsys.readouterr().out  # the imbalanced toy's published GBA row
    monkeypatch.setattr(sys, "argv", ["reproduce_gba_toy.py", "--sparsities", "3", "200"])
    with pytest.raises(SystemExit):
        example.main()
    assert "--sparsities" in capsys.readouterr().err
