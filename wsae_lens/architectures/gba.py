"""``gba``: Group Bias Adaptation SAE (arXiv 2506.14002).

Model (the paper's, with unit-norm directions w_m and a learned output scale a_m):

    h_m(x) = w_mᵀ (x − b_pre),    y_m = h_m + b_m,
    f(x)   = Σ_m a_m w'_m · h_m · 1[y_m > 0] + b_pre

i.e. a JumpReLU with threshold θ_m = −b_m on the bias-free pre-activation h_m. The loss is the plain
reconstruction error (SAELens's summed MSE, ½ dropped); there is **no sparsity penalty**: sparsity comes
from the biases b_m alone, which get no gradient and are adapted toward per-group target firing
frequencies instead.

Choices (the paper leaves them open; all are config fields):

* ``tied_weights`` (default True, the paper's formula): the decoder direction w'_m is the encoder direction
  w_m (one parameter, ``W_dec``). With ``tied_weights=False`` a separate ``W_enc`` is trained.
* Directions are kept at unit norm: at the start of every ``training_forward_pass`` the encoder columns and
  decoder rows are projected onto the unit sphere (on ``.data``, as SAELens's JumpReLU projects its
  threshold), so the bias range has a fixed meaning relative to the input norm. The magnitude of a
  latent's contribution is the learned ``output_scale`` a_m (initialised to ``decoder_init_norm``,
  SAELens's heuristic decoder norm, 0.1); the pre-bias b_pre is SAELens's learned ``b_dec``.
* Bias range: b_m ∈ [``bias_min``, 0]. The paper's range [−1, 0] assumes unit-scale inputs (mean norm 1).
  ``bias_min=None`` resolves to −1 with ``normalize_activations="none"`` (then feed unit-mean-norm inputs)
  and to −√d_in with any SAELens normalisation (which scales inputs to mean norm √d_in), i.e. the same
  range relative to the input scale.

Bias adaptation (every ``update_interval`` = T training steps, from running per-neuron statistics of the
steps since the last update: the number of tokens with y_m > 0 and the maximum y_m, never all the
pre-activations): p_m = firing fraction, r_m = max y_m, r̄_k = mean of the positive r_m of group k. For a
neuron m of group k with target p_k:

    if p_m > p_k:   b_m ← max(b_m − γ₋ r_m, bias_min)
    elif p_m < ε:   b_m ← min(b_m + γ₊ r̄_k, 0)

(choose) when no neuron of group k has a positive r_m, r̄_k falls back to the mean positive r_m of all
neurons, and to 0 (no move) when there is none. Groups are contiguous equal blocks of neurons (neuron m
is in group ⌊m K / M⌋), with targets geometrically spaced from ``freq_high`` down to ``freq_low``.
Single-group bias adaptation (BA, the provable variant) is ``n_groups=1`` with target ``freq_high``.
Statistics accumulate only in ``training_forward_pass`` while the module is in training mode.

Data-parallel training sets ``global_batch`` (a :class:`~wsae_lens.distributed.DataParallel`): each step's
firing counts, token count and peaks are then summed / maximised over the ranks before they are added,
so every rank adapts its biases from the global batch, as one process would.

Bias and adaptation state are persistent buffers (saved with SAELens checkpoints, ignored by Adam), so a
resumed run continues bit-for-bit as an uninterrupted one. The inference form saved by
``save_inference_model`` is exactly a JumpReLU SAE (θ = −b, b_enc = 0, decoder rows a_m w'_m).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
from sae_lens.saes.jumprelu_sae import JumpReLUSAE, JumpReLUSAEConfig
from sae_lens.saes.sae import TrainCoefficientConfig, TrainingSAE, TrainingSAEConfig, TrainStepInput, TrainStepOutput
from torch import nn
from typing_extensions import override

# buffers holding adaptation state; the integer ones are cast back after SAELens's loader made them floats
_FLOAT32_STATE = ("bias", "peak_preact", "group_target_freq", "last_window_freq")
_INT64_STATE = ("fire_count", "group_index", "tokens_since_update", "steps_since_update")
ADAPTATION_STATE = _FLOAT32_STATE + _INT64_STATE


def group_target_frequencies(n_groups: int, freq_high: float, freq_low: float) -> torch.Tensor:
    """Targets p_1 … p_K, geometrically spaced from ``freq_high`` (group 0) down to ``freq_low``."""
    if n_groups == 1:
        return torch.tensor([freq_high], dtype=torch.float32)
    exponents = torch.linspace(0.0, 1.0, n_groups, dtype=torch.float64)
    return (freq_high * (freq_low / freq_high) ** exponents).to(torch.float32)


def contiguous_group_index(d_sae: int, n_groups: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Group of each neuron: ⌊m K / M⌋ (contiguous blocks whose sizes differ by at most one)."""
    return torch.arange(d_sae, device=device, dtype=torch.int64) * n_groups // d_sae


@torch.no_grad()
def adapt_biases(
    bias: torch.Tensor,
    firing_rate: torch.Tensor,
    peak_preact: torch.Tensor,
    group_index: torch.Tensor,
    group_target_freq: torch.Tensor,
    step_down: float,
    step_up: float,
    dead_freq_eps: float,
    bias_min: float,
) -> torch.Tensor:
    """One (group) bias-adaptation update; returns the new biases (arXiv 2506.14002).

    With p_m = ``firing_rate``, r_m = ``peak_preact`` and r̄_k the mean positive r_m of group k:
    ``p_m > p_k`` → b_m − γ₋ r_m (floored at ``bias_min``); else ``p_m < ε`` → b_m + γ₊ r̄_k (capped at 0);
    otherwise unchanged; the result is clamped to [``bias_min``, 0] (a firing neuron has r_m > 0, so the two
    bounds are exactly the rule's max/min). See the module docstring for the r̄_k fallback.
    """
    n_groups = group_target_freq.shape[0]
    positive = peak_preact > 0
    positive_peak = torch.where(positive, peak_preact, torch.zeros_like(peak_preact))
    group_sum = torch.zeros(n_groups, dtype=peak_preact.dtype, device=peak_preact.device)
    group_sum.index_add_(0, group_index, positive_peak)
    group_count = torch.zeros(n_groups, dtype=peak_preact.dtype, device=peak_preact.device)
    group_count.index_add_(0, group_index, positive.to(peak_preact.dtype))
    overall_mean = positive_peak.sum() / positive.sum().clamp(min=1)
    group_mean_peak = torch.where(group_count > 0, group_sum / group_count.clamp(min=1), overall_mean)

    target = group_target_freq[group_index]
    too_frequent = firing_rate > target
    too_rare = ~too_frequent & (firing_rate < dead_freq_eps)
    lowered = bias - step_down * peak_preact
    raised = bias + step_up * group_mean_peak[group_index]
    return torch.where(too_frequent, lowered, torch.where(too_rare, raised, bias)).clamp(bias_min, 0.0)


def resolve_bias_min(bias_min: float | None, normalize_activations: str, d_in: int) -> float:
    """The lower bias bound: ``bias_min`` if given, else −1 (raw unit-scale inputs) or −√d_in (normalised)."""
    if bias_min is not None:
        return bias_min
    return -1.0 if normalize_activations == "none" else -math.sqrt(d_in)


def training_state_to_inference(state_dict: dict[str, Any]) -> None:
    """Turn a GBA training state dict into the JumpReLU inference form, in place (same function).

    W_enc = W_enc (W_decᵀ when tied), W_dec = a_m · W_dec rows, threshold = −b, b_enc = 0; the adaptation
    state is dropped. A state dict without ``bias`` (already in inference form) is left as it is.
    """
    if "bias" not in state_dict:
        return
    w_dec = state_dict.pop("W_dec")
    w_enc = state_dict.pop("W_enc", None)
    scale = state_dict.pop("output_scale")
    bias = state_dict["bias"]
    state_dict["W_enc"] = (w_dec.T if w_enc is None else w_enc).contiguous()
    state_dict["W_dec"] = (scale.unsqueeze(1) * w_dec).to(w_dec.dtype).contiguous()
    state_dict["threshold"] = (-bias).to(w_dec.dtype).contiguous()
    state_dict["b_enc"] = torch.zeros_like(state_dict["threshold"])
    for name in ADAPTATION_STATE:
        state_dict.pop(name, None)


@dataclass
class GBASAEConfig(JumpReLUSAEConfig):
    """Inference config of a GBA SAE: a :class:`JumpReLUSAEConfig` (the inference form is a JumpReLU SAE)."""

    @override
    @classmethod
    def architecture(cls) -> str:
        return "gba"


class GBASAE(JumpReLUSAE):
    """Inference GBA SAE: SAELens's JumpReLU SAE with θ = −b, b_enc = 0 and decoder rows a_m w'_m.

    Loads both inference saves and GBA training checkpoints (converted by
    :func:`training_state_to_inference`).
    """

    @override
    def process_state_dict_for_loading(self, state_dict: dict[str, Any]) -> None:
        training_state_to_inference(state_dict)
        super().process_state_dict_for_loading(state_dict)


@dataclass
class GBATrainingSAEConfig(TrainingSAEConfig):
    """Training config of a GBA SAE (``architecture="gba"``); defaults are the paper's.

    Args:
        n_groups: number of groups K (1 = single-group bias adaptation).
        freq_high: target firing frequency of group 0 (and the single target when ``n_groups=1``); set it at
            about the firing rate of the features you want (docs/gba.md, "Choosing the range").
        freq_low: target firing frequency of the last group.
        update_interval: T, training steps between bias updates.
        bias_step_down: γ₋, bias decrease per update in units of the neuron's peak pre-activation.
        bias_step_up: γ₊, bias increase per update in units of the group's mean positive peak.
        dead_freq_eps: ε, a neuron firing on a smaller fraction of tokens is raised (and counted dead).
        bias_min: lower bias bound; None = −1 for raw unit-scale inputs, −√d_in with a normalisation.
        tied_weights: share encoder and decoder directions (the paper's formula).
    """

    n_groups: int = 10
    freq_high: float = 0.1
    freq_low: float = 1e-3
    update_interval: int = 50
    bias_step_down: float = 0.01
    bias_step_up: float = 0.01
    dead_freq_eps: float = 1e-6
    bias_min: float | None = None
    tied_weights: bool = True

    @override
    @classmethod
    def architecture(cls) -> str:
        return "gba"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_groups < 1 or self.n_groups > self.d_sae:
            raise ValueError(f"n_groups must be in [1, d_sae={self.d_sae}], got {self.n_groups}.")
        if not 0 < self.freq_low <= self.freq_high <= 1:
            raise ValueError(
                f"need 0 < freq_low <= freq_high <= 1, got freq_high={self.freq_high}, freq_low={self.freq_low}."
            )
        if self.update_interval < 1:
            raise ValueError(f"update_interval must be >= 1 (training steps), got {self.update_interval}.")
        if self.bias_step_down < 0 or self.bias_step_up < 0:
            raise ValueError(
                f"bias_step_down and bias_step_up must be >= 0, got {self.bias_step_down}, {self.bias_step_up}."
            )
        if self.dead_freq_eps < 0:
            raise ValueError(f"dead_freq_eps must be >= 0, got {self.dead_freq_eps}.")
        if self.bias_min is not None and self.bias_min >= 0:
            raise ValueError(f"bias_min must be negative (or None for the default), got {self.bias_min}.")


class GBATrainingSAE(TrainingSAE[GBATrainingSAEConfig]):
    """Training GBA SAE: unit-norm JumpReLU SAE whose biases are set by group bias adaptation.

    Parameters (optimised): ``W_dec`` (and ``W_enc`` when untied), ``b_dec`` (b_pre), ``output_scale`` (a).
    Buffers (not optimised, saved): ``bias`` and the adaptation state in :data:`ADAPTATION_STATE`.
    """

    output_scale: nn.Parameter
    bias: torch.Tensor
    fire_count: torch.Tensor
    peak_preact: torch.Tensor
    tokens_since_update: torch.Tensor
    steps_since_update: torch.Tensor
    group_index: torch.Tensor
    group_target_freq: torch.Tensor
    last_window_freq: torch.Tensor

    def __init__(self, cfg: GBATrainingSAEConfig, use_error_term: bool = False):
        super().__init__(cfg, use_error_term)
        self._fired: torch.Tensor | None = None
        self.global_batch: Any = None  # set by data-parallel training: reduces batch statistics over ranks
        self.bias_min = resolve_bias_min(cfg.bias_min, cfg.normalize_activations, cfg.d_in)
        d_sae, device = cfg.d_sae, self.device
        self.register_buffer("bias", torch.zeros(d_sae, dtype=torch.float32, device=device))
        self.register_buffer("fire_count", torch.zeros(d_sae, dtype=torch.int64, device=device))
        self.register_buffer("peak_preact", torch.full((d_sae,), -math.inf, dtype=torch.float32, device=device))
        self.register_buffer("tokens_since_update", torch.zeros(1, dtype=torch.int64, device=device))
        self.register_buffer("steps_since_update", torch.zeros(1, dtype=torch.int64, device=device))
        self.register_buffer("group_index", contiguous_group_index(d_sae, cfg.n_groups, device))
        self.register_buffer(
            "group_target_freq",
            group_target_frequencies(cfg.n_groups, cfg.freq_high, cfg.freq_low).to(device),
        )
        # firing fraction of each neuron in the last completed window (1 before the first: nobody dead yet)
        self.register_buffer("last_window_freq", torch.ones(d_sae, dtype=torch.float32, device=device))

    @override
    def initialize_weights(self) -> None:
        super().initialize_weights()
        with torch.no_grad():
            self.W_dec.data /= self.W_dec.data.norm(dim=1, keepdim=True).clamp(min=1e-8)
        if self.cfg.tied_weights:
            del self.W_enc
        else:
            self.W_enc.data = self.W_dec.data.T.clone().contiguous()
        # a starts at SAELens's heuristic decoder norm (decoder_init_norm, 0.1 by default; 1 if None)
        init_scale = 1.0 if self.cfg.decoder_init_norm is None else self.cfg.decoder_init_norm
        self.output_scale = nn.Parameter(
            torch.full((self.cfg.d_sae,), init_scale, dtype=self.dtype, device=self.device)
        )

    def encoder_weight(self) -> torch.Tensor:
        """Encoder matrix [d_in, d_sae]: ``W_dec.T`` when tied, else ``W_enc``."""
        return self.W_dec.T if self.cfg.tied_weights else self.W_enc

    @property
    def threshold(self) -> torch.Tensor:
        """JumpReLU threshold θ = −b on the bias-free pre-activation."""
        return -self.bias

    @override
    def _apply(self, *args: Any, **kwargs: Any) -> GBATrainingSAE:
        out = super()._apply(*args, **kwargs)
        # like SAELens's JumpReLU threshold: keep the adapted state in float32 whatever the SAE dtype
        for name in _FLOAT32_STATE:
            buffer = self._buffers.get(name)
            if buffer is not None and buffer.dtype != torch.float32:
                self._buffers[name] = buffer.float()
        return out

    @torch.no_grad()
    def project_to_unit_norm(self) -> None:
        """Project decoder rows (and untied encoder columns) onto the unit sphere."""
        self.W_dec.data /= self.W_dec.data.norm(dim=1, keepdim=True).clamp(min=1e-8)
        if not self.cfg.tied_weights:
            self.W_enc.data /= self.W_enc.data.norm(dim=0, keepdim=True).clamp(min=1e-8)

    @override
    def encode_with_hidden_pre(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (h · 1[h + b > 0], h) with h = w_mᵀ (x − b_pre), the bias-free pre-activation."""
        sae_in = self.process_sae_in(x)
        hidden_pre = self.hook_sae_acts_pre(sae_in @ self.encoder_weight())
        fired = (hidden_pre > self.threshold.to(hidden_pre.dtype)).to(hidden_pre.dtype)
        self._fired = fired  # read (and released) by training_forward_pass for the firing counts
        feature_acts = self.hook_sae_acts_post(hidden_pre * fired)
        return feature_acts, hidden_pre

    @override
    def decode(self, feature_acts: torch.Tensor) -> torch.Tensor:
        """x̂ = Σ_m a_m w'_m z_m + b_pre."""
        sae_out_pre = feature_acts @ (self.output_scale.unsqueeze(1) * self.W_dec) + self.b_dec
        sae_out_pre = self.hook_sae_recons(sae_out_pre)
        sae_out_pre = self.run_time_activation_norm_fn_out(sae_out_pre)
        return self.reshape_fn_out(sae_out_pre, self.d_head)

    @override
    def get_coefficients(self) -> dict[str, float | TrainCoefficientConfig]:
        return {}

    @override
    def calculate_aux_loss(
        self,
        step_input: TrainStepInput,
        feature_acts: torch.Tensor,
        hidden_pre: torch.Tensor,
        sae_out: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        return {}  # no sparsity penalty: the biases alone set the sparsity

    @override
    def training_forward_pass(self, step_input: TrainStepInput) -> TrainStepOutput:
        self.project_to_unit_norm()
        output = super().training_forward_pass(step_input)
        fired, self._fired = self._fired, None
        if self.training and fired is not None:
            batch_fire_count, n_tokens = self._accumulate(output.hidden_pre, fired)
            output.metrics.update(self._metrics(batch_fire_count, n_tokens))
        return output

    @torch.no_grad()
    def _accumulate(self, hidden_pre: torch.Tensor, fired: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Add this batch (pre-activations h, 0/1 firing mask 1[h + b > 0]) to the running counts and
        maxima; adapt the biases every T steps. Returns the batch's firing count per neuron and its tokens
        (over every rank in data-parallel training)."""
        hidden_pre = hidden_pre.detach().reshape(-1, self.cfg.d_sae)
        # a float sum of the 0/1 mask is exact (counts ≤ batch size < 2^24) and much faster than a bool sum
        batch_fire_count = fired.detach().reshape(-1, self.cfg.d_sae).sum(0, dtype=torch.float32).to(torch.int64)
        peak = hidden_pre.amax(dim=0).float() + self.bias
        n_tokens = hidden_pre.shape[0]
        if self.global_batch is not None:  # the global batch's counts and peaks (max(a + b) = max(a) + b)
            counts = self.global_batch.sum_(torch.cat([batch_fire_count, batch_fire_count.new_tensor([n_tokens])]))
            batch_fire_count, n_tokens = counts[:-1], int(counts[-1])
            self.global_batch.max_(peak)
        self.fire_count += batch_fire_count
        torch.maximum(self.peak_preact, peak, out=self.peak_preact)
        self.tokens_since_update += n_tokens
        self.steps_since_update += 1
        if int(self.steps_since_update.item()) >= self.cfg.update_interval:
            self.update_biases()
        return batch_fire_count, n_tokens

    @torch.no_grad()
    def update_biases(self) -> None:
        """Apply :func:`adapt_biases` to the statistics gathered since the last update, then reset them."""
        firing_rate = self.fire_count.float() / self.tokens_since_update.clamp(min=1).float()
        self.bias.copy_(
            adapt_biases(
                self.bias,
                firing_rate,
                self.peak_preact,
                self.group_index,
                self.group_target_freq,
                self.cfg.bias_step_down,
                self.cfg.bias_step_up,
                self.cfg.dead_freq_eps,
                self.bias_min,
            )
        )
        self.last_window_freq.copy_(firing_rate)
        self.fire_count.zero_()
        self.peak_preact.fill_(-math.inf)
        self.tokens_since_update.zero_()
        self.steps_since_update.zero_()

    def _metrics(
        self, batch_fire_count: torch.Tensor, n_tokens: int
    ) -> dict[str, Callable[[], torch.Tensor | float | int]]:
        """Lazy metrics (SAELens evaluates them on logging steps only): per-group realised firing
        frequency of this batch vs target, bias statistics, dead neurons of the last window."""
        n_groups = self.cfg.n_groups

        cache: dict[str, torch.Tensor] = {}

        def group_freq() -> torch.Tensor:
            if "freq" in cache:
                return cache["freq"]
            per_group = torch.zeros(n_groups, dtype=torch.float32, device=batch_fire_count.device)
            per_group.index_add_(0, self.group_index, batch_fire_count.float())
            sizes = torch.bincount(self.group_index, minlength=n_groups).float()
            cache["freq"] = per_group / (sizes * n_tokens)
            return cache["freq"]

        bias = self.bias.detach().clone()
        metrics: dict[str, Callable[[], torch.Tensor | float | int]] = {}
        for k in range(n_groups):
            metrics[f"gba/group_{k}_freq"] = lambda k=k: group_freq()[k]
            metrics[f"gba/group_{k}_target"] = lambda k=k: self.group_target_freq[k]
        metrics["gba/bias_mean"] = lambda: bias.mean()
        metrics["gba/bias_min"] = lambda: bias.min()
        metrics["gba/bias_max"] = lambda: bias.max()
        metrics["gba/bias_at_floor_frac"] = lambda: (bias <= self.bias_min).float().mean()
        dead = (self.last_window_freq < self.cfg.dead_freq_eps).clone()
        metrics["gba/dead_neurons"] = lambda: dead.sum()
        return metrics

    @override
    def process_state_dict_for_loading(self, state_dict: dict[str, Any]) -> None:
        # SAELens's disk loader casts every tensor to cfg.dtype; restore the state's own dtypes
        for name in _INT64_STATE:
            if name in state_dict:
                state_dict[name] = state_dict[name].round().to(torch.int64)
        for name in _FLOAT32_STATE:
            if name in state_dict:
                state_dict[name] = state_dict[name].float()
        super().process_state_dict_for_loading(state_dict)

    @override
    def process_state_dict_for_saving_inference(self, state_dict: dict[str, Any]) -> None:
        training_state_to_inference(state_dict)
        super().process_state_dict_for_saving_inference(state_dict)

    @override
    @torch.no_grad()
    def fold_W_dec_norm(self) -> None:
        """Make decoder rows unit-norm without changing the function: W_dec /= n and a *= n (untied);
        tied, the encoder shrinks too, so also b /= n and a *= n²."""
        norms = self.W_dec.data.norm(dim=1).clamp(min=1e-8)
        self.W_dec.data /= norms.unsqueeze(1)
        if self.cfg.tied_weights:
            self.bias /= norms.float()
            self.output_scale.data *= norms**2
        else:
            self.output_scale.data *= norms

    @override
    @torch.no_grad()
    def fold_activation_norm_scaling_factor(self, scaling_factor: float) -> None:
        """Fold SAELens's input scale s into the model: pre-activations and outputs shrink by 1/s.

        Untied: W_enc·s as SAELens does (θ unchanged). Tied: the shared directions must stay put, so
        b and b_pre are divided by s instead (a is unchanged).
        """
        if self.cfg.tied_weights:
            self.bias /= scaling_factor
            self.b_dec.data /= scaling_factor
            self.cfg.normalize_activations = "none"
        else:
            super().fold_activation_norm_scaling_factor(scaling_factor)
