"""Polysemanticity estimators and the loss weights Γ they give (arXiv 2506.15963).

* :func:`estimate_variance` — per-dimension variance over a stream (float64 streaming moments).
* :func:`estimate_semantic_consistency` — per-dimension share of the most common label among active
  samples; :func:`latent_semantic_consistency` scores an SAE's latents (the paper's metric).
* :func:`scores_to_gamma` — γ_i = s_i^α normalised to mean(γ²) = 1, with a floor for zero scores.
* :func:`estimate_gamma` — both in one call, for ``weighting="variance"`` (and the others).
* :func:`iter_activation_batches` — the one adapter from tensors / ActivationsStore / cached directory.
"""

from __future__ import annotations

from typing import Any

import torch

from wsae_lens.architectures.weighting import ESTIMATED_WEIGHTINGS
from wsae_lens.estimators.gamma import DEFAULT_GAMMA_FLOOR, describe_gamma, scores_to_gamma
from wsae_lens.estimators.semantic_consistency import (
    DEFAULT_ACTIVE_THRESHOLD,
    SemanticConsistency,
    SemanticConsistencyCounter,
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
    progress: bool = True,
    **estimator_kwargs: Any,
) -> torch.Tensor:
    """Per-dimension scores s_i (float64 [d_in]) of the proxy named by ``weighting``.

    ``"variance"``: Var(x_i) (:func:`estimate_variance`). ``"semantic_consistency"``: SC_i
    (:func:`estimate_semantic_consistency`; the source must give labels), with never-active
    dimensions scored 0 (so :func:`scores_to_gamma` floors them). Extra keyword arguments go to the
    estimator (e.g. ``threshold``, ``num_labels``).
    """
    if weighting == "variance":
        return estimate_variance(source, max_tokens=max_tokens, progress=progress, **estimator_kwargs)
    if weighting == "semantic_consistency":
        result = estimate_semantic_consistency(source, max_tokens=max_tokens, progress=progress, **estimator_kwargs)
        return torch.nan_to_num(result.scores, nan=0.0)
    raise ValueError(f"weighting={weighting!r} is not estimated from activations; choose one of {list(ESTIMATED_WEIGHTINGS)}.")


def estimate_gamma(
    source: Any,
    weighting: str = "variance",
    alpha: float = 1.0,
    max_tokens: int | None = None,
    *,
    floor: float = DEFAULT_GAMMA_FLOOR,
    progress: bool = True,
    **estimator_kwargs: Any,
) -> torch.Tensor:
    """Γ (float64 [d_in]) for ``weighting`` from the activations in ``source``: scores → :func:`scores_to_gamma`."""
    if not (alpha >= 0):
        raise ValueError(f"alpha must be >= 0 (γ_i = s_i^α; α = 0 is the ordinary SAE), got {alpha}.")
    scores = estimate_scores(source, weighting, max_tokens=max_tokens, progress=progress, **estimator_kwargs)
    return scores_to_gamma(scores, alpha=alpha, floor=floor)


__all__ = [
    "ActivationBatch",
    "DEFAULT_ACTIVE_THRESHOLD",
    "SemanticConsistency",
    "SemanticConsistencyCounter",
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
