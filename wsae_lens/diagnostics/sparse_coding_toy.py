"""The sparse-coding toy of the bias-adaptation paper (arXiv 2506.14002): X = H V.

V ∈ R^{n×d}: n unit-norm Gaussian feature directions (SAELens's :class:`FeatureDictionary`, not
orthogonalised); H ≥ 0 with exactly s non-zeros per row at uniformly random positions. The *imbalanced*
toy mixes sparsities: half of every batch has s = 3, half s = 20 (n = 128, d = 42 in the paper).

Choices (the paper's are not reachable offline): non-zero magnitudes are U[0, 1]; X is multiplied by
one global constant so that E‖x‖ = 1 (bias adaptation's bias range [−1, 0] assumes unit-scale inputs),
estimated once from 8,192 samples of the toy's own seed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from sae_lens.config import LoggingConfig, SAETrainerConfig
from sae_lens.saes.sae import TrainingSAE, TrainingSAEConfig
from sae_lens.synthetic import FeatureDictionary
from sae_lens.training.sae_trainer import SAETrainer

from wsae_lens.diagnostics.ground_truth import recovery_rate


def sparse_codes(
    n_samples: int, n_features: int, sparsities: Sequence[int], generator: torch.Generator
) -> torch.Tensor:
    """H ∈ R^{n_samples×n_features}, non-negative; the rows split evenly (in shuffled order) among the
    ``sparsities``, a row with sparsity s having s non-zeros U[0, 1] at uniformly random positions."""
    if any(s < 1 or s > n_features for s in sparsities):
        raise ValueError(f"every sparsity must lie in [1, n_features={n_features}], got {list(sparsities)}.")
    row_sparsity = torch.tensor(sparsities)[torch.arange(n_samples) % len(sparsities)]
    row_sparsity = row_sparsity[torch.randperm(n_samples, generator=generator)]
    # the positions of the s largest of n_features uniform draws are a uniform random s-subset
    positions = torch.rand(n_samples, n_features, generator=generator).topk(max(sparsities), dim=1).indices
    keep = torch.arange(max(sparsities)).unsqueeze(0) < row_sparsity.unsqueeze(1)
    support = torch.zeros(n_samples, n_features, dtype=torch.bool).scatter_(1, positions, keep)
    return torch.rand(n_samples, n_features, generator=generator) * support


class SparseCodingToy:
    """X = H V with unit-norm Gaussian V (rows = true features), scaled to E‖x‖ = 1."""

    def __init__(
        self, n_features: int = 128, d: int = 42, sparsities: Sequence[int] = (3, 20), seed: int = 0
    ) -> None:
        self.n_features, self.d, self.sparsities, self.seed = n_features, d, tuple(sparsities), seed
        self.dictionary = FeatureDictionary(n_features, d, initializer=None, seed=seed)
        self.dictionary.requires_grad_(False)
        probe = self.dictionary(sparse_codes(8192, n_features, self.sparsities, self._generator(-1)))
        self.input_scale = 1.0 / probe.norm(dim=1).mean().item()

    @property
    def true_directions(self) -> torch.Tensor:
        """V: [n_features, d], unit-norm rows."""
        return self.dictionary.feature_vectors.detach()

    def _generator(self, offset: int) -> torch.Generator:
        return torch.Generator().manual_seed(1_000_003 * self.seed + offset)

    def sample(self, n_samples: int, generator: torch.Generator) -> torch.Tensor:
        """n_samples inputs x = (h V) · input_scale."""
        h = sparse_codes(n_samples, self.n_features, self.sparsities, generator)
        with torch.no_grad():
            return self.dictionary(h) * self.input_scale

    def batches(self, batch_size: int, data_seed: int = 0) -> Iterator[torch.Tensor]:
        """An endless, reproducible stream of fresh batches (a SAELens ``DataProvider``)."""
        generator = self._generator(data_seed)
        while True:
            yield self.sample(batch_size, generator)


def train_on_toy(
    sae: TrainingSAE[Any],
    toy: SparseCodingToy,
    n_steps: int,
    batch_size: int = 1024,
    lr: float = 3e-4,
    data_seed: int = 0,
    lr_decay_steps: int = 0,
) -> TrainingSAE[Any]:
    """Train ``sae`` with SAELens's own :class:`SAETrainer` (Adam, grad clip 1) on the toy: constant lr,
    then SAELens's linear decay to 0 over the last ``lr_decay_steps`` steps."""
    trainer_cfg = SAETrainerConfig(
        total_training_samples=n_steps * batch_size,
        train_batch_size_samples=batch_size,
        lr=lr,
        lr_end=lr,
        lr_decay_steps=lr_decay_steps,
        logger=LoggingConfig(log_to_wandb=False),
    )
    return SAETrainer(trainer_cfg, sae, toy.batches(batch_size, data_seed)).fit()


def toy_recovery(sae: TrainingSAE[Any], toy: SparseCodingToy, taus: Sequence[float] = (0.8, 0.9)) -> dict[float, float]:
    """FRR(τ) of the SAE's decoder rows against the toy's true features, per τ."""
    return {tau: recovery_rate(sae.W_dec.detach(), toy.true_directions, tau) for tau in taus}


def make_toy_sae(cfg: TrainingSAEConfig, seed: int) -> TrainingSAE[Any]:
    """Build the training SAE for ``cfg`` (any registered architecture) with weights drawn from ``seed``."""
    from sae_lens.registry import get_sae_training_class

    torch.manual_seed(seed)
    return get_sae_training_class(cfg.architecture())[0](cfg)
