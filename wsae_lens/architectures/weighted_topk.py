"""``weighted_topk``: SAELens's TopK SAE trained with the Γ-weighted reconstruction loss.

The paper's language-model setting (Pythia-160M, k = 32, 32×; arXiv 2506.15963). Everything but the
loss (TopK selection, decoder-norm rescaling, AuxK dead-latent loss, folding) is SAELens's TopK.
"""

from __future__ import annotations

from dataclasses import dataclass

from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig, TopKTrainingSAE, TopKTrainingSAEConfig
from typing_extensions import override

from wsae_lens.architectures.sparse import SparseTopKTrainingMixin, SparseTrainingConfig
from wsae_lens.architectures.weighting import GammaMixin, WeightedTrainingMixin, WeightingConfig


@dataclass
class WeightedTopKSAEConfig(WeightingConfig, TopKSAEConfig):
    """Inference config of a weighted TopK SAE: :class:`TopKSAEConfig` plus the Γ provenance fields."""

    @override
    @classmethod
    def architecture(cls) -> str:
        return "weighted_topk"


class WeightedTopKSAE(GammaMixin, TopKSAE):
    """Inference weighted TopK SAE: encodes and decodes exactly as :class:`TopKSAE`; carries Γ."""


@dataclass
class WeightedTopKTrainingSAEConfig(SparseTrainingConfig, WeightingConfig, TopKTrainingSAEConfig):
    """Training config of a weighted TopK SAE (``architecture="weighted_topk"``).

    ``sparse_training`` (True / False / ``"auto"``, default ``"auto"``) picks the sparse training step of
    :mod:`wsae_lens.architectures.sparse` (same loss and gradients, several times faster at d_sae ≫ k).
    """

    @override
    @classmethod
    def architecture(cls) -> str:
        return "weighted_topk"


class WeightedTopKTrainingSAE(WeightedTrainingMixin, SparseTopKTrainingMixin, TopKTrainingSAE):
    """TopK training SAE whose reconstruction loss is mean_batch Σ_i γ_i² (x_i − x̂_i)².

    Trains sparsely (:class:`SparseTopKTrainingMixin`) where ``cfg.sparse_training`` says so.
    """
