"""The token filter on every road: a real cache from the tiny model with injected outlier tokens.

The expected kept set is computed independently of the filter: special ids by hand, the median of the
first batch's non-special norms with torch.median, the threshold 10× that.
"""

from __future__ import annotations

import datasets
import pytest
import torch
from sae_lens import SAE, LanguageModelSAERunnerConfig

from tests.conftest import CACHED_TRAINING_TOKENS, CONTEXT_SIZE, tiny_runner_config_dict
from wsae_lens.activations import FilteredActivationsStore, TokenFilter, iter_activation_batches
from wsae_lens.estimators.entry import estimate_gamma_from_activations
from wsae_lens.estimators import scores_to_gamma

HOOK = "blocks.0.hook_resid_post"
NEWLINE = ord("\n")  # plays the special token
INJECTED = [(1, 5), (3, 0), (17, 31), (40, 12), (63, 1)]  # (row, position) scaled ×1000


@pytest.fixture(scope="module")
def outlier_cache(cached_activations_dir, tmp_path_factory):
    """(directory, activations [tokens, d_in], token ids, expected keep mask) of the cache with outliers."""
    original = datasets.load_from_disk(str(cached_activations_dir))
    data = original.with_format("torch")[:]
    acts, ids = data[HOOK].clone(), data["token_ids"].clone()
    for row, position in INJECTED:
        acts[row, position] *= 1000.0
    path = tmp_path_factory.mktemp("outliers") / "activations"
    datasets.Dataset.from_dict({HOOK: acts.numpy(), "token_ids": ids.numpy()}, features=original.features).save_to_disk(str(path))
    flat, flat_ids = acts.reshape(-1, acts.shape[-1]), ids.reshape(-1).long()
    special = flat_ids == NEWLINE
    norms = flat.norm(dim=-1)
    threshold = 10 * norms[~special].median()  # the whole cache is the filter's first batch
    keep = ~special & (norms <= threshold)
    injected = torch.tensor([row * CONTEXT_SIZE + position for row, position in INJECTED])
    assert set(torch.nonzero(~special & ~keep).flatten().tolist()) == set(injected.tolist())  # premise
    return path, flat, flat_ids, keep


def filter_under_test() -> TokenFilter:
    return TokenFilter(special_token_ids=[NEWLINE], outlier_norm_ratio=10.0)


def test_the_road_drops_exactly_special_and_outlier_tokens(outlier_cache):
    path, acts, ids, keep = outlier_cache
    token_filter = filter_under_test()
    batches = list(iter_activation_batches(path, token_filter=token_filter))
    torch.testing.assert_close(torch.cat([b.activations for b in batches]), acts[keep])
    assert torch.equal(torch.cat([b.labels for b in batches]), ids[keep])
    counts = token_filter.counts
    assert (counts.seen, counts.special, counts.outliers) == (CACHED_TRAINING_TOKENS, int((ids == NEWLINE).sum()), len(INJECTED))


def test_gamma_is_estimated_on_the_kept_tokens_only(outlier_cache):
    path, acts, _, keep = outlier_cache
    gamma, tokens, filtered = estimate_gamma_from_activations(path, "variance", 1.0, token_filter=filter_under_test(),
                                                              progress=False)
    expected = scores_to_gamma(acts[keep].double().var(0), alpha=1.0)
    torch.testing.assert_close(gamma, expected, rtol=1e-6, atol=0)
    assert tokens == int(keep.sum()) and filtered.outliers == len(INJECTED)
    unfiltered, _, _ = estimate_gamma_from_activations(path, "variance", 1.0, token_filter=TokenFilter.keep_all(), progress=False)
    assert (unfiltered - expected).abs().max() > 0.1  # five outliers alone change Γ


def cached_runner_dict(tmp_path, path, **sae_fields):
    cfg = tiny_runner_config_dict(tmp_path, **sae_fields)
    cfg.update(use_cached_activations=True, cached_activations_path=str(path), exclude_special_tokens=[NEWLINE],
               training_tokens=1024, n_checkpoints=0)
    return cfg


def test_saelens_training_store_yields_only_kept_tokens(outlier_cache, tiny_model, byte_dataset, tmp_path):
    path, acts, ids, _ = outlier_cache
    cfg = LanguageModelSAERunnerConfig.from_dict(cached_runner_dict(tmp_path, path))
    store = FilteredActivationsStore.from_config(tiny_model, cfg, override_dataset=byte_dataset)
    store.token_filter = TokenFilter(special_token_ids=store.exclude_special_tokens, outlier_norm_ratio=10.0)
    rows = []
    while True:
        try:
            rows.append(store.get_filtered_llm_batch(raise_on_epoch_end=True))
        except StopIteration:
            break
    # the filter fits its median on the store's first batch (8 rows): recompute the expected set with it
    first = torch.arange(acts.shape[0]) < 8 * CONTEXT_SIZE
    special = ids == NEWLINE
    norms = acts.norm(dim=-1)
    expected = ~special & (norms <= 10 * norms[first & ~special].median())
    torch.testing.assert_close(torch.cat(rows), acts[expected])
    assert int((~special & ~expected).sum()) == len(INJECTED)


def test_runner_trains_on_kept_tokens_and_records_the_filter(outlier_cache, tiny_model, byte_dataset, tmp_path):
    from wsae_lens.training import WeightedSAETrainingRunner

    path, acts, ids, _ = outlier_cache
    cfg = LanguageModelSAERunnerConfig.from_dict(cached_runner_dict(tmp_path, path, weighting="variance"))
    runner = WeightedSAETrainingRunner(cfg, override_dataset=byte_dataset, override_model=tiny_model)
    assert isinstance(runner.activations_store, FilteredActivationsStore)
    sae = runner.run()
    recorded = TokenFilter.recorded_in(SAE.load_from_disk(cfg.output_path))
    assert recorded.outlier_norm_ratio == 10.0 and recorded.special_token_ids.tolist() == [NEWLINE]
    assert recorded.median_norm == pytest.approx(runner.token_filter.median_norm)
    # Γ came from the first 1,024 kept tokens (the budget), the median fitted on the first batch of 8 rows
    special, norms = ids == NEWLINE, acts.norm(dim=-1)
    first_batch = torch.arange(acts.shape[0]) < 8 * CONTEXT_SIZE
    expected = ~special & (norms <= 10 * norms[first_batch & ~special].median())
    assert sae.cfg.weighting_tokens == 1024
    gamma = scores_to_gamma(acts[expected][:1024].double().var(0), alpha=1.0)
    torch.testing.assert_close(sae.gamma.double(), gamma, rtol=1e-5, atol=0)


def test_filter_round_trips_through_cfg_json(tmp_path):
    from wsae_lens import WeightedTopKSAE, WeightedTopKSAEConfig

    sae = WeightedTopKSAE(WeightedTopKSAEConfig(d_in=8, d_sae=16, k=2))
    token_filter = TokenFilter(special_token_ids=[0, 2], outlier_norm_ratio=7.5, median_norm=3.25)
    token_filter.record_in(sae)
    sae.save_model(str(tmp_path))
    loaded = TokenFilter.recorded_in(SAE.load_from_disk(str(tmp_path)))
    assert loaded.to_metadata() == token_filter.to_metadata() and loaded.norm_threshold == 7.5 * 3.25


def test_afa_diagnostics_read_the_kept_tokens(outlier_cache):
    from wsae_lens import WeightedTopKSAE, WeightedTopKSAEConfig
    from wsae_lens.diagnostics.afa import afa_diagnostics

    path, _, _, keep = outlier_cache
    sae = WeightedTopKSAE(WeightedTopKSAEConfig(d_in=16, d_sae=32, k=4))
    metrics = afa_diagnostics(sae, path, token_filter=filter_under_test(), progress=False)
    assert len(metrics) == int(keep.sum())
    filter_under_test().record_in(sae)  # default: the filter the SAE records
    assert len(afa_diagnostics(sae, path, progress=False)) == int(keep.sum())


def test_filter_refuses_a_ratio_that_drops_ordinary_tokens():
    for bad in (1.0, 0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="outlier_norm_ratio must be a finite number > 1"):
            TokenFilter(outlier_norm_ratio=bad)


def test_evaluation_splices_the_sae_only_at_kept_positions(tiny_model, byte_dataset):
    """Held-out keep mask = the filter on the model's own activations; the splice hook replaces exactly the
    kept positions and passes the others through unchanged."""
    from wsae_lens.pipeline.evaluation import _splice, prepare_held_out

    rows = torch.as_tensor(byte_dataset[:4]["input_ids"])
    held_out = prepare_held_out(tiny_model, rows, HOOK, TokenFilter(special_token_ids=[NEWLINE], outlier_norm_ratio=None),
                                ce_rows=2, batch_prompts=2)
    assert torch.equal(held_out.keep, rows != NEWLINE)
    assert held_out.activations.shape[0] == int((rows != NEWLINE).sum())
    activations = torch.randn(2, CONTEXT_SIZE, 16)
    hook = _splice(held_out.keep[:2], lambda kept: torch.full_like(kept, 7.0))
    out = hook(activations, None)
    keep = held_out.keep[:2]
    assert (out[keep] == 7.0).all() and torch.equal(out[~keep], activations[~keep])
    # the zero-ablated loss zeroes exactly the kept positions (recomputed with a hand-written hook)
    mask = (~keep).float()[..., None]
    by_hand = tiny_model.run_with_hooks(rows[:2], return_type="loss", fwd_hooks=[(HOOK, lambda a, hook: a * mask)])
    assert held_out.zero_loss == pytest.approx(float(by_hand), rel=1e-5)
    assert held_out.clean_loss == pytest.approx(float(tiny_model(rows[:2], return_type="loss")), rel=1e-5)


def test_autointerp_outlier_positions_never_fire(tiny_model, byte_dataset):
    from wsae_lens import WeightedTopKSAE, WeightedTopKSAEConfig
    from wsae_lens.autointerp import AutoInterpConfig, ModelActivationSource, byte_token_strings
    from wsae_lens.autointerp.records import scan_source

    rows = torch.as_tensor(byte_dataset[:8]["input_ids"])
    _, cache = tiny_model.run_with_cache(rows, names_filter=[HOOK])
    norms = cache[HOOK].norm(dim=-1)
    # a threshold at the median norm: about half the positions count as outliers
    token_filter = TokenFilter(outlier_norm_ratio=1.0001, median_norm=float(norms.median()))
    source = ModelActivationSource(tiny_model, rows, HOOK, token_strings=byte_token_strings, token_filter=token_filter)
    torch.manual_seed(0)
    sae = WeightedTopKSAE(WeightedTopKSAEConfig(d_in=16, d_sae=32, k=4))
    scan = scan_source(sae, source, AutoInterpConfig(n_contexts=8, batch_size=4))
    outliers = norms > 1.0001 * norms.median()
    latent_acts = sae.encode(cache[HOOK])
    expected = latent_acts.masked_fill(outliers[..., None], 0.0).amax(1)
    torch.testing.assert_close(scan.context_max, expected)
    assert outliers.any() and (latent_acts[outliers] > 0).any()  # the dropped positions would have fired
