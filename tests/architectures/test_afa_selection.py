"""The fast top-AFA selection returns exactly the full-sort reference rule's k and mask."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from wsae_lens.architectures.afa_selection import (
    SELECTION_BLOCK,
    fast_afa_selection,
    full_sort_afa_selection,
    top_values,
)


def assert_same_selection(scores: torch.Tensor, target: torch.Tensor, candidates: int) -> None:
    reference = full_sort_afa_selection(scores, target)
    fast = fast_afa_selection(scores, target, candidates=candidates)
    assert torch.equal(fast.k, reference.k)
    assert torch.equal(fast.mask, reference.mask)
    assert torch.equal(reference.mask.sum(-1), reference.k)


def brute_force_k(scores: torch.Tensor, target: float) -> int:
    """The rule written out in float64 on one token: first minimiser over j in 1..d_sae-1."""
    ordered = sorted(scores.double().tolist(), reverse=True)
    best_j, best = 0, float("inf")
    total = 0.0
    for j, s in enumerate(ordered[:-1], start=1):
        total += s * s
        gap = abs(total**0.5 - target)
        if gap < best:
            best_j, best = j, gap
    return best_j


def gap64(scores: torch.Tensor, target: float, k: int) -> float:
    ordered = sorted(scores.double().tolist(), reverse=True)
    return abs(sum(s * s for s in ordered[:k]) ** 0.5 - target)


def test_reference_rule_matches_written_out_rule_on_a_hand_example():
    scores = torch.tensor([[3.0, 0.0, 4.0, 1.0, 0.5]])
    # sorted 4, 3, 1, 0.5, 0: C = 4, 5, 5.099, 5.123 (full prefix excluded)
    for target, k, kept in [(4.4, 1, [2]), (4.6, 2, [0, 2]), (5.06, 3, [0, 2, 3]), (100.0, 4, [0, 2, 3, 4])]:
        selection = full_sort_afa_selection(scores, torch.tensor([target]))
        assert selection.k.item() == k == brute_force_k(scores[0], target)
        assert selection.mask[0].nonzero().flatten().tolist() == kept


def test_ties_keep_lowest_indices_first():
    scores = torch.tensor([[1.0, 2.0, 1.0, 2.0, 1.0, 0.0]])
    selection = full_sort_afa_selection(scores, torch.tensor([(4 + 4 + 1) ** 0.5]))
    assert selection.k.item() == 3
    assert selection.mask[0].tolist() == [True, True, False, True, False, False]
    assert_same_selection(scores, torch.tensor([3.0]), candidates=1)


@pytest.mark.parametrize("candidates", [1, 3, 16, 1000])
def test_adversarial_inputs(candidates):
    d_sae = 50
    zeros = torch.zeros(4, d_sae)  # all-zero activations: k = 1 (first latent), whatever the target
    single = torch.zeros(4, d_sae)
    single[torch.arange(4), torch.tensor([0, 7, 25, 49])] = torch.tensor([0.5, 1.0, 2.0, 3.0])
    all_tied = torch.full((4, d_sae), 0.25)
    plateau_ties = torch.tensor([[2.0] * 10 + [1.0] * 20 + [0.0] * 20]).repeat(4, 1)
    targets = torch.tensor([0.0, 1.0, 3.0, 1e6])  # 1e6: cumulative norm never reached
    for scores in (zeros, single, all_tied, plateau_ties, torch.rand(4, d_sae).round(decimals=1)):
        assert_same_selection(scores, targets, candidates)
    assert full_sort_afa_selection(zeros, targets).k.tolist() == [1, 1, 1, 1]
    assert full_sort_afa_selection(single, targets).k.tolist() == [1, 1, 1, 1]
    never_reached = full_sort_afa_selection(torch.rand(4, d_sae) + 0.1, torch.full((4,), 100.0))
    assert never_reached.k.tolist() == [d_sae - 1] * 4  # all but the smallest latent


@settings(max_examples=60, deadline=None)
@given(
    batch=st.integers(1, 6),
    d_sae=st.integers(2, 300),
    candidates=st.integers(1, 64),
    quantised=st.booleans(),
    sparsity=st.floats(0.0, 0.99),
    target_scale=st.floats(0.0, 2.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_fast_equals_full_sort_on_random_inputs(batch, d_sae, candidates, quantised, sparsity, target_scale, seed):
    generator = torch.Generator().manual_seed(seed)
    scores = torch.rand(batch, d_sae, generator=generator).pow(3)
    scores = scores * (torch.rand(batch, d_sae, generator=generator) > sparsity)
    if quantised:  # many exact ties
        scores = (scores * 4).round() / 4
    total = scores.square().sum(-1).sqrt()
    target = total * target_scale * torch.rand(batch, generator=generator)
    assert_same_selection(scores, target, candidates)
    reference_k = full_sort_afa_selection(scores, target).k
    for j in range(batch):  # float32 sums may pick a neighbour of the float64 rule only on a near-tie
        brute_k = brute_force_k(scores[j], target[j].item())
        assert gap64(scores[j], target[j].item(), reference_k[j].item()) <= gap64(
            scores[j], target[j].item(), brute_k
        ) + 1e-5 * (1 + target[j].item())


@settings(max_examples=80, deadline=None)
@given(
    batch=st.integers(1, 5),
    blocks=st.integers(1, 200),
    m=st.integers(1, 60),
    levels=st.sampled_from([0, 2, 5]),
    seed=st.integers(0, 2**31 - 1),
)
def test_blocked_top_values_equal_sorted_topk(batch, blocks, m, levels, seed):
    """The block-maxima shortcut returns exactly the m largest values (ties and block boundaries included)."""
    d = blocks * SELECTION_BLOCK
    m = min(m, d)
    generator = torch.Generator().manual_seed(seed)
    rows = torch.rand(batch, d, generator=generator)
    if levels:  # few distinct values: ties everywhere, including across the chosen blocks' boundary
        rows = (rows * levels).floor()
    expected = torch.topk(rows, m, dim=-1).values
    assert torch.equal(top_values(rows, m), expected)


def test_large_batch_wide_dictionary():
    generator = torch.Generator().manual_seed(1)
    scores = torch.randn(64, 4096, generator=generator).relu().pow(2)
    target = scores.square().sum(-1).sqrt() * torch.rand(64, generator=generator)
    assert_same_selection(scores, target, candidates=32)


def test_bad_shapes_raise_clear_errors():
    with pytest.raises(ValueError, match="target_norm"):
        fast_afa_selection(torch.rand(3, 8), torch.rand(2))
    with pytest.raises(ValueError, match="d_sae"):
        full_sort_afa_selection(torch.rand(3, 1), torch.rand(3))
    with pytest.raises(ValueError, match="candidates"):
        fast_afa_selection(torch.rand(3, 8), torch.rand(3), candidates=0)
