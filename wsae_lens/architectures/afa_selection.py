"""Top-AFA latent selection (arXiv 2503.24277, §top-AFA): pure functions on tensors.

For one token, let ``s_i ≥ 0`` be the decoder-norm-scaled activation of latent i (``a_i ‖W_dec,i‖``) and
``t ≥ 0`` the target norm (the norm the kept code should have; see
:class:`wsae_lens.architectures.topafa.TopAFASAEConfig` for which norm). Order the latents by ``s``
descending, ties broken by the lower latent index (a stable sort), and let
``C_j = sqrt(Σ_{i ≤ j} s_(i)²)`` be the cumulative root-sum-square of the first j. Then

    k(x) = argmin_{1 ≤ j ≤ d_sae − 1} |C_j − t|      (first minimiser on ties; the full prefix is excluded)

and the selection keeps the first k latents of that order. :func:`full_sort_afa_selection` is this rule
as written (a full sort per token). :func:`fast_afa_selection` returns exactly the same ``k`` and mask
without sorting all latents: ``C_j`` is non-decreasing, so ``|C_j − t|`` is non-increasing before the
first j with ``C_j ≥ t`` and non-decreasing after it; once the top-m prefix reaches ``t`` the first
minimiser lies in ``[1, m]``. Rows whose top-m prefix does not reach ``t`` are retried with 4m candidates
and finally (once m would exceed d_sae / 4) with the full-sort rule. The mask is rebuilt from values
only (all ``s > s_(k)``, then the lowest-index latents with ``s == s_(k)``), which is what the stable
sort keeps, ties included.

Equality is bitwise on CPU: both rules take the same cumulative sums of the same sorted values
(``torch.cumsum`` on CPU is a sequential scan, so a prefix's sums do not depend on the tensor's length).
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class AFASelection(NamedTuple):
    """Per-token number of kept latents ``k`` ([batch], int64) and the kept-latent ``mask`` ([batch, d_sae])."""

    k: torch.Tensor
    mask: torch.Tensor


def _check_inputs(scores: torch.Tensor, target_norm: torch.Tensor) -> None:
    if scores.ndim != 2:
        raise ValueError(f"scores must be [batch, d_sae]; got shape {tuple(scores.shape)}. Flatten leading dims first.")
    if scores.shape[-1] < 2:
        raise ValueError(f"scores needs d_sae ≥ 2 latents (the full prefix is excluded); got {scores.shape[-1]}.")
    if target_norm.shape != scores.shape[:1]:
        raise ValueError(
            f"target_norm must have shape [batch] = {tuple(scores.shape[:1])}; got {tuple(target_norm.shape)}."
        )


def _cumulative_norm(sorted_scores: torch.Tensor) -> torch.Tensor:
    """C_j = sqrt(Σ_{i ≤ j} s_(i)²) along the last dimension (both rules compute it with exactly these ops)."""
    return sorted_scores.square().cumsum(dim=-1).sqrt()


def _first_minimiser(cumulative_norm: torch.Tensor, target_norm: torch.Tensor) -> torch.Tensor:
    """1-based first argmin over the given columns j of |C_j − t|."""
    return (cumulative_norm - target_norm[:, None]).abs().argmin(dim=-1) + 1


def mask_from_threshold(
    scores: torch.Tensor, k: torch.Tensor, kth_score: torch.Tensor, tie_rows: torch.Tensor | None = None
) -> torch.Tensor:
    """Mask of the first ``k`` latents in stable descending order, given the k-th largest score per token.

    Keeps every latent with ``s > s_(k)`` and then the lowest-index latents with ``s == s_(k)`` up to k.
    ``tie_rows`` (bool [batch]) may name the only rows where ``s ≥ s_(k)`` holds for more than k latents;
    when omitted it is counted.
    """
    kth = kth_score[:, None]
    mask = scores >= kth
    if tie_rows is None:
        tie_rows = mask.sum(dim=-1) > k
    if tie_rows.any():
        rows = scores[tie_rows]
        row_kth = kth[tie_rows]
        above = rows > row_kth
        tied = rows == row_kth
        room_for_ties = k[tie_rows] - above.sum(dim=-1)
        mask[tie_rows] = above | (tied & (tied.cumsum(dim=-1) <= room_for_ties[:, None]))
    return mask


def full_sort_afa_selection(scores: torch.Tensor, target_norm: torch.Tensor) -> AFASelection:
    """Reference top-AFA rule: stable full sort of every token's scores, k = first argmin of |C_j − t|.

    Args:
        scores: [batch, d_sae] non-negative decoder-norm-scaled activations ``a_i ‖W_dec,i‖``.
        target_norm: [batch] target norm ``t`` per token.
    """
    _check_inputs(scores, target_norm)
    sorted_scores, order = torch.sort(scores, dim=-1, descending=True, stable=True)
    k = _first_minimiser(_cumulative_norm(sorted_scores[:, :-1]), target_norm)
    ranks = torch.arange(scores.shape[-1], device=scores.device)
    mask = torch.zeros_like(scores, dtype=torch.bool)
    mask.scatter_(-1, order, ranks[None, :] < k[:, None])
    return AFASelection(k=k, mask=mask)


SELECTION_BLOCK = 4
"""Latents per block in :func:`top_values` (4 measured fastest at d_sae 24,576, m ≈ 700)."""


def top_values(rows: torch.Tensor, m: int) -> torch.Tensor:
    """The m largest values of each row, sorted descending: [batch, m].

    Where m ≤ d / (4 · SELECTION_BLOCK), the row is cut into blocks of ``SELECTION_BLOCK`` consecutive
    latents and ``torch.topk`` runs over the block maxima and then over the m blocks with the largest
    maxima, not over all d values. Exact (as a multiset, i.e. as sorted values): those m blocks hold at
    least m values ≥ β, the smallest of their maxima, and every value outside them is ≤ β.
    """
    batch, d = rows.shape
    candidates = rows
    if d % SELECTION_BLOCK == 0 and m * 4 * SELECTION_BLOCK <= d:
        block_max = torch.nn.functional.max_pool1d(rows.reshape(batch, 1, d), SELECTION_BLOCK).squeeze(1)
        chosen = torch.topk(block_max, m, dim=-1, sorted=False).indices
        blocks = rows.reshape(batch, d // SELECTION_BLOCK, SELECTION_BLOCK)
        candidates = blocks.gather(1, chosen.unsqueeze(-1).expand(-1, -1, SELECTION_BLOCK)).reshape(batch, -1)
    return torch.topk(candidates, m, dim=-1, sorted=False).values.sort(dim=-1, descending=True).values


def fast_afa_selection(scores: torch.Tensor, target_norm: torch.Tensor, candidates: int = 256) -> AFASelection:
    """Top-AFA rule without a full sort; returns exactly :func:`full_sort_afa_selection`'s result.

    Takes the top ``m = candidates`` scores per token; where their cumulative norm reaches ``t`` the first
    minimiser of ``|C_j − t|`` is among them. Remaining rows are retried with 4m candidates, and rows still
    unresolved once m would exceed ``d_sae / 4`` use the full-sort rule. ``candidates`` only affects speed.
    """
    _check_inputs(scores, target_norm)
    if candidates < 1:
        raise ValueError(f"candidates must be ≥ 1; got {candidates}.")
    batch, d_sae = scores.shape
    k = torch.zeros(batch, dtype=torch.long, device=scores.device)
    kth_score = torch.zeros(batch, dtype=scores.dtype, device=scores.device)
    tie_rows = torch.zeros(batch, dtype=torch.bool, device=scores.device)
    pending = torch.arange(batch, device=scores.device)
    m = candidates
    while pending.numel() > 0 and m <= d_sae // 4:  # wider than d_sae/4, a top-m costs about a full sort
        rows = scores if pending.numel() == batch else scores[pending]
        top = top_values(rows, m)
        cumulative_norm = _cumulative_norm(top)
        reached = cumulative_norm[:, -1] >= target_norm[pending]
        if reached.any():
            done = pending[reached]
            done_top = top[reached]
            done_k = _first_minimiser(cumulative_norm[reached], target_norm[done])
            done_kth = done_top.gather(-1, (done_k - 1)[:, None])
            k[done] = done_k
            kth_score[done] = done_kth.squeeze(-1)
            # Every latent with s ≥ s_(k) is among the top m unless s_(m) == s_(k) itself.
            tie_rows[done] = ((done_top >= done_kth).sum(dim=-1) > done_k) | (done_top[:, -1:] == done_kth).squeeze(-1)
        pending = pending[~reached]
        m *= 4
    tie_rows[pending] = False
    mask = mask_from_threshold(scores, k, kth_score, tie_rows)
    if pending.numel() > 0:
        fallback = full_sort_afa_selection(scores[pending], target_norm[pending])
        k[pending] = fallback.k
        mask[pending] = fallback.mask
    return AFASelection(k=k, mask=mask)


def candidates_hint(k: torch.Tensor, minimum: int = 1) -> int:
    """Candidate count to carry over to the next batch: 1.25 × the 75th percentile of this batch's k.

    Speed only (any count gives the same selection): rows above it take the 4×-wider retry.
    """
    if k.numel() == 0:
        return minimum
    return max(minimum, int(1.25 * torch.quantile(k.float(), 0.75).item()) + 1)
