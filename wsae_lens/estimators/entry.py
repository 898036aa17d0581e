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


class SAEGammaStream:
    """Push-based :func:`estimate_sae_gamma` for one SAE, so that one pass over the data feeds many SAEs.

    ``update(batch)`` takes already-filtered :class:`~wsae_lens.activations.ActivationBatch` es (token ids
    as labels) and keeps the first ``budget`` = :func:`weighting_token_budget` tokens (the last batch is
    cut, as :func:`~wsae_lens.activations.iter_activation_batches` cuts it); ``done`` says when the
    budget is read; ``finish()`` turns the scores into Γ (``scores_to_gamma`` with the SAE's options) and
    stores it with ``set_gamma``. On the same batches the result equals :func:`estimate_sae_gamma`'s.
    ``merge_ranks``: all-reduce the variance moments over ``torch.distributed`` ranks (every rank must
    then call ``finish`` in the same order), as :func:`~wsae_lens.estimators.estimate_variance` does.
    """

    def __init__(self, sae: Any, training_tokens: int | None = None, *, merge_ranks: bool = True) -> None:
        from wsae_lens.estimators import SemanticConsistencyStream, StreamingMoments, validate_weighting_options

        cfg = sae.cfg
        options = weighting_options(cfg)
        validate_weighting_options(alpha=cfg.weighting_alpha, allow_negative_alpha=options["allow_negative_alpha"],
                                   transform=options["transform"], active_quantile=options["active_quantile"])
        self.sae = sae
        self.budget = weighting_token_budget(int(cfg.weighting_tokens), training_tokens)
        self.tokens = 0
        self.merge_ranks = merge_ranks
        if cfg.weighting == "variance":
            self.accumulator: Any = StreamingMoments()
        elif cfg.weighting == "semantic_consistency":
            self.accumulator = SemanticConsistencyStream(active_quantile=options["active_quantile"])
        else:
            raise ValueError(f"weighting={cfg.weighting!r} is not estimated from activations.")

    @property
    def done(self) -> bool:
        return self.tokens >= self.budget

    def update(self, batch: Any) -> None:
        """Add the next filtered batch (ignored once the budget is read)."""
        remaining = self.budget - self.tokens
        if remaining <= 0:
            return
        activations, labels = batch
        if activations.shape[0] > remaining:
            activations = activations[:remaining]
            labels = None if labels is None else labels[:remaining]
        if self.sae.cfg.weighting == "variance":
            self.accumulator.update(activations)
        else:
            if labels is None:
                raise ValueError("semantic consistency needs token ids as labels; the batches have none.")
            self.accumulator.update(activations, labels)
        self.tokens += activations.shape[0]

    def finish(self) -> torch.Tensor:
        """Γ from the tokens read, stored into the SAE (``weighting_tokens`` records the count)."""
        from wsae_lens.estimators import scores_to_gamma

        cfg = self.sae.cfg
        if cfg.weighting == "variance":
            if self.merge_ranks:
                self.accumulator.all_reduce()
            scores = self.accumulator.variance()
        else:
            scores = torch.nan_to_num(self.accumulator.result().scores, nan=0.0)
        options = weighting_options(cfg)
        gamma = scores_to_gamma(scores, alpha=cfg.weighting_alpha, transform=options["transform"],
                                allow_negative_alpha=options["allow_negative_alpha"])
        self.sae.set_gamma(gamma, weighting=cfg.weighting, alpha=cfg.weighting_alpha, tokens=self.tokens)
        return self.sae.gamma
