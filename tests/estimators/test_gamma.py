"""scores → Γ: formula, normalisation, floor, errors; Γ invariant to batch order."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.estimators.test_semantic_consistency import brute_force as brute_force_semantic_consistency
from wsae_lens.estimators import estimate_gamma, scores_to_gamma


def test_gamma_is_normalised_power_of_scores():
    scores = torch.tensor([1.0, 4.0, 9.0], dtype=torch.float64)
    gamma = scores_to_gamma(scores, alpha=0.5)
    expected = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    torch.testing.assert_close(gamma, expected / expected.square().mean().sqrt())
    assert gamma.square().mean().item() == pytest.approx(1.0)


def test_alpha_zero_is_uniform():
    assert torch.equal(scores_to_gamma(torch.tensor([0.0, 1.0, 5.0]), alpha=0.0), torch.ones(3, dtype=torch.float64))


def test_zero_scores_are_floored_unless_floor_zero():
    scores = torch.tensor([0.0, 2.0, 2.0], dtype=torch.float64)
    gamma = scores_to_gamma(scores, alpha=1.0, floor=1e-3)
    assert gamma[0] > 0
    assert gamma[0] / gamma[1] == pytest.approx(1e-3)
    assert scores_to_gamma(scores, alpha=1.0, floor=0.0)[0] == 0


def test_scale_of_scores_does_not_change_gamma():
    scores = torch.rand(10, dtype=torch.float64) + 0.1
    torch.testing.assert_close(scores_to_gamma(scores * 1e6, alpha=0.7), scores_to_gamma(scores, alpha=0.7))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scores": torch.tensor([1.0, 2.0]), "alpha": -0.5}, "alpha must be >= 0"),
        ({"scores": torch.tensor([1.0, 2.0]), "alpha": float("nan")}, "alpha must be >= 0"),
        ({"scores": torch.tensor([1.0, 2.0]), "floor": 2.0}, "floor must be in"),
        ({"scores": torch.tensor([1.0, -2.0])}, "negative"),
        ({"scores": torch.tensor([1.0, float("nan")])}, "NaN/Inf"),
        ({"scores": torch.zeros(3)}, "every score is zero"),
        ({"scores": torch.zeros(0)}, "non-empty"),
    ],
)
def test_bad_input_is_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        scores_to_gamma(**kwargs)


def test_estimate_gamma_rejects_negative_alpha_before_reading():
    def never_read():
        raise AssertionError("the source was read")
        yield  # pragma: no cover

    with pytest.raises(ValueError, match="alpha must be >= 0"):
        estimate_gamma(never_read(), alpha=-1.0, progress=False)


def test_constant_activations_cannot_give_gamma():
    with pytest.raises(ValueError, match="every score is zero"):
        estimate_gamma([torch.ones(10, 3)], progress=False)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(0, 8), st.integers(1, 5))
def test_variance_gamma_is_scores_to_gamma_of_torch_var(seed, alpha_quarters, n_batches):
    generator = torch.Generator().manual_seed(seed)
    scales = torch.rand(6, generator=generator) * 2.5 + 0.5  # variances within a factor 36: no floor
    batches = [torch.randn(11 + 7 * i, 6, generator=generator) * scales + 3.0 for i in range(n_batches)]
    alpha = alpha_quarters / 4
    gamma = estimate_gamma(batches, weighting="variance", alpha=alpha, progress=False)
    variance = torch.var(torch.cat(batches).double(), dim=0)
    torch.testing.assert_close(gamma, scores_to_gamma(variance, alpha=alpha), rtol=1e-10, atol=0)
    expected = variance**alpha  # γ_i ∝ Var(x_i)^α, normalised to mean(γ²) = 1 (by hand)
    torch.testing.assert_close(gamma, expected / expected.square().mean().sqrt(), rtol=1e-10, atol=0)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 2**31 - 1),
    st.integers(1, 6),
    st.permutations(range(6)),
    st.sampled_from(["variance", "semantic_consistency"]),
)
def test_gamma_is_invariant_to_batch_order(seed, alpha_quarters, order, weighting):
    generator = torch.Generator().manual_seed(seed)
    scales = torch.rand(5, generator=generator) * 3
    batches = []
    for i in range(6):
        x = (torch.randn(17 + i, 5, generator=generator) * scales + i).relu()  # sparse-ish, non-negative
        batches.append((x, torch.randint(0, 4, (17 + i,), generator=generator)))
    alpha = alpha_quarters / 4
    gamma = estimate_gamma(batches, weighting=weighting, alpha=alpha, progress=False)
    shuffled = estimate_gamma([batches[i] for i in order], weighting=weighting, alpha=alpha, progress=False)
    torch.testing.assert_close(shuffled, gamma, rtol=1e-10, atol=0)
    # both equal the order-free definition on all the data at once
    x = torch.cat([b[0] for b in batches])
    if weighting == "variance":
        scores = torch.var(x.double(), dim=0)
    else:
        labels = torch.cat([b[1] for b in batches]).tolist()
        scores = torch.tensor(brute_force_semantic_consistency(x, labels, 1e-6), dtype=torch.float64).nan_to_num(0.0)
    torch.testing.assert_close(gamma, scores_to_gamma(scores, alpha=alpha), rtol=1e-9, atol=1e-12)
