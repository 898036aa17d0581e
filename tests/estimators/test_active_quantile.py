"""Semantic consistency with the own-quantile activity rule (dense streams) against brute force."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from wsae_lens.estimators import abs_quantile_thresholds, estimate_gamma, estimate_semantic_consistency


def brute_force(x: torch.Tensor, labels: list[int], q: float, calibration: int | None = None) -> list[float]:
    """Two passes: τ_i = torch.quantile(|x_i| over the first ``calibration`` tokens, q), then
    SC_i = max_c |{t : |x_ti| > τ_i, y_t = c}| / |{t : |x_ti| > τ_i}| over every token."""
    head = x if calibration is None else x[:calibration]
    scores = []
    for i in range(x.shape[1]):
        tau = torch.quantile(head[:, i].abs(), q).item()
        active = [labels[t] for t in range(x.shape[0]) if abs(x[t, i].item()) > tau]
        scores.append(max(Counter(active).values()) / len(active) if active else float("nan"))
    return scores


@st.composite
def dense_stream(draw):
    n = draw(st.integers(1, 80))
    d = draw(st.integers(1, 6))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    x = torch.randn(n, d, generator=generator, dtype=torch.float64)
    if draw(st.booleans()):  # ties: rounded values, some exactly zero
        x = x.round()
    labels = torch.randint(0, draw(st.integers(1, 5)), (n,), generator=generator)
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=4)))
    q = draw(st.sampled_from([0.5, 0.9, 0.99]))
    return x, labels, cuts, q


def batches_of(x, labels, cuts):
    bounds = [0, *cuts, x.shape[0]]
    return [(x[a:b], labels[a:b]) for a, b in zip(bounds, bounds[1:])]


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 200), st.integers(1, 5), st.sampled_from([0.01, 0.5, 0.9, 0.99]), st.integers(1, 64))
def test_thresholds_match_torch_quantile(n, d, q, max_elements):
    x = torch.randn(n, d, dtype=torch.float64)
    expected = torch.quantile(x.abs(), q, dim=0)
    torch.testing.assert_close(abs_quantile_thresholds(x, q, max_elements=max_elements), expected)


@settings(max_examples=100, deadline=None)
@given(dense_stream(), st.sampled_from(["dense", "sparse"]))
def test_exact_calibration_matches_two_pass_brute_force(case, backend):
    x, labels, cuts, q = case
    kwargs = {"dense": {"num_labels": 5}, "sparse": {"max_dense_bytes": 0}}[backend]
    result = estimate_semantic_consistency(
        batches_of(x, labels, cuts), active_quantile=q, calibration_tokens=None, progress=False, **kwargs
    )
    expected = torch.tensor(brute_force(x, labels.tolist(), q), dtype=torch.float64)
    torch.testing.assert_close(result.scores, expected, equal_nan=True)


@settings(max_examples=60, deadline=None)
@given(dense_stream(), st.integers(1, 40))
def test_thresholds_come_from_the_first_calibration_tokens(case, calibration):
    x, labels, cuts, q = case
    result = estimate_semantic_consistency(
        batches_of(x, labels, cuts), active_quantile=q, calibration_tokens=calibration, progress=False
    )
    # the estimator buffers whole batches until it holds >= calibration tokens, then uses the first `calibration`
    expected = torch.tensor(brute_force(x, labels.tolist(), q, calibration), dtype=torch.float64)
    torch.testing.assert_close(result.scores, expected, equal_nan=True)


def test_quantile_rule_separates_dimensions_that_the_ratio_rule_cannot():
    """Dense stream: dimension 0 is large exactly on label-3 tokens, the others are label-blind noise."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (4000,), generator=generator)
    x = torch.randn(4000, 4, generator=generator) + 0.5  # dense: non-zero everywhere
    x[:, 0] += 4.0 * (labels == 3)
    ratio = estimate_semantic_consistency([(x, labels)], progress=False).scores
    assert torch.allclose(ratio, ratio[0].expand_as(ratio))  # every dimension active on every token
    quantile = estimate_semantic_consistency([(x, labels)], active_quantile=0.95, progress=False).scores
    assert quantile[0] > 0.95 and (quantile[1:] < 0.3).all()
    gamma = estimate_gamma([(x, labels)], weighting="semantic_consistency", active_quantile=0.95, progress=False)
    assert gamma[0] > 2 * gamma[1:].max()


def test_nan_in_calibration_is_named():
    x = torch.randn(10, 3)
    x[4, 2] = float("nan")
    with pytest.raises(ValueError, match=r"NaN/Inf values \(first in dimensions \[2\]\)"):
        estimate_semantic_consistency([(x, torch.zeros(10, dtype=torch.long))], active_quantile=0.9, progress=False)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"active_quantile": 1.5}, "active_quantile"), ({"active_quantile": 0.9, "calibration_tokens": 0}, "calibration_tokens")],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        estimate_semantic_consistency([(torch.randn(4, 2), torch.zeros(4, dtype=torch.long))], progress=False, **kwargs)
