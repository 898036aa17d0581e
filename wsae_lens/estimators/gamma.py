"""Scores → loss weights Γ for the weighted SAE (arXiv 2506.15963).

    t_i = T(s_i)                                        (``transform``, below)
    γ_i = max(t_i, floor · max_j t_j)^α,   then   γ ← γ / sqrt(mean(γ²))

* α may be any finite number: α = 0 gives Γ = 1 (the ordinary SAE), the paper uses α ∈ {0.5, 1}; α < 0
  (the *inverse* proxy: low scores get high weight) only with ``allow_negative_alpha=True``. The
  options are checked by :func:`wsae_lens.architectures.weighting.validate_weighting_options`, the same
  function the weighted SAE config uses.
* The floor is *relative to the largest (transformed) score* and is applied **before** the power: a
  dimension with zero score (a constant dimension for the variance proxy, a never-active one for
  semantic consistency) gets weight floor^α relative to the best dimension instead of 0 (α > 0), or
  instead of ∞ (α < 0: at most floor^α = 1000^|α| times the top dimension's weight for the default
  floor). ``floor=0`` keeps zero weights for α > 0 and is refused for α < 0.
* The normalisation mean(γ²) = 1 keeps the weighted MSE Σ_i γ_i² (x_i − x̂_i)² on the scale of the
  plain MSE, so learning rates tuned for the unweighted SAE still apply. A global scale of the scores
  (e.g. SAELens's scalar activation normalisation) therefore does not change Γ (for every transform).

Transforms T (``weighting_transform``), each monotone non-decreasing in s and ≥ 0, so they keep the
order of the dimensions and only change how far apart their weights are:

* ``"none"``: T(s_i) = s_i.
* ``"rank"``: T(s_i) = r_i / d with r_i the 1-based rank of s_i among the d scores, ties getting their
  average rank (r_i = #{j: s_j < s_i} + (#{j: s_j = s_i} + 1) / 2). T lies in (0, 1]: the spread of Γ is
  bounded by d^|α| whatever the scores, so no dimension can dominate the loss (on dense activations a
  few outlier dimensions can carry most of the variance).
* ``"log"``: T(s_i) = log(1 + s_i / m), m = median(s) (``torch.median``: the lower middle value when d is
  even; the mean of s when the median is 0). Scores at
  the median map to log 2; very large scores grow only logarithmically; s = 0 maps to 0 (then floored).
"""

from __future__ import annotations

import torch

from wsae_lens.architectures.weighting import TRANSFORM_CHOICES, validate_weighting_options

DEFAULT_GAMMA_FLOOR = 1e-3
"""Default floor, relative to the largest score, applied before the power α."""


def average_ranks(scores: torch.Tensor) -> torch.Tensor:
    """1-based ranks of a 1-D tensor, ties averaged: r_i = #{j: s_j < s_i} + (#{j: s_j = s_i} + 1) / 2 (float64)."""
    s = scores.to(torch.float64)
    sorted_s = torch.sort(s).values
    below = torch.searchsorted(sorted_s, s, right=False).to(torch.float64)  # #{j: s_j < s_i}
    upto = torch.searchsorted(sorted_s, s, right=True).to(torch.float64)  # #{j: s_j <= s_i}
    return below + (upto - below + 1) / 2


def transform_scores(scores: torch.Tensor, transform: str = "none") -> torch.Tensor:
    """T(s) for ``transform`` in :data:`TRANSFORM_CHOICES` (module docstring): ``"none"``, ``"rank"`` (r_i / d,
    ties averaged) or ``"log"`` (log(1 + s_i / median(s))). Scores must be finite and ≥ 0; float64 out."""
    if transform not in TRANSFORM_CHOICES:
        validate_weighting_options(transform=transform)  # raises, naming the field
    s = torch.as_tensor(scores).to(torch.float64)
    if transform == "none":
        return s
    if transform == "rank":
        return average_ranks(s) / s.numel()
    scale = s.median()
    if scale <= 0:
        scale = s.mean()
    if not scale > 0:
        return torch.zeros_like(s)
    ratio = s / scale  # overflows to inf when the median is tiny (e.g. subnormal): use log s − log m there
    return torch.where(torch.isfinite(ratio), torch.log1p(ratio), torch.log(s) - torch.log(scale))


def scores_to_gamma(
    scores: torch.Tensor,
    alpha: float = 1.0,
    floor: float = DEFAULT_GAMMA_FLOOR,
    *,
    transform: str = "none",
    allow_negative_alpha: bool = False,
) -> torch.Tensor:
    """Γ from per-dimension scores: γ_i = max(T(s_i), floor·max T(s))^α normalised to mean(γ²) = 1 (float64).

    See the module docstring for T (``transform``), the floor and negative α (``allow_negative_alpha``).
    """
    validate_weighting_options(alpha=alpha, allow_negative_alpha=allow_negative_alpha, transform=transform)
    if not (0 <= floor <= 1):
        raise ValueError(f"floor must be in [0, 1] (a fraction of the largest score), got {floor}.")
    if alpha < 0 and floor == 0:
        raise ValueError(
            "floor=0 with a negative alpha would give zero-score dimensions infinite weight; use floor > 0."
        )
    scores = torch.as_tensor(scores).to(torch.float64)
    if scores.ndim != 1 or scores.numel() == 0:
        raise ValueError(f"scores must be a non-empty 1-D tensor [d_in], got shape {tuple(scores.shape)}.")
    if not torch.isfinite(scores).all():
        bad = torch.nonzero(~torch.isfinite(scores)).flatten()[:5].tolist()
        raise ValueError(f"scores has NaN/Inf values (first at dimensions {bad}); every score must be finite.")
    if (scores < 0).any():
        bad = torch.nonzero(scores < 0).flatten()[:5].tolist()
        raise ValueError(f"scores has negative values (first at dimensions {bad}); scores must be >= 0.")
    if scores.max() <= 0:
        raise ValueError(
            "every score is zero (e.g. constant activations, or no dimension was ever active): "
            "Γ cannot be derived; check the source data."
        )
    transformed = transform_scores(scores, transform)
    top = transformed.max()  # > 0: every transform maps a positive score to a positive value
    floored = transformed.clamp(min=float(floor * top))
    if alpha == 0:
        gamma = torch.ones_like(floored)
    else:
        # divide by the max first: the ratio lies in [floor, 1], so no under/overflow for tiny/huge scores
        gamma = (floored / top).pow(alpha)
    return gamma / gamma.square().mean().sqrt()  # the top dimension has γ = 1 before this, so rms > 0


def describe_gamma(gamma: torch.Tensor, top: int = 5) -> dict[str, object]:
    """Summary of Γ: min / median / max weight, mean(γ²), and the ``top`` most and least weighted dimensions."""
    gamma = gamma.detach().to("cpu", torch.float64)
    order = torch.argsort(gamma, descending=True, stable=True)
    top = min(top, gamma.numel())
    return {
        "d_in": gamma.numel(),
        "min": float(gamma.min()),
        "median": float(gamma.median()),
        "max": float(gamma.max()),
        "mean_square": float(gamma.square().mean()),
        "most_weighted": [(int(i), float(gamma[i])) for i in order[:top]],
        "least_weighted": [(int(i), float(gamma[i])) for i in order.flip(0)[:top]],
    }
