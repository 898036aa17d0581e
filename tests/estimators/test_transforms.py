"""Score transforms (none / rank / log), negative α and the shared option check, against brute force."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from wsae_lens.activations import TokenFilter
from wsae_lens.architectures.weighting import validate_weighting_options
from wsae_lens.estimators import (
    DEFAULT_GAMMA_FLOOR,
    average_ranks,
    estimate_gamma,
    estimate_scores,
    estimate_variance,
    scores_to_gamma,
    transform_scores,
)
from wsae_lens.estimators.entry import estimate_sae_gamma

# scores with many ties and zeros (small integers), and wide-range positive floats
tied_scores = st.lists(st.integers(0, 4), min_size=1, max_size=12).map(lambda v: torch.tensor(v, dtype=torch.float64))
wide_scores = st.lists(
    st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False), min_size=1, max_size=12
).map(lambda v: torch.tensor(v, dtype=torch.float64))


def brute_rank(s: list[float]) -> list[float]:
    """1-based rank with ties averaged, straight from the definition."""
    out = []
    for v in s:
        below = sum(1 for w in s if w < v)
        equal = sum(1 for w in s if w == v)
        out.append(below + (equal + 1) / 2)
    return out


def brute_log(s: list[float]) -> list[float]:
    """log(1 + s / m), m = lower median (torch.median), or the mean if that is 0."""
    m = sorted(s)[(len(s) - 1) // 2]
    if m <= 0:
        m = sum(s) / len(s)
    if not m > 0:
        return [0.0] * len(s)
    return [math.log1p(v / m) if math.isfinite(v / m) else math.log(v) - math.log(m) for v in s]


def brute_gamma(t: list[float], alpha: float, floor: float) -> torch.Tensor:
    top = max(t)
    g = torch.tensor([(max(v, floor * top) / top) ** alpha for v in t], dtype=torch.float64)
    return g / g.square().mean().sqrt()


@settings(max_examples=150, deadline=None)
@given(st.one_of(tied_scores, wide_scores))
def test_rank_and_log_match_brute_force(scores):
    s = scores.tolist()
    torch.testing.assert_close(average_ranks(scores), torch.tensor(brute_rank(s), dtype=torch.float64))
    rank = transform_scores(scores, "rank")
    torch.testing.assert_close(rank, torch.tensor(brute_rank(s), dtype=torch.float64) / len(s))
    assert (rank > 0).all() and (rank <= 1).all()
    torch.testing.assert_close(transform_scores(scores, "log"), torch.tensor(brute_log(s), dtype=torch.float64))
    torch.testing.assert_close(transform_scores(scores, "none"), scores)


@settings(max_examples=100, deadline=None)
@given(
    st.one_of(tied_scores, wide_scores),
    st.sampled_from(["none", "rank", "log"]),
    st.sampled_from([0.5, 1.0, 2.0, -0.5, -1.0]),
    st.sampled_from([DEFAULT_GAMMA_FLOOR, 0.1]),
)
def test_scores_to_gamma_matches_brute_force(scores, transform, alpha, floor):
    if scores.max() <= 0:
        with pytest.raises(ValueError, match="every score is zero"):
            scores_to_gamma(scores, alpha, floor, transform=transform, allow_negative_alpha=True)
        return
    t = transform_scores(scores, transform).tolist()
    gamma = scores_to_gamma(scores, alpha, floor, transform=transform, allow_negative_alpha=True)
    torch.testing.assert_close(gamma, brute_gamma(t, alpha, floor))
    assert torch.isfinite(gamma).all() and gamma.square().mean().item() == pytest.approx(1.0)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(2, 16), st.sampled_from(["none", "rank", "log"]))
def test_transforms_and_gamma_are_monotone_in_the_variance(seed, d, transform):
    generator = torch.Generator().manual_seed(seed)
    scales = torch.rand(d, generator=generator, dtype=torch.float64) * 10
    scales[torch.rand(d, generator=generator) < 0.3] = 0.0  # some constant dimensions (variance 0)
    x = torch.randn(256, d, generator=generator, dtype=torch.float64) * scales
    var = estimate_variance([x], progress=False)
    order = torch.argsort(var)
    t = transform_scores(var, transform)[order]
    assert (t[1:] >= t[:-1]).all(), "T must be non-decreasing in the variance"
    if var.max() > 0:
        up = scores_to_gamma(var, 1.0, transform=transform)[order]
        down = scores_to_gamma(var, -1.0, transform=transform, allow_negative_alpha=True)[order]
        assert (up[1:] >= up[:-1] - 1e-12).all() and (down[1:] <= down[:-1] + 1e-12).all()


def test_transforms_are_scale_invariant():
    scores = torch.tensor([0.0, 1.0, 2.0, 2.0, 50.0], dtype=torch.float64)
    for transform in ("none", "rank", "log"):
        torch.testing.assert_close(
            scores_to_gamma(scores * 1e5, 0.7, transform=transform), scores_to_gamma(scores, 0.7, transform=transform)
        )


def test_rank_bounds_the_spread_of_gamma():
    scores = torch.tensor([1e-6, 1.0, 1.0, 1e9], dtype=torch.float64)  # one dimension dominates the raw variance
    gamma = scores_to_gamma(scores, 1.0, transform="rank")
    assert gamma.max() / gamma.min() == pytest.approx(4.0)  # rank 4 vs rank 1, never more than d^α
    assert scores_to_gamma(scores, 1.0).max() / scores_to_gamma(scores, 1.0).min() == pytest.approx(1e3)  # floored


def test_negative_alpha_is_refused_unless_asked_for():
    scores = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64)
    with pytest.raises(ValueError, match="weighting_alpha.*weighting_allow_negative_alpha=True"):
        scores_to_gamma(scores, alpha=-1.0)
    gamma = scores_to_gamma(scores, alpha=-1.0, allow_negative_alpha=True)
    expected = torch.tensor([1.0, 0.5, 0.25], dtype=torch.float64)
    torch.testing.assert_close(gamma, expected / expected.square().mean().sqrt())


def test_zero_scores_with_negative_alpha_are_floored_not_infinite():
    gamma = scores_to_gamma(torch.tensor([0.0, 1.0, 1.0]), alpha=-1.0, allow_negative_alpha=True)
    assert torch.isfinite(gamma).all()
    assert gamma[0] / gamma[1] == pytest.approx(1 / DEFAULT_GAMMA_FLOOR)
    with pytest.raises(ValueError, match="floor=0 with a negative alpha"):
        scores_to_gamma(torch.tensor([0.0, 1.0]), alpha=-1.0, floor=0.0, allow_negative_alpha=True)


@pytest.mark.parametrize("alpha", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_alpha_is_always_refused(alpha):
    with pytest.raises(ValueError, match="weighting_alpha: alpha must be >= 0 and finite"):
        scores_to_gamma(torch.tensor([1.0, 2.0]), alpha=alpha, allow_negative_alpha=True)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"transform": "sqrt"}, "weighting_transform='sqrt' is not supported"),
        ({"active_quantile": 1.0}, "weighting_active_quantile=1.0 must lie in"),
        ({"active_quantile": 0.0}, "weighting_active_quantile=0.0 must lie in"),
        ({"active_quantile": float("nan")}, "weighting_active_quantile=nan must lie in"),
        ({"alpha": "one"}, "weighting_alpha: alpha must be a number"),
    ],
)
def test_bad_options_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        validate_weighting_options(**kwargs)


def test_estimate_gamma_checks_options_before_reading():
    def never_read():
        raise AssertionError("the source was read")
        yield  # pragma: no cover

    for kwargs in ({"alpha": -1.0}, {"transform": "bogus"}, {"active_quantile": 2.0}):
        with pytest.raises(ValueError):
            estimate_gamma(never_read(), progress=False, **kwargs)


def test_estimate_gamma_applies_transform_and_negative_alpha():
    x = torch.randn(500, 6, dtype=torch.float64) * torch.tensor([0.1, 1.0, 2.0, 3.0, 10.0, 100.0], dtype=torch.float64)
    scores = estimate_scores([x], progress=False)
    for transform in ("rank", "log"):
        gamma = estimate_gamma([x], alpha=-0.5, transform=transform, allow_negative_alpha=True, progress=False)
        expected = scores_to_gamma(scores, -0.5, transform=transform, allow_negative_alpha=True)
        torch.testing.assert_close(gamma, expected)


def test_estimate_sae_gamma_reads_the_config_fields():
    from wsae_lens import WeightedTopKTrainingSAE, WeightedTopKTrainingSAEConfig

    cfg = WeightedTopKTrainingSAEConfig(
        d_in=6, d_sae=12, k=2, weighting="variance", weighting_alpha=-1.0, weighting_allow_negative_alpha=True,
        weighting_transform="rank",
    )
    sae = WeightedTopKTrainingSAE(cfg)
    x = torch.randn(300, 6) * torch.arange(1, 7)
    estimate = estimate_sae_gamma(sae, (x,), token_filter=TokenFilter.keep_all(), progress=False)
    expected = estimate_gamma([x], alpha=-1.0, transform="rank", allow_negative_alpha=True, progress=False)
    torch.testing.assert_close(estimate.gamma, expected)
    torch.testing.assert_close(sae.gamma, expected.float())
    assert (sae.gamma[1:] < sae.gamma[:-1]).all()  # inverse proxy: higher variance, lower weight
