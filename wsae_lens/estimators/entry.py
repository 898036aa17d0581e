"""The one entry point for Γ from activations: source → filtered batches → scores → Γ, with the tokens read.

Every caller (the training runner, the comparison and sweep, ``wsae-lens estimate``) goes through
:func:`estimate_gamma_from_activations`; the token budget has one rule, :func:`weighting_token_budget`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from wsae_lens.activations import FilterCounts, TokenCounter, TokenFilter, iter_activation_batches, source_token_filter

DEFAULT_WEIGHTING_TOKENS = 2_000_000
"""Tokens read for Γ when ``weighting_tokens`` is 0 (capped by the training budget)."""


class GammaEstimate(NamedTuple):
    """Γ (float64 [d_in]), the kept tokens it was estimated on, and what the token filter dropped meanwhile."""

    gamma: torch.Tensor
    tokens: int
    filtered: FilterCounts


def weighting_token_budget(weighting_tokens: int, training_tokens: int | None = None) -> int:
    """Tokens the estimate reads: ``weighting_tokens`` if positive, else
    min(:data:`DEFAULT_WEIGHTING_TOKENS`, ``training_tokens``)."""
    if weighting_tokens > 0:
        return int(weighting_tokens)
    return min(DEFAULT_WEIGHTING_TOKENS, int(training_tokens)) if training_tokens else DEFAULT_WEIGHTING_TOKENS


def estimate_gamma_from_activations(
    source: Any,
    weighting: str = "variance",
    alpha: float = 1.0,
    *,
    max_tokens: int | None = None,
    token_filter: TokenFilter | None = None,
    hook_name: str | None = None,
    progress: bool = True,
    **estimator_kwargs: Any,
) -> GammaEstimate:
    """Γ for ``weighting`` from ``source`` (anything :func:`~wsae_lens.activations.iter_activation_batches`
    reads), through ``token_filter`` (default: the source's policy), over at most ``max_tokens`` kept tokens.

    Extra keyword arguments go to :func:`wsae_lens.estimators.estimate_gamma` (``floor``, ``transform``,
    ``allow_negative_alpha``, ``active_quantile``, ``threshold``, ``calibration_tokens``, ...).
    """
    from wsae_lens.estimators import estimate_gamma

    token_filter = source_token_filter(source) if token_filter is None else token_filter
    before = FilterCounts(**vars(token_filter.counts))
    batches = TokenCounter(
        iter_activation_batches(source, max_tokens=max_tokens, hook_name=hook_name, token_filter=token_filter)
    )
    gamma = estimate_gamma(batches, weighting=weighting, alpha=alpha, max_tokens=max_tokens, progress=progress,
                           **estimator_kwargs)
    after = token_filter.counts
    filtered = FilterCounts(after.seen - before.seen, after.special - before.special, after.outliers - before.outliers)
    return GammaEstimate(gamma, batches.tokens, filtered)


def weighting_options(cfg: Any) -> dict[str, Any]:
    """The estimator keyword arguments of a weighted SAE config: ``allow_negative_alpha``, ``transform``,
    ``active_quantile`` (from ``weighting_*``; the defaults for configs that predate these fields)."""
    return {
        "allow_negative_alpha": bool(getattr(cfg, "weighting_allow_negative_alpha", False)),
        "transform": getattr(cfg, "weighting_transform", "none"),
        "active_quantile": getattr(cfg, "weighting_active_quantile", None),
    }


def estimate_sae_gamma(
    sae: Any, source: Any, *, training_tokens: int | None = None, token_filter: TokenFilter | None = None,
    progress: bool = True,
) -> GammaEstimate:
    """Γ for a weighted SAE from its own weighting fields (``weighting``, ``weighting_alpha``,
    ``weighting_allow_negative_alpha``, ``weighting_transform``, ``weighting_active_quantile``,
    ``weighting_tokens``), stored into it with ``set_gamma`` (so ``cfg.json`` records the tokens read)."""
    cfg = sae.cfg
    budget = weighting_token_budget(int(cfg.weighting_tokens), training_tokens)
    estimate = estimate_gamma_from_activations(
        source, cfg.weighting, cfg.weighting_alpha, max_tokens=budget, token_filter=token_filter, progress=progress,
        **weighting_options(cfg),
    )
    sae.set_gamma(estimate.gamma, weighting=cfg.weighting, alpha=cfg.weighting_alpha, tokens=estimate.tokens)
    return estimate
