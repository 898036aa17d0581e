"""Semantic consistency: equals a brute-force implementation of the definition, edge cases, SAE latents."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sae_lens import TopKSAE, TopKSAEConfig

from wsae_lens.estimators import (
    DEFAULT_GAMMA_FLOOR,
    SemanticConsistencyCounter,
    estimate_gamma,
    estimate_semantic_consistency,
    latent_semantic_consistency,
)


def brute_force(x: torch.Tensor, labels: list[int], threshold: float) -> list[float]:
    """SC_i = max_c |{t active on i : y_t = c}| / |{t active on i}|, straight from the definition."""
    scores = []
    for i in range(x.shape[1]):
        active_labels = []
        for t in range(x.shape[0]):
            norm = math.sqrt(sum(float(v) ** 2 for v in x[t]))
            if norm > 0 and abs(float(x[t, i])) / norm > threshold:
                active_labels.append(labels[t])
        scores.append(max(Counter(active_labels).values()) / len(active_labels) if active_labels else float("nan"))
    return scores


@st.composite
def labelled_stream(draw):
    n = draw(st.integers(1, 60))
    d = draw(st.integers(1, 8))
    seed = draw(st.integers(0, 2**31 - 1))
    n_labels = draw(st.integers(1, 6))
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=generator, dtype=torch.float64)
    x = x * (torch.rand(n, d, generator=generator) < draw(st.sampled_from([0.1, 0.5, 1.0])))  # sparse codes
    labels = torch.randint(0, n_labels, (n,), generator=generator)
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=5)))
    threshold = draw(st.sampled_from([0.0, 1e-6, 0.3]))
    return x, labels, cuts, threshold


@settings(max_examples=120, deadline=None)
@given(labelled_stream(), st.sampled_from(["dense", "sparse", "dense-grown"]), st.integers(1, 64))
def test_matches_brute_force(case, backend, max_pairs):
    x, labels, cuts, threshold = case
    bounds = [0, *cuts, x.shape[0]]
    batches = [(x[a:b], labels[a:b]) for a, b in zip(bounds, bounds[1:])]
    kwargs = {"dense": {"num_labels": 6}, "sparse": {"max_dense_bytes": 0}, "dense-grown": {}}[backend]
    result = estimate_semantic_consistency(batches, threshold=threshold, progress=False, max_pairs=max_pairs, **kwargs)
    expected = torch.tensor(brute_force(x, labels.tolist(), threshold), dtype=torch.float64)
    torch.testing.assert_close(result.scores, expected, equal_nan=True)
    live = ~torch.isnan(expected)
    assert torch.equal(result.live, live)
    if live.any():
        assert result.mean == pytest.approx(float(expected[live].mean()))


def test_dense_table_converts_to_sparse_when_labels_outgrow_it():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(400, 5, generator=generator).relu()
    labels = torch.randint(0, 1000, (400,), generator=generator)
    batches = [(x[:100], labels[:100] % 10), (x[100:], labels[100:])]  # second batch needs a wider table
    counter_limit = 5 * 64 * 4  # room for 64 labels: starts dense, must convert
    grown = estimate_semantic_consistency(batches, progress=False, max_dense_bytes=counter_limit)
    reference = estimate_semantic_consistency(batches, progress=False, num_labels=1000)
    torch.testing.assert_close(grown.scores, reference.scores, equal_nan=True)
    assert torch.equal(grown.top_labels, reference.top_labels)


def test_all_equal_labels_score_one_and_give_uniform_gamma():
    x = torch.randn(50, 4)
    result = estimate_semantic_consistency([(x, torch.full((50,), 7))], progress=False)
    assert torch.equal(result.scores, torch.ones(4, dtype=torch.float64))
    assert torch.equal(result.top_labels, torch.full((4,), 7))
    gamma = estimate_gamma([(x, torch.full((50,), 7))], weighting="semantic_consistency", progress=False)
    torch.testing.assert_close(gamma, torch.ones(4, dtype=torch.float64))


def test_never_active_dimension_is_nan_and_floored_in_gamma():
    x = torch.randn(30, 3).abs()
    x[:, 2] = 0
    labels = torch.arange(30) % 3
    result = estimate_semantic_consistency([(x, labels)], progress=False)
    assert math.isnan(result.scores[2]) and result.active_counts[2] == 0 and result.top_labels[2] == -1
    gamma = estimate_gamma([(x, labels)], weighting="semantic_consistency", progress=False)
    # the never-active dimension gets floor · (top score), α = 1, then all are scaled to mean(γ²) = 1
    scores = torch.tensor(brute_force(x, labels.tolist(), 1e-6), dtype=torch.float64).nan_to_num(0.0)
    floored = scores.clamp(min=DEFAULT_GAMMA_FLOOR * scores.max())
    torch.testing.assert_close(gamma, floored / floored.square().mean().sqrt())
    assert gamma[2] / gamma.max() == pytest.approx(DEFAULT_GAMMA_FLOOR)


def test_label_length_mismatch_names_the_batch():
    batches = [(torch.randn(4, 3), torch.zeros(4, dtype=torch.long)), (torch.randn(5, 3), torch.zeros(4, dtype=torch.long))]
    with pytest.raises(ValueError, match="batch 1 has 4 labels for 5 tokens"):
        estimate_semantic_consistency(batches, progress=False)


def test_bad_inputs():
    with pytest.raises(ValueError, match="batch 0 has no labels"):
        estimate_semantic_consistency([torch.randn(4, 3)], progress=False)
    bad = torch.randn(4, 3)
    bad[1, 1] = float("nan")
    with pytest.raises(ValueError, match="batch 1 has NaN/Inf"):
        estimate_semantic_consistency([(torch.randn(4, 3), torch.zeros(4, dtype=torch.long)), (bad, torch.zeros(4, dtype=torch.long))], progress=False)
    with pytest.raises(ValueError, match="labels must be integers"):
        estimate_semantic_consistency([(torch.randn(4, 3), torch.zeros(4))], progress=False)
    with pytest.raises(ValueError, match=r"labels must lie in \[0"):
        estimate_semantic_consistency([(torch.randn(4, 3), -torch.ones(4, dtype=torch.long))], progress=False)
    with pytest.raises(ValueError, match="stream was empty"):
        estimate_semantic_consistency([], progress=False)
    with pytest.raises(ValueError, match="threshold must be >= 0"):
        SemanticConsistencyCounter(threshold=-1.0)


def test_latent_semantic_consistency_of_an_sae_matches_brute_force():
    torch.manual_seed(0)
    sae = TopKSAE(TopKSAEConfig(d_in=6, d_sae=12, k=2))
    x = torch.randn(80, 6)
    labels = torch.randint(0, 4, (80,))
    result = latent_semantic_consistency(sae, [(x[:50], labels[:50]), (x[50:], labels[50:])], progress=False)
    with torch.no_grad():
        latents = sae.encode(x).double()
    expected = torch.tensor(brute_force(latents, labels.tolist(), 1e-6), dtype=torch.float64)
    torch.testing.assert_close(result.scores, expected, equal_nan=True)
    live = ~torch.isnan(expected)
    assert result.mean == pytest.approx(float(expected[live].mean()))
    assert result.live.sum() == live.sum()
