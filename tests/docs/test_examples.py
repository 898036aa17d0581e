"""The README quickstart and every Python block of docs/getting-started.md run, as written.

Offline, one substitution (the ``tiny_offline`` fixture, described in the getting-started page): SAELens's
model and dataset loading give the tiny byte-level HookedTransformer and text of ``tests/conftest.py``,
and ``LanguageModelSAERunnerConfig.from_dict`` swaps the model, hook, dataset, SAE sizes and token
budget of the documented config for theirs. Architecture, weighting, output path and everything else
are the documented ones.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sae_lens import LanguageModelSAERunnerConfig

from tests.conftest import tiny_runner_config_dict

ROOT = Path(__file__).resolve().parents[2]
SWAPPED_SAE_FIELDS = ("d_in", "d_sae", "k")
KEPT_RUNNER_FIELDS = ("sae", "output_path")


def python_blocks(markdown: str) -> list[str]:
    """The contents of the ```python fenced blocks, in order."""
    return re.findall(r"^```python\n(.*?)^```", markdown, flags=re.S | re.M)


def readme_quickstart() -> str:
    section = (ROOT / "README.md").read_text().split("\n## Quickstart\n", 1)[1].split("\n## ", 1)[0]
    (block,) = python_blocks(section)
    return block


def getting_started_blocks() -> list[str]:
    return python_blocks((ROOT / "docs" / "getting-started.md").read_text())


@pytest.fixture
def tiny_offline(tmp_path, monkeypatch, tiny_model, byte_dataset):
    """Run documented code offline on the tiny model; the working directory is a fresh temp folder."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    byte_dataset.to_parquet(str(data_dir / "train.parquet"))
    original_from_dict = LanguageModelSAERunnerConfig.from_dict

    def tiny_from_dict(cfg_dict):
        tiny = tiny_runner_config_dict(tmp_path / "runner")
        swapped = {**cfg_dict, **{key: value for key, value in tiny.items() if key not in KEPT_RUNNER_FIELDS}}
        swapped["dataset_path"] = str(data_dir)
        swapped["sae"] = {**cfg_dict["sae"], **{key: tiny["sae"][key] for key in SWAPPED_SAE_FIELDS}}
        return original_from_dict(swapped)

    monkeypatch.setattr(LanguageModelSAERunnerConfig, "from_dict", tiny_from_dict)
    monkeypatch.setattr("sae_lens.load_model.load_model", lambda *args, **kwargs: tiny_model)
    monkeypatch.setattr("sae_lens.llm_sae_training_runner.load_model", lambda *args, **kwargs: tiny_model)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def run_blocks(blocks: list[str], source: str) -> dict:
    namespace: dict = {"__name__": "__docs__"}
    for index, block in enumerate(blocks):
        exec(compile(block, f"{source} (python block {index + 1})", "exec"), namespace)  # noqa: S102
    return namespace


def test_readme_quickstart_is_the_first_getting_started_block():
    assert readme_quickstart() == getting_started_blocks()[0]
    assert len(readme_quickstart().strip().splitlines()) <= 12


@pytest.mark.slow
def test_readme_quickstart_runs(tiny_offline):
    namespace = run_blocks([readme_quickstart()], "README.md")
    sae = namespace["sae"]
    assert type(sae).__name__ == "WeightedTopKSAE"
    assert sae.cfg.weighting == "variance" and sae.gamma.shape == (16,)
    assert (tiny_offline / "runs" / "wsae" / "cfg.json").is_file()


@pytest.mark.slow
def test_getting_started_code_runs(tiny_offline):
    blocks = getting_started_blocks()
    assert len(blocks) >= 3
    namespace = run_blocks(blocks, "docs/getting-started.md")
    assert namespace["sae"].cfg.architecture() == "weighted_topk"
