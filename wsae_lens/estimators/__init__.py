"""Polysemanticity estimators and the loss weights Γ they give (arXiv 2506.15963).

* :func:`estimate_variance` — per-dimension variance over a stream (float64 streaming moments).
* :func:`estimate_semantic_consistency` — per-dimension share of the most common label among active
  samples; :func:`latent_semantic_consistency` scores an SAE's latents (the paper's metric).
* :func:`scores_to_gamma` — γ_i = T(s_i)^α normalised to mean(γ²) = 1, with a floor for zero scores and an
  optional monotone transform T (``"none"``, ``"rank"``, ``"log"``; :func:`transform_scores`).
* :func:`estimate_gamma` — both in one call, for ``weighting="variance"`` (and the others).
* :func:`iter_activation_batches` — the one adapter from tensors / ActivationsStore / cached directory.
"""

from __future__ import annotations

from typing import Any

import torch

from wsae_lens.architectures.weighting import ESTIMATED_WEIGHTINGS, TRANSFORM_CHOICES, validate_weighting_options
from wsae_lens.estimators.gamma import (
    DEFAULT_GAMMA_FLOOR,
    average_ranks,
    describe_gamma,
    scores_to_gamma,
    transform_scores,
)
from wsae_lens.estimators.semantic_consistency import (
    DEFAULT_ACTIVE_THRESHOLD,
    DEFAULT_CALIBRATION_TOKENS,
    abs_quantile_thresholds,
    SemanticConsistency,
    SemanticConsistencyCounter,
    SemanticConsistencyStream,
    estimate_semantic_consistency,
    latent_semantic_consistency,
)
from wsae_lens.activations.sources import ActivationBatch, iter_activation_batches
from wsae_lens.estimators.variance import StreamingMoments, estimate_variance



def estimate_scores(
    source: Any,
    weighting: str = "variance",
    *,
    max_tokens: int | None = None,
    active_quantile: float | None = None,
    progress: bool = True,
    **estimator_kwargs: Any,
) -> torch.Tensor:
    """Per-dimension scores s_i (float64 [d_in]) of the proxy named by ``weighting``.

    ``"variance"``: Var(x_i) (:func:`estimate_variance`). ``"semantic_consistency"``: SC_i
    (:func:`estimate_semantic_consistency`; the source must give labels), with never-active
    dimensions scored 0 (so :func:`scores_to_gamma` floors them); ``active_quantile`` picks its activity
    rule (None: |x_i|/‖x‖ > ε; q: |x_i| above its own q-quantile) and is ignored by ``"variance"``.
    Extra keyword arguments go to the estimator (e.g. ``threshold``, ``calibration_tokens``, ``num_labels``).
    """
    if weighting == "variance":
        return estimate_variance(source, max_tokens=max_tokens, progress=progress, **estimator_kwargs)
    if weighting == "semantic_consistency":
        result = estimate_semantic_consistency(
            source, max_tokens=max_tokens, active_quantile=active_quantile, progress=progress, **estimator_kwargs
        )
        return torch.nan_to_num(result.scores, nan=0.0)
    raise ValueError(f"weighting={weighting!r} is not estimated from activations; choose one of {list(ESTIMATED_WEIGHTINGS)}.")


def estimate_gamma(
    source: Any,
    weighting: str = "variance",
    alpha: float = 1.0,
    max_tokens: int | None = None,
    *,
    floor: float = DEFAULT_GAMMA_FLOOR,
    transform: str = "none",
    allow_negative_alpha: bool = False,
    active_quantile: float | None = None,
    progress: bool = True,
    **estimator_kwargs: Any,
) -> torch.Tensor:
    """Γ (float64 [d_in]) for ``weighting`` from the activations in ``source``: scores → :func:`scores_to_gamma`.

    The options are the weighted SAE config's fields without the ``weighting_`` prefix (``alpha``,
    ``allow_negative_alpha``, ``transform``, ``active_quantile``) and are checked, before anything is read,
    by the same :func:`~wsae_lens.architectures.weighting.validate_weighting_options` as the config.
    """
    validate_weighting_options(
        alpha=alpha, allow_negative_alpha=allow_negative_alpha, transform=transform, active_quantile=active_quantile
    )
    scores = estimate_scores(
        source, weighting, max_tokens=max_tokens, active_quantile=active_quantile, progress=progress, **estimator_kwargs
    )
    return scores_to_gamma(
        scores, alpha=alpha, floor=floor, transform=transform, allow_negative_alpha=allow_negative_alpha
    )


__all__ = [
    "ActivationBatch",
    "DEFAULT_ACTIVE_THRESHOLD",
    "DEFAULT_CALIBRATION_TOKENS",
    "TRANSFORM_CHOICES",
    "abs_quantile_thresholds",
    "average_ranks",
    "transform_scores",
    "validate_weighting_options",
    "SemanticConsistency",
    "SemanticConsistencyCounter",
    "SemanticConsistencyStream",
    "estimate_semantic_consistency",
    "latent_semantic_consistency",
    "DEFAULT_GAMMA_FLOOR",
    "ESTIMATED_WEIGHTINGS",
    "StreamingMoments",
    "describe_gamma",
    "estimate_gamma",
    "estimate_scores",
    "estimate_variance",
    "iter_activation_batches",
    "scores_to_gamma",
]
