"""``topafa``: the top-AFA SAE (approximate feature activation, arXiv 2503.24277).

A TopK-family SAE with no k to tune. With ``a = ReLU(W_enc (x − b_dec) + b_enc)`` and decoder-scaled
scores ``s_i = a_i ‖W_dec,i‖``, each token keeps the top ``k(x)`` latents, where ``k(x)`` is the prefix
length (in descending ``s``) whose cumulative root-sum-square ``C_k`` is nearest to a target norm ``t(x)``
(rule and tie handling: :mod:`wsae_lens.architectures.afa_selection`). The training loss is

    L = ‖x − x̂‖² + λ_AFA · mean_batch (C_k(x) − t(x))² + AuxK (SAELens's TopK dead-latent loss).

Target norm (one choice, used in both selection and loss): ``afa_target="input_minus_b_dec"`` (default)
takes ``t = ‖x − b_dec‖``, the norm of what the latents must reconstruct once the decoder bias is
accounted for (x after the SAE's run-time input normalisation). ``afa_target="input"`` takes ``t = ‖x‖``
(the reference code used ‖x‖ in the loss but ‖x − b_dec‖ in the selection; we never mix them). In the loss
the target is a constant (detached): the term pulls the code's norm towards the data, not ``b_dec``.

Everything else is SAELens's TopK: ``rescale_acts_by_decoder_norm`` (on in training; the scores then are
the activations themselves), the AuxK loss, hooks, saving and loading. The inherited ``k`` field is not
used. Inference (:class:`TopAFASAE`) runs the same encode code on weights saved unfolded (unlike TopK,
saving does not fold the decoder norms: folding changes float rounding and could flip a near-tie), so a
saved SAE keeps per token exactly the latents the training SAE keeps. ``fold_W_dec_norm`` is allowed in
both modes (the scores a_i ‖W_dec,i‖ do not change under folding, up to rounding).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from sae_lens.saes.sae import SAE, TrainCoefficientConfig, TrainingSAE, TrainStepInput
from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig, TopKTrainingSAE, TopKTrainingSAEConfig
from typing_extensions import override

from wsae_lens.architectures.afa_selection import candidates_hint, fast_afa_selection

AFA_TARGET_CHOICES: tuple[str, ...] = ("input_minus_b_dec", "input")
"""Accepted values of ``afa_target``: the norm the kept code should match, ‖x − b_dec‖ or ‖x‖."""


@dataclass(kw_only=True)
class AFASelectionConfig:
    """Config fields shared by the inference and training top-AFA configs.

    Args:
        afa_target: ``"input_minus_b_dec"`` (t = ‖x − b_dec‖, default) or ``"input"`` (t = ‖x‖); used by
            the selection and by the AFA loss alike.
        afa_candidates: number of top candidates the fast selection examines per token on the first call;
            later calls use 1.25 × the 75th percentile of the previous call's k. Speed only: the selection
            is exact for any value (rows not resolved fall back to wider searches).
    """

    afa_target: str = "input_minus_b_dec"
    afa_candidates: int = 256

    def __post_init__(self) -> None:
        super().__post_init__()  # type: ignore[misc]
        self.validate_afa()

    def validate_afa(self) -> None:
        """Raise ``ValueError`` naming the field for an unusable top-AFA setting."""
        if self.afa_target not in AFA_TARGET_CHOICES:
            raise ValueError(f"afa_target={self.afa_target!r} is not supported; choose one of {list(AFA_TARGET_CHOICES)}.")
        if self.afa_candidates < 1:
            raise ValueError(f"afa_candidates must be ≥ 1 (a speed knob, e.g. 256); got {self.afa_candidates}.")
        if getattr(self, "d_sae", 2) < 2:
            raise ValueError("top-AFA needs d_sae ≥ 2 (the rule never keeps all latents); increase d_sae.")


class TopAFAMixin:
    """The top-AFA encode step shared by the inference and the training SAE."""

    cfg: Any
    W_enc: torch.nn.Parameter
    W_dec: torch.nn.Parameter
    b_enc: torch.nn.Parameter
    b_dec: torch.nn.Parameter
    dtype: torch.dtype
    _afa_candidates_hint: int | None = None

    def afa_target_norm(self, x: torch.Tensor) -> torch.Tensor:
        """Per-token target norm t(x): ‖x_n − b_dec‖ or ‖x_n‖, x_n the SAE's run-time-normalised input."""
        x_n = self.run_time_activation_norm_fn_in(self.reshape_fn_in(x.to(self.dtype)))  # type: ignore[attr-defined]
        if self.cfg.afa_target == "input_minus_b_dec":
            x_n = x_n - self.b_dec
        return torch.linalg.vector_norm(x_n, dim=-1)

    def effective_decoder_norms(self) -> torch.Tensor:
        """Norm of the vector each unit of activation adds to x̂: 1 when decode divides by ‖W_dec,i‖."""
        if self.cfg.rescale_acts_by_decoder_norm:
            return torch.ones(self.cfg.d_sae, dtype=self.W_dec.dtype, device=self.W_dec.device)
        return self.W_dec.norm(dim=-1)

    def afa_pre_and_mask(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden pre-activations (decoder-norm-rescaled as in TopK) and the top-AFA keep mask."""
        sae_in = self.process_sae_in(x)  # type: ignore[attr-defined]
        hidden_pre = self.hook_sae_acts_pre(sae_in @ self.W_enc + self.b_enc)  # type: ignore[attr-defined]
        if self.cfg.rescale_acts_by_decoder_norm:
            hidden_pre = hidden_pre * self.W_dec.norm(dim=-1)
        with torch.no_grad():
            scores = hidden_pre.relu() * self.effective_decoder_norms()
            flat_scores = scores.reshape(-1, scores.shape[-1])
            target = self.afa_target_norm(x).reshape(-1)
            selection = fast_afa_selection(flat_scores, target, candidates=self._next_candidates())
            self._update_candidates_hint(selection.k)
        return hidden_pre, selection.mask.reshape(scores.shape)

    def _next_candidates(self) -> int:
        return self._afa_candidates_hint or self.cfg.afa_candidates

    def _update_candidates_hint(self, k: torch.Tensor) -> None:
        """Carry this batch's k distribution over to the next call's candidate count (speed only)."""
        self._afa_candidates_hint = candidates_hint(k)


@dataclass
class TopAFASAEConfig(AFASelectionConfig, TopKSAEConfig):
    """Inference config of a top-AFA SAE: :class:`TopKSAEConfig` (``k`` unused) plus the selection fields."""

    @override
    @classmethod
    def architecture(cls) -> str:
        return "topafa"


class TopAFASAE(TopAFAMixin, TopKSAE):
    """Inference top-AFA SAE: ``encode`` keeps per token the top-k(x) latents of the top-AFA rule."""

    @override
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        hidden_pre, mask = self.afa_pre_and_mask(x)
        return self.hook_sae_acts_post(hidden_pre.relu() * mask)

    @override
    def get_activation_fn(self) -> Callable[[torch.Tensor], torch.Tensor]:
        return torch.nn.ReLU()  # the selection needs the target norm too, so encode applies it

    @override
    @torch.no_grad()
    def fold_W_dec_norm(self) -> None:
        # Safe in both modes: the selection scores a_i ‖W_dec,i‖ are invariant under folding.
        SAE.fold_W_dec_norm(self)


@dataclass
class TopAFATrainingSAEConfig(AFASelectionConfig, TopKTrainingSAEConfig):
    """Training config of a top-AFA SAE (``architecture="topafa"``).

    Args:
        afa_coefficient: λ_AFA of the loss term λ_AFA · mean (C_k − t)². The paper found 1/32–1/16
            stable (range tried 1/128–1/16); default 1/32.

    The other fields are :class:`AFASelectionConfig`'s ``afa_target`` and ``afa_candidates`` and TopK's
    AuxK settings; ``k`` is unused.
    """

    afa_coefficient: float = 1.0 / 32

    @override
    @classmethod
    def architecture(cls) -> str:
        return "topafa"

    @override
    def validate_afa(self) -> None:
        super().validate_afa()
        if not (self.afa_coefficient >= 0):  # also catches NaN
            raise ValueError(f"afa_coefficient (λ_AFA) must be ≥ 0, e.g. 1/32; got {self.afa_coefficient}.")


class TopAFATrainingSAE(TopAFAMixin, TopKTrainingSAE):
    """TopK training SAE with the top-AFA selection and the AFA loss term (plus SAELens's AuxK loss)."""

    @override
    def encode_with_hidden_pre(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden_pre, mask = self.afa_pre_and_mask(x)
        return self.hook_sae_acts_post(hidden_pre.relu() * mask), hidden_pre

    @override
    def get_activation_fn(self) -> Callable[[torch.Tensor], torch.Tensor]:
        return torch.nn.ReLU()

    @override
    def get_coefficients(self) -> dict[str, TrainCoefficientConfig | float]:
        return {}

    @override
    @torch.no_grad()
    def fold_W_dec_norm(self) -> None:
        SAE.fold_W_dec_norm(self)

    @override
    def process_state_dict_for_saving_inference(self, state_dict: dict[str, Any]) -> None:
        # Unlike TopK, keep the weights unfolded (the saved cfg keeps rescale_acts_by_decoder_norm): folding
        # changes float rounding, and a near-tie of |C_j − t| could then select differently at inference.
        TrainingSAE.process_state_dict_for_saving_inference(self, state_dict)

    @override
    def calculate_aux_loss(
        self,
        step_input: TrainStepInput,
        feature_acts: torch.Tensor,
        hidden_pre: torch.Tensor,
        sae_out: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        losses = super().calculate_aux_loss(step_input, feature_acts, hidden_pre, sae_out)
        kept_norm = torch.linalg.vector_norm(feature_acts * self.effective_decoder_norms(), dim=-1)
        target = self.afa_target_norm(step_input.sae_in).detach()
        losses["afa_loss"] = self.cfg.afa_coefficient * (kept_norm - target).square().mean()
        return losses
