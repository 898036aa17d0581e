"""The sparse training step of a SAELens TopK-family training SAE: its config field and its mixin.

:class:`SparseTopKTrainingMixin` replaces ``training_forward_pass`` where ``sparse_training`` says so;
everything else is the SAELens class's own. Both paths take their extra losses from the same hook,
``calculate_aux_loss`` (:meth:`SparseTopKTrainingMixin.calculate_aux_loss`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from sae_lens.saes.sae import TrainStepInput, TrainStepOutput

from wsae_lens.architectures.sparse.auxk import auxk_loss, auxk_size
from wsae_lens.architectures.sparse.ops import latent_major, sparse_decode
from wsae_lens.architectures.sparse.selection import SparseTopKEncoding, sparse_topk_encode

SparseTrainingChoice = bool | Literal["auto"]

AUTO_MIN_D_SAE = 512
"""``sparse_training="auto"`` uses the dense path below this many latents (per-op overheads dominate)."""

AUTO_MAX_K_FRACTION = 1 / 32
"""``sparse_training="auto"`` uses the dense path when k > d_sae · this (measured: sparse 1.7× faster at
k = d_sae/36, break-even at k = d_sae/16, 0.56× at k = d_sae/8; d_in 576, d_sae 4,608, batch 1,024)."""


def use_sparse_training(choice: SparseTrainingChoice, d_sae: int, k: int) -> bool:
    """Whether ``sparse_training=choice`` takes the sparse path for this d_sae and k.

    ``"auto"``: sparse iff d_sae ≥ :data:`AUTO_MIN_D_SAE` and k ≤ d_sae · :data:`AUTO_MAX_K_FRACTION`
    (the crossover measured with ``benchmarks/bench_sparse_topk.py --sweep``; see the README).
    """
    if choice == "auto":
        return d_sae >= AUTO_MIN_D_SAE and k <= d_sae * AUTO_MAX_K_FRACTION
    return bool(choice)


@dataclass(kw_only=True)
class SparseTrainingConfig:
    """Config field choosing the training path of a TopK-family SAE.

    Args:
        sparse_training: ``True`` (sparse decode and encoder backward, see
            :mod:`wsae_lens.architectures.sparse`), ``False`` (SAELens's dense step) or ``"auto"``
            (sparse where it is faster: :func:`use_sparse_training`). Results are the same either way
            (to float rounding); only speed and memory differ.
    """

    sparse_training: SparseTrainingChoice = "auto"

    def __post_init__(self) -> None:
        super().__post_init__()  # type: ignore[misc]
        if self.sparse_training not in (True, False, "auto"):
            raise ValueError(
                f"sparse_training must be True, False or 'auto', got {self.sparse_training!r}."
            )


@dataclass
class SparseTrainStepInput(TrainStepInput):
    """The ``TrainStepInput`` the sparse step hands to ``calculate_aux_loss``, plus that step's encoding
    (which alone holds the AuxK selection: no dense pre-activations exist)."""

    encoding: SparseTopKEncoding


def _make_contiguous(state_dict: dict[str, Any]) -> None:
    for name, value in state_dict.items():
        if isinstance(value, torch.Tensor) and not value.is_contiguous():
            state_dict[name] = value.contiguous()


class SparseTopKTrainingMixin:
    """Sparse ``training_forward_pass`` for a SAELens TopK-family training SAE.

    Mix in before the SAELens class (``class X(SparseTopKTrainingMixin, TopKTrainingSAE)``); its config
    needs :class:`SparseTrainingConfig`. Falls back to the SAELens (dense) step when
    ``sparse_training`` says so, when hooks are attached to the SAE, under autocast, when the input
    requires grad or is not [N, d_in] after ``process_sae_in``.

    The returned ``TrainStepOutput`` has the same loss, losses and ``sae_out`` as SAELens's;
    ``feature_acts`` and ``hidden_pre`` are uncoalesced [N, d_sae] COO tensors holding the top-k latents of
    each row (as with SAELens's ``use_sparse_activations``), so the trainer's firing statistics
    (``.bool().float().sum(-2)``) cost O(N·k); the dense h is never materialised.
    """

    cfg: Any

    def initialize_weights(self) -> None:
        """SAELens's initialisation; then, where the sparse path trains, W_enc is stored latent by latent
        (same values; :func:`~wsae_lens.architectures.sparse.ops.is_latent_major`) so the sparse backward
        hands ∂W_enc over without a transpose."""
        super().initialize_weights()  # type: ignore[misc]
        sae: Any = self
        if use_sparse_training(sae.cfg.sparse_training, sae.cfg.d_sae, sae.cfg.k):
            sae.W_enc = torch.nn.Parameter(latent_major(sae.W_enc))

    def process_state_dict_for_saving(self, state_dict: dict[str, Any]) -> None:
        super().process_state_dict_for_saving(state_dict)  # type: ignore[misc]
        _make_contiguous(state_dict)  # safetensors stores contiguous tensors only

    def process_state_dict_for_saving_inference(self, state_dict: dict[str, Any]) -> None:
        super().process_state_dict_for_saving_inference(state_dict)  # type: ignore[misc]
        _make_contiguous(state_dict)

    def sparse_training_active(self, sae_in: torch.Tensor) -> bool:
        """Whether this step takes the sparse path (see the class docstring for the fall-backs)."""
        if not use_sparse_training(self.cfg.sparse_training, self.cfg.d_sae, self.cfg.k):
            return False
        if sae_in.requires_grad or torch.is_autocast_enabled(sae_in.device.type):
            return False
        hook_points = self.hook_dict.values()  # type: ignore[attr-defined]
        return not any(hp._forward_hooks or hp._backward_hooks for hp in hook_points)

    def training_forward_pass(self, step_input: TrainStepInput) -> TrainStepOutput:
        if not self.sparse_training_active(step_input.sae_in):
            return super().training_forward_pass(step_input)  # type: ignore[misc]
        sae: Any = self
        with torch.no_grad():
            centered = sae.process_sae_in(step_input.sae_in)
        if centered.ndim != 2:
            return super().training_forward_pass(step_input)  # type: ignore[misc]
        dead_neuron_mask, k_aux = self.aux_selection(step_input)
        encoding = sparse_topk_encode(
            centered,
            sae.W_enc,
            sae.b_enc,
            sae.W_dec,
            sae.cfg.k,
            input_offset=sae.b_dec if sae.cfg.apply_b_dec_to_input else None,
            rescale_acts_by_decoder_norm=sae.cfg.rescale_acts_by_decoder_norm,
            dead_neuron_mask=dead_neuron_mask,
            k_aux=k_aux,
        )
        recons = sparse_decode(encoding.acts.indices, encoding.decoder_coefficients, sae.W_dec) + sae.b_dec
        sae_out = sae.reshape_fn_out(sae.run_time_activation_norm_fn_out(sae.hook_sae_recons(recons)), sae.d_head)
        feature_acts, hidden_pre = encoding.acts.to_sparse_coo(), encoding.hidden_pre.to_sparse_coo()

        mse_loss = sae.mse_loss_fn(sae_out, step_input.sae_in).sum(dim=-1).mean()
        aux_losses = self.calculate_aux_loss(
            step_input=SparseTrainStepInput(**vars(step_input), encoding=encoding),
            feature_acts=feature_acts,
            hidden_pre=hidden_pre,
            sae_out=sae_out,
        )
        return TrainStepOutput(
            sae_in=step_input.sae_in,
            sae_out=sae_out,
            feature_acts=feature_acts,
            hidden_pre=hidden_pre,
            loss=sum(aux_losses.values(), mse_loss),
            losses={"mse_loss": mse_loss, **aux_losses},
        )

    def aux_selection(self, step_input: TrainStepInput) -> tuple[torch.Tensor | None, int]:
        """The dead-latent mask and k_aux (:func:`~wsae_lens.architectures.sparse.auxk.auxk_size`) for this
        step's AuxK selection; (None, 0) when no latent is dead."""
        sae: Any = self
        dead_neuron_mask = step_input.dead_neuron_mask
        if dead_neuron_mask is None or (num_dead := int(dead_neuron_mask.sum())) == 0:
            return None, 0
        if sae.cfg.normalize_activations in ("constant_norm_rescale", "layer_norm"):
            raise ValueError(
                "TopK auxiliary loss does not support activation normalization "
                f"(normalize_activations={sae.cfg.normalize_activations!r}); use 'none' or "
                "'expected_average_only_in'."
            )
        return dead_neuron_mask, auxk_size(num_dead, step_input.sae_in.shape[-1])

    def calculate_aux_loss(
        self, step_input: TrainStepInput, feature_acts: torch.Tensor, hidden_pre: torch.Tensor, sae_out: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The losses added to the MSE, on both paths: SAELens's TopK AuxK loss unless overridden.

        The one hook for extra losses. SAELens's dense step and the sparse step both call it and add up
        what it returns, so a subclass that overrides it (calling ``super()`` to keep AuxK) trains alike on
        either path. On the sparse path ``feature_acts`` and ``hidden_pre`` are [N, d_sae] COO tensors
        holding each row's top-k latents, with the gradients of SAELens's dense ones (an L1 penalty can be
        ``feature_acts.abs().sum()``), and ``step_input`` is a :class:`SparseTrainStepInput`, whose
        encoding gives AuxK (:func:`~wsae_lens.architectures.sparse.auxk.auxk_loss`) its selection.
        """
        if not isinstance(step_input, SparseTrainStepInput):
            return super().calculate_aux_loss(  # type: ignore[misc]
                step_input=step_input, feature_acts=feature_acts, hidden_pre=hidden_pre, sae_out=sae_out
            )
        sae: Any = self
        encoding = step_input.encoding
        if encoding.aux_indices is None:
            return {"auxiliary_reconstruction_loss": sae_out.new_tensor(0.0)}
        aux_recons = sparse_decode(encoding.aux_indices, encoding.aux_coefficients, sae.W_dec)
        aux_recons = sae.reshape_fn_out(aux_recons, sae.d_head)
        residual = (step_input.sae_in - sae_out).detach()
        loss = auxk_loss(aux_recons, residual, encoding.aux_indices.shape[1], sae.cfg.aux_loss_coefficient)
        return {"auxiliary_reconstruction_loss": loss}
