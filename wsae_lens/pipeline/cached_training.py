"""Training from activations held in memory: epochs over one cache through SAELens's ``SAETrainer``.

The forward pass of the language model is the expensive part on a CPU (sae-practice.md), so the demo and
the sweep read the cache once (through the token filter, :func:`wsae_lens.activations.iter_activation_batches`)
and train for several epochs over it. SAELens's trainer takes any iterator of batches as its data provider;
:class:`EpochBatches` gives every kept token exactly once per epoch, in a new order every epoch. Before
the first step the normalisation factor is computed on all the data (SAELens's formula, √d_in / E‖x‖) and
``b_dec`` starts at the data mean (:func:`wsae_lens.training.init_b_dec`). At the end of every epoch a
callback may record a training curve.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from sae_lens.training.sae_trainer import SAETrainer

from wsae_lens.training import init_b_dec, norm_scaling_factor


class EpochBatches(Iterator[torch.Tensor]):
    """Mini-batches of ``activations`` [tokens, d_in]: each epoch a fresh permutation (seeded), cut into
    ``batch_size`` rows; the epoch's last batch holds the remainder, so every token is read once per epoch.

    ``on_epoch_end(epoch)`` is called when epoch ``epoch`` (1-based) has been fully handed out.
    """

    def __init__(self, activations: torch.Tensor, batch_size: int, seed: int = 0,
                 on_epoch_end: Callable[[int], None] | None = None) -> None:
        if activations.ndim != 2 or activations.shape[0] == 0:
            raise ValueError(f"activations must be a non-empty [tokens, d_in] tensor, got shape {tuple(activations.shape)}.")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}.")
        self.activations = activations
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.on_epoch_end = on_epoch_end
        self.epoch = 0
        self._order = torch.empty(0, dtype=torch.long)
        self._position = 0

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(self.activations.shape[0] / self.batch_size)

    def __next__(self) -> torch.Tensor:
        if self._position >= self._order.numel():
            if self.epoch > 0 and self.on_epoch_end is not None:
                self.on_epoch_end(self.epoch)
            self._order = torch.randperm(self.activations.shape[0], generator=self.generator)
            self._position = 0
            self.epoch += 1
        rows = self._order[self._position : self._position + self.batch_size]
        self._position += rows.numel()
        return self.activations[rows]


@dataclass
class TrainingCurve:
    """Per-epoch points: tokens trained, explained variance on held-out kept tokens, dead fraction over the
    epoch; and the explained variance of the SAE before its first step."""

    initial_explained_variance: float | None = None
    tokens: list[int] = field(default_factory=list)
    explained_variance: list[float] = field(default_factory=list)
    dead_fraction: list[float] = field(default_factory=list)


@torch.no_grad()
def explained_variance(sae: Any, activations: torch.Tensor, batch_size: int = 8192) -> float:
    """1 − Σ_t ‖x_t − x̂_t‖² / Σ_t ‖x_t − x̄‖² over ``activations`` (x̂ = decode(encode(x)))."""
    residual = total = 0.0
    mean = activations.double().mean(0)
    for start in range(0, activations.shape[0], batch_size):
        x = activations[start : start + batch_size]
        x_hat = sae.decode(sae.encode(x))
        residual += float((x - x_hat).double().pow(2).sum())
        total += float((x.double() - mean).pow(2).sum())
    return 1.0 - residual / total


def train_on_activations(
    sae: Any,
    runner_cfg: Any,
    activations: torch.Tensor,
    *,
    epochs: int,
    seed: int = 0,
    held_out: torch.Tensor | None = None,
) -> tuple[Any, TrainingCurve]:
    """Train ``sae`` (a fresh SAELens/wsae_lens training SAE) for ``epochs`` over ``activations`` with
    SAELens's ``SAETrainer`` configured by ``runner_cfg`` (lr, warm-up, batch size, dead_feature_window).

    Returns the trained SAE (normalisation folded in, as SAELens's runner leaves it) and the per-epoch
    curve: explained variance on ``held_out`` (if given) and the share of latents that did not fire
    during the epoch.
    """
    if epochs <= 0:
        raise ValueError(f"epochs must be positive, got {epochs}.")
    n_tokens = activations.shape[0]
    trainer_cfg = runner_cfg.to_sae_trainer_config()
    trainer_cfg.total_training_samples = epochs * n_tokens
    curve = TrainingCurve()
    normalise = sae.cfg.normalize_activations == "expected_average_only_in"
    scaling = norm_scaling_factor(activations) if normalise else 1.0
    init_b_dec(sae, activations, scaling)
    batches = EpochBatches(activations, trainer_cfg.train_batch_size_samples, seed=seed)
    trainer = SAETrainer(cfg=trainer_cfg, sae=sae, data_provider=batches)
    if normalise:
        trainer.activation_scaler.scaling_factor = scaling

    def record(epoch: int, input_scale: float = scaling) -> None:
        curve.tokens.append(epoch * n_tokens)
        steps_in_epoch = batches.batches_per_epoch
        curve.dead_fraction.append(float((trainer.n_forward_passes_since_fired >= steps_in_epoch).float().mean()))
        if held_out is not None:
            curve.explained_variance.append(explained_variance(sae, held_out * input_scale))
            sae.train()

    batches.on_epoch_end = record
    if held_out is not None:
        curve.initial_explained_variance = explained_variance(sae, held_out * scaling)
    sae = trainer.fit()
    record(epochs, input_scale=1.0)  # fit() has folded the normalisation into the weights
    return sae, curve
