"""Integration: cache → filter → train arms → evaluate → save → reload, on the embedded SmolLM2-135M
(layer 3, tiny budget), plus the report folder."""

from __future__ import annotations

import json
import math
from pathlib import Path

import datasets
import pytest
import torch
from safetensors.torch import load_file
from sae_lens import SAE

from wsae_lens import WeightedTopKSAE
from wsae_lens.activations import TokenFilter
from wsae_lens.pipeline.comparison import Arm, ComparisonConfig, run_comparison
from wsae_lens.pipeline.report import METRICS_SHOWN, comparison_table, write_report

TINY = dict(
    dataset_path="embedded:pydoc-topics", layer=3, context_size=64, training_tokens=4096, epochs=2, expansion_factor=2,
    k=16, train_batch_size_tokens=512, model_batch_size=8, held_out_rows=8, eval_rows=4, keep_activations=True,
    progress=False,
)
ARMS = [
    {"name": "topk", "architecture": "topk"},
    {"name": "weighted_topk", "architecture": "weighted_topk", "sae": {"weighting": "variance", "weighting_alpha": 1.0}},
    # an arm added by configuration alone
    {"name": "batchtopk_rank", "architecture": "weighted_batchtopk", "sae": {"weighting": "variance", "weighting_alpha": 0.5}},
]


@pytest.fixture(scope="session")
def comparison(embedded_model, tmp_path_factory):
    cfg = ComparisonConfig(output_dir=str(tmp_path_factory.mktemp("comparison")), arms=ARMS, **TINY)
    return run_comparison(cfg, model=embedded_model)


def test_every_arm_trains_from_one_cache_for_every_epoch(comparison) -> None:
    cache = datasets.load_from_disk(f"{comparison.config['output_dir']}/activations")
    assert len(cache) * 64 == comparison.cached_tokens == 4096
    assert set(comparison.sae_paths) == {arm["name"] for arm in ARMS}
    for name, path in comparison.sae_paths.items():
        runner_cfg = json.loads(open(f"{path}/runner_cfg.json").read())
        assert runner_cfg["training_tokens"] == 2 * 4096 and runner_cfg["seed"] == 0
        # one point per epoch, each after exactly the kept tokens of one more epoch
        assert comparison.curves[name]["tokens"] == [comparison.kept_tokens, 2 * comparison.kept_tokens]
    assert SAE.load_from_disk(comparison.sae_paths["batchtopk_rank"]).cfg.architecture() == "weighted_batchtopk"


def test_filter_drops_special_tokens_and_is_recorded(comparison) -> None:
    dropped = comparison.filtered
    # the pydoc rows of 64 tokens start with BOS: one special token per cached row at least
    assert dropped["special"] >= 4096 // 64 and dropped["seen"] == 4096
    assert comparison.kept_tokens == 4096 - dropped["special"] - dropped["outliers"]
    for path in comparison.sae_paths.values():
        recorded = TokenFilter.recorded_in(SAE.load_from_disk(path))
        assert recorded.norm_threshold == pytest.approx(comparison.token_filter["norm_threshold"])


def test_gamma_is_estimated_on_the_kept_tokens_and_saved(comparison) -> None:
    path = comparison.sae_paths["weighted_topk"]
    gamma = load_file(f"{path}/sae_weights.safetensors")["gamma"]
    cfg = json.loads(open(f"{path}/cfg.json").read())
    assert cfg["weighting"] == "variance" and cfg["weighting_alpha"] == 1.0
    assert cfg["weighting_tokens"] == comparison.kept_tokens
    assert gamma.shape == (576,) and math.isclose(gamma.double().pow(2).mean().item(), 1.0, rel_tol=1e-4)
    half = load_file(f"{comparison.sae_paths['batchtopk_rank']}/sae_weights.safetensors")["gamma"].double()
    # same variance scores, α = 0.5 vs 1: γ(0.5)² ∝ γ(1), both normalised to mean(γ²) = 1
    torch.testing.assert_close(half.pow(2) / half.pow(2).mean(), gamma.double() / gamma.double().mean(), rtol=1e-4, atol=0)


def test_arms_are_evaluated_on_the_same_held_out_text(comparison) -> None:
    metrics = comparison.metrics
    clean = {m["ce_loss_without_sae"] for m in metrics.values()}
    assert len(clean) == 1  # identical eval tokens
    for m in metrics.values():
        assert all(math.isfinite(v) for v in m.values())
        assert m["ce_loss_without_sae"] < m["ce_loss_with_sae"] < m["ce_loss_zero_ablation"]
        assert m["ce_loss_score"] == pytest.approx(
            (m["ce_loss_zero_ablation"] - m["ce_loss_with_sae"]) / (m["ce_loss_zero_ablation"] - m["ce_loss_without_sae"]))
    assert metrics["topk"]["l0"] == pytest.approx(16, abs=1e-6)  # TopK: exactly k latents per token


def test_saved_saes_reload_and_reproduce_the_trained_sae(comparison) -> None:
    for name, path in comparison.sae_paths.items():
        sae = SAE.load_from_disk(path)
        assert sae.cfg.metadata.hook_name == comparison.hook_name
        # the last curve point is the trained SAE in memory on the held-out tokens; the recorded metric is
        # the SAE reloaded from disk on the same tokens: they agree only if saving lost nothing
        trained, reloaded = comparison.curves[name]["explained_variance"][-1], comparison.metrics[name]["explained_variance"]
        if sae.cfg.architecture() != "weighted_batchtopk":  # SAELens saves BatchTopK as a per-token threshold SAE
            assert reloaded == pytest.approx(trained, abs=1e-5)
        # and training did something: the untrained SAE (b_dec at the data mean) explains less (measured at this
        # tiny budget: ≈ −0.006 before training, ≥ 0.046 after for every arm)
        assert reloaded > comparison.curves[name]["initial_explained_variance"] + 0.03
    assert isinstance(SAE.load_from_disk(comparison.sae_paths["weighted_topk"]), WeightedTopKSAE)


def test_report_folder_has_table_json_and_plot(comparison) -> None:
    out = write_report(comparison)
    table = comparison_table(comparison)
    assert all(label in table for _, label, _ in METRICS_SHOWN)
    assert table in (out / "report.md").read_text()
    assert json.loads((out / "results.json").read_text())["metrics"] == comparison.metrics
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_arm_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="needs `name` and `architecture`"):
        ComparisonConfig(arms=[{"architecture": "topk"}])
    with pytest.raises(ValueError, match="distinct names"):
        ComparisonConfig(arms=[Arm("a", "topk"), Arm("a", "topk")])


def test_a_later_comparison_reuses_the_cache(comparison, embedded_model, tmp_path) -> None:
    cache = Path(comparison.config["output_dir"]) / "activations"
    cfg = ComparisonConfig(output_dir=str(tmp_path / "again"), arms=ARMS[:1], activations_dir=str(cache),
                           **{**TINY, "epochs": 1, "keep_activations": False})
    before = sorted(p.stat().st_mtime_ns for p in cache.iterdir())
    again = run_comparison(cfg, model=embedded_model)
    assert again.kept_tokens == comparison.kept_tokens and not (tmp_path / "again" / "activations").exists()
    assert sorted(p.stat().st_mtime_ns for p in cache.iterdir()) == before  # untouched
    with pytest.raises(ValueError, match="activations_dir=.*holds 64 rows"):
        run_comparison(ComparisonConfig(output_dir=str(tmp_path / "bad"), arms=ARMS[:1], activations_dir=str(cache),
                                        **{**TINY, "training_tokens": 8192}), model=embedded_model)
