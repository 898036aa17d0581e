"""Per-dimension reconstruction weights Γ shared by every weighted architecture.

Weighted SAE (Cui et al., arXiv 2506.15963): the reconstruction loss is

    L_WSAE = mean_batch  Σ_i γ_i² (x_i − x̂_i)²,      Γ = diag(γ_1 … γ_{d_in}),

with γ_i = s_i^α for a per-dimension monosemanticity score s_i. Γ acts on the SAE's *input*
dimensions. It is a persistent buffer ``gamma`` of shape [d_in], so it is saved in
``sae_weights.safetensors`` and ignored by the optimiser. Γ = 1 is the ordinary SAE.

This module holds the one mechanism; each architecture module mixes it into SAELens's classes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from sae_lens.saes.sae import TrainStepInput, TrainStepOutput

GAMMA_KEY = "gamma"
"""Tensor name of Γ inside a safetensors file written by :func:`save_gamma`."""

WEIGHTING_CHOICES: tuple[str, ...] = ("uniform", "variance", "semantic_consistency", "file")
"""Accepted values of ``weighting``: where Γ comes from."""

ESTIMATED_WEIGHTINGS: tuple[str, ...] = ("variance", "semantic_consistency")
"""Weightings whose Γ is estimated from the training activations before training starts."""

TRANSFORM_CHOICES: tuple[str, ...] = ("none", "rank", "log")
"""Accepted values of ``weighting_transform``: the monotone map applied to the scores before γ = s^α
(see :func:`wsae_lens.estimators.gamma.transform_scores`)."""


def validate_weighting_options(
    *,
    alpha: float = 1.0,
    allow_negative_alpha: bool = False,
    transform: str = "none",
    active_quantile: float | None = None,
) -> None:
    """The one check of the Γ options, shared by :class:`WeightingConfig` and the estimator
    (:func:`wsae_lens.estimators.estimate_gamma`, :func:`wsae_lens.estimators.scores_to_gamma`).

    Raises ``ValueError`` naming the config field (and the estimator argument) and the fix when:

    * α (``weighting_alpha`` / ``alpha``) is NaN or ±inf (always refused);
    * α < 0 without ``weighting_allow_negative_alpha=True`` (``allow_negative_alpha``): γ_i = s_i^α with
      α < 0 is the *inverse* proxy (it up-weights low-score dimensions), which must be asked for explicitly;
    * ``weighting_transform`` (``transform``) is not one of :data:`TRANSFORM_CHOICES`;
    * ``weighting_active_quantile`` (``active_quantile``) is neither None nor in (0, 1).
    """
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"weighting_alpha: alpha must be a number, got {alpha!r}.") from None
    if not math.isfinite(value):
        raise ValueError(
            f"weighting_alpha: alpha must be >= 0 and finite, got {alpha} (NaN/inf is always refused; γ_i = s_i^α)."
        )
    if value < 0 and not allow_negative_alpha:
        raise ValueError(
            f"weighting_alpha: alpha must be >= 0 unless weighting_allow_negative_alpha=True (estimator: "
            f"allow_negative_alpha=True), got {alpha}. α < 0 is the inverse proxy (γ_i = s_i^α up-weights "
            "low-score dimensions): set that flag to use it on purpose, or give α >= 0 (0 is the ordinary SAE)."
        )
    if transform not in TRANSFORM_CHOICES:
        raise ValueError(
            f"weighting_transform={transform!r} is not supported (estimator: transform); choose one of "
            f"{list(TRANSFORM_CHOICES)}."
        )
    if active_quantile is not None and not (0.0 < active_quantile < 1.0):  # also rejects NaN
        raise ValueError(
            f"weighting_active_quantile={active_quantile} must lie in (0, 1) (e.g. 0.99: a dimension is active on "
            "the top 1% of its |values|), or be None for the |x_i|/‖x‖ > ε rule (estimator: active_quantile)."
        )


@dataclass(kw_only=True)
class WeightingConfig:
    """Config fields that record where Γ came from, so a saved SAE documents its own weighting.

    Args:
        weighting: where Γ comes from: ``"uniform"`` (Γ = 1, the ordinary SAE), ``"variance"`` or
            ``"semantic_consistency"`` (estimated from the training activations before training by
            :class:`wsae_lens.WeightedSAETrainingRunner`, see :mod:`wsae_lens.estimators`) or
            ``"file"`` (read from ``weighting_path`` when the SAE is built).
        weighting_alpha: exponent α in γ_i = s_i^α (α = 0 is uniform; the paper uses 0.5 and 1). Must
            be finite; negative only with ``weighting_allow_negative_alpha``.
        weighting_allow_negative_alpha: explicit opt-in to α < 0, the inverse proxy (γ grows as the
            score falls). Zero scores are floored before the power, so no weight is infinite.
        weighting_transform: monotone non-decreasing map applied to the scores before the power:
            ``"none"`` (s_i), ``"rank"`` (average rank of s_i divided by d_in, in (0, 1], so no
            dimension can dominate) or ``"log"`` (log(1 + s_i / median(s))); see
            :func:`wsae_lens.estimators.gamma.transform_scores`.
        weighting_active_quantile: for ``"semantic_consistency"`` only: None keeps the activity rule
            |x_i| / ‖x‖ > ε (suits sparse codes); a q in (0, 1), e.g. 0.99, makes dimension i active on
            the tokens where |x_i| exceeds its own q-quantile (suits dense residual streams, where
            every dimension is non-zero on every token); see
            :mod:`wsae_lens.estimators.semantic_consistency`.
        weighting_tokens: tokens the estimate reads (for estimated weightings; 0 = the runner's
            default, 2,000,000 tokens or the training budget if smaller); after estimation, the
            number of tokens actually used.
        weighting_path: safetensors file holding Γ under the key ``"gamma"``.

    All weighting fields are validated by :func:`validate_weighting_options` (the same check the
    estimator runs) and saved in ``cfg.json``.
    """

    weighting: str = "uniform"
    weighting_alpha: float = 1.0
    weighting_allow_negative_alpha: bool = False
    weighting_transform: str = "none"
    weighting_active_quantile: float | None = None
    weighting_tokens: int = 0
    weighting_path: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()  # type: ignore[misc]
        self.validate_weighting()

    def validate_weighting(self) -> None:
        """Raise ``ValueError`` naming the field for any weighting setting that makes no sense."""
        if self.weighting not in WEIGHTING_CHOICES:
            raise ValueError(
                f"weighting={self.weighting!r} is not supported; choose one of {list(WEIGHTING_CHOICES)}."
            )
        validate_weighting_options(
            alpha=self.weighting_alpha,
            allow_negative_alpha=self.weighting_allow_negative_alpha,
            transform=self.weighting_transform,
            active_quantile=self.weighting_active_quantile,
        )
        if self.weighting_tokens < 0:
            raise ValueError(f"weighting_tokens must be >= 0, got {self.weighting_tokens}.")
        if self.weighting == "file" and not self.weighting_path:
            raise ValueError('weighting="file" needs weighting_path: the safetensors file that holds Γ.')
        normalize = getattr(self, "normalize_activations", "none")
        if normalize == "covariance_whitening" and self.weighting != "uniform":
            raise ValueError(
                'normalize_activations="covariance_whitening" cannot be combined with '
                f"weighting={self.weighting!r}: per-dimension weights on whitened coordinates do not "
                'weight the model\'s dimensions. Use weighting="uniform" or another normalize_activations.'
            )


def validate_gamma(gamma: torch.Tensor, d_in: int) -> None:
    """Check that Γ has shape [d_in] and is finite, non-negative and not all zero."""
    if not isinstance(gamma, torch.Tensor):
        raise TypeError(f"gamma must be a torch.Tensor, got {type(gamma).__name__}.")
    if gamma.shape != (d_in,):
        raise ValueError(
            f"gamma has shape {tuple(gamma.shape)} but the SAE has d_in={d_in}: Γ needs one weight per "
            "input dimension, shape [d_in]."
        )
    if not torch.isfinite(gamma).all():
        bad = torch.nonzero(~torch.isfinite(gamma)).flatten()[:5].tolist()
        raise ValueError(f"gamma has NaN/Inf weights (first at dimensions {bad}); every weight must be finite.")
    if (gamma < 0).any():
        bad = torch.nonzero(gamma < 0).flatten()[:5].tolist()
        raise ValueError(f"gamma has negative weights (first at dimensions {bad}); weights must be >= 0.")
    if not (gamma > 0).any():
        raise ValueError("gamma is all zero: the loss would ignore every dimension.")


def load_gamma(path: str | Path) -> torch.Tensor:
    """Read Γ from a safetensors file written by :func:`save_gamma` (key ``"gamma"``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weighting_path {str(path)!r} does not exist: point it at a Γ safetensors file.")
    tensors = load_file(str(path))
    if GAMMA_KEY not in tensors:
        raise ValueError(f"{str(path)!r} has no tensor named {GAMMA_KEY!r} (found {sorted(tensors)}).")
    return tensors[GAMMA_KEY]


def save_gamma(gamma: torch.Tensor, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Write Γ to a safetensors file under the key ``"gamma"``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({GAMMA_KEY: gamma.detach().to("cpu", torch.float32).contiguous()}, str(path), metadata=metadata)
    return path


class GammaMixin:
    """Adds the Γ buffer and :meth:`set_gamma` to a SAELens SAE (inference or training).

    Mix in *before* the SAELens class: ``class WeightedTopKSAE(GammaMixin, TopKSAE)``.
    """

    gamma: torch.Tensor
    cfg: Any
    gamma_ready: bool
    """False while an estimated weighting (``"variance"``, ``"semantic_consistency"``) has not been
    set yet; :meth:`set_gamma` and loading saved weights (which hold Γ) make it True."""

    def initialize_weights(self) -> None:
        super().initialize_weights()  # type: ignore[misc]
        gamma = torch.ones(self.cfg.d_in, dtype=self.dtype, device=self.device)  # type: ignore[attr-defined]
        self.register_buffer(GAMMA_KEY, gamma, persistent=True)  # type: ignore[attr-defined]
        self.gamma_ready = self.cfg.weighting not in ESTIMATED_WEIGHTINGS
        if self.cfg.weighting == "file" and self.device.type != "meta":  # type: ignore[attr-defined]
            # On the meta device (SAELens's load_from_disk) the saved buffer replaces Γ anyway.
            self.set_gamma(load_gamma(self.cfg.weighting_path))

    @torch.no_grad()
    def set_gamma(
        self,
        gamma: torch.Tensor | str | Path,
        *,
        weighting: str | None = None,
        alpha: float | None = None,
        tokens: int | None = None,
    ) -> None:
        """Set Γ from a tensor or a safetensors file, after validation.

        Γ is cast to the SAE's dtype and device. ``weighting``, ``alpha`` and ``tokens``, when
        given, are recorded in the config (``weighting``, ``weighting_alpha``, ``weighting_tokens``).
        """
        if isinstance(gamma, (str, Path)):
            path = str(gamma)
            gamma = load_gamma(path)
            if weighting is None and self.cfg.weighting == "uniform":
                self.cfg.weighting_path = path
        validate_gamma(gamma, self.cfg.d_in)
        if alpha is not None:
            validate_weighting_options(alpha=alpha, allow_negative_alpha=self.cfg.weighting_allow_negative_alpha)
        is_uniform = bool((gamma == gamma[0]).all())
        if self.cfg.normalize_activations == "covariance_whitening" and not is_uniform:
            raise ValueError(
                'normalize_activations="covariance_whitening" cannot be combined with a non-uniform Γ: '
                "whitened coordinates are not the model's dimensions. Use another normalize_activations."
            )
        self.gamma.copy_(gamma.to(self.gamma.dtype))
        self.gamma_ready = True
        if weighting is not None:
            self.cfg.weighting = weighting
        if alpha is not None:
            self.cfg.weighting_alpha = float(alpha)
        if tokens is not None:
            self.cfg.weighting_tokens = int(tokens)


    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)  # type: ignore[misc]
        if prefix + GAMMA_KEY in state_dict:
            self.gamma_ready = True  # saved weights (final SAE or checkpoint) carry their Γ


class WeightedTrainingMixin(GammaMixin):
    """Training side: the reconstruction loss is weighted by Γ², the unweighted MSE is logged.

    SAELens's ``TrainingSAE.training_forward_pass`` computes ``mse_loss_fn(sae_out, sae_in)`` per
    element and then ``.sum(-1).mean()``; replacing ``mse_loss_fn`` gives exactly
    mean_batch Σ_i γ_i² (x_i − x̂_i)². Auxiliary losses, decoder-norm handling and evals are the
    SAELens architecture's own.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.mse_loss_fn = self.weighted_mse

    def weighted_mse(self, preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Element-wise γ_i² (x̂_i − x_i)², shape [..., d_in] (no reduction, as SAELens expects)."""
        return (preds - target).pow(2) * self.gamma.pow(2)

    def training_forward_pass(self, step_input: TrainStepInput) -> TrainStepOutput:
        if not self.gamma_ready:
            raise RuntimeError(
                f"weighting={self.cfg.weighting!r} needs Γ estimated from the training activations before the "
                "first training step, but it was never set (SAELens's plain LanguageModelSAETrainingRunner does "
                "not estimate it). Train with wsae_lens.WeightedSAETrainingRunner (a drop-in replacement), or call "
                "wsae_lens.prepare_weighting(runner) before runner.run(), or set Γ with sae.set_gamma(...)."
            )
        output = super().training_forward_pass(step_input)  # type: ignore[misc]

        def unweighted_mse() -> torch.Tensor:
            return (output.sae_out.detach() - output.sae_in).pow(2).sum(-1).mean()

        # Computed only on logging steps (SAELens calls metric callables when it logs).
        output.metrics["unweighted_mse_loss"] = unweighted_mse
        return output
