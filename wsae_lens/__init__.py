"""wsae_lens: weighted SAEs, group bias adaptation and approximate feature activation for SAELens.

``import wsae_lens`` registers its architectures with SAELens, after which
``architecture="weighted_topk"`` (and the others) work in any SAELens config, runner and loader.
"""

from wsae_lens.architectures.sparse import (
    SparseTopKTrainingMixin,
    SparseTrainingConfig,
    selected_preactivations,
    sparse_decode,
    sparse_topk_encode,
)
from wsae_lens.architectures.afa_selection import fast_afa_selection, full_sort_afa_selection
from wsae_lens.architectures.topafa import (
    TopAFASAE,
    TopAFASAEConfig,
    TopAFATrainingSAE,
    TopAFATrainingSAEConfig,
)
from wsae_lens.architectures.gba import GBASAE, GBASAEConfig, GBATrainingSAE, GBATrainingSAEConfig
from wsae_lens.architectures.weighted_batchtopk import (
    WeightedBatchTopKSAE,
    WeightedBatchTopKSAEConfig,
    WeightedBatchTopKTrainingSAE,
    WeightedBatchTopKTrainingSAEConfig,
)
from wsae_lens.architectures.weighted_standard import (
    WeightedStandardSAE,
    WeightedStandardSAEConfig,
    WeightedStandardTrainingSAE,
    WeightedStandardTrainingSAEConfig,
)
from wsae_lens.architectures.weighted_topk import (
    WeightedTopKSAE,
    WeightedTopKSAEConfig,
    WeightedTopKTrainingSAE,
    WeightedTopKTrainingSAEConfig,
)
from wsae_lens.architectures.weighting import load_gamma, save_gamma, validate_gamma
from wsae_lens.diagnostics import (
    AFASummary,
    AFATokenMetrics,
    IdentifiabilityReport,
    ToyBenchmarkConfig,
    ToyModel,
    afa_diagnostics,
    afa_token_metrics,
    identifiability_report,
    mcc,
    mmcs,
    recovery_rate,
    run_toy_benchmark,
    zf_plot,
)
from wsae_lens.activations import FilteredActivationsStore, TokenFilter, iter_activation_batches
from wsae_lens.estimators import estimate_gamma, latent_semantic_consistency, scores_to_gamma
from wsae_lens.estimators.entry import estimate_gamma_from_activations
from wsae_lens.pipeline.comparison import Arm, ComparisonConfig, run_comparison
from wsae_lens.pipeline.sweep import SweepConfig, run_sweep
from wsae_lens.pipeline.embedded import load_embedded_hf_model, load_embedded_model
from wsae_lens.pipeline.finetune import finetune_sae, to_weighted_topk
from wsae_lens.pipeline.publish import publish_saes
from wsae_lens.autointerp import (
    AutoInterpConfig,
    OpenAICompatibleClient,
    TransformersChatClient,
    compare_saes,
    run_autointerp,
)
from wsae_lens.autointerp.training import AutoInterpTrainingRunner
from wsae_lens.registration import register_architectures
from wsae_lens.training import TrainingInterrupted, WeightedSAETrainingRunner, prepare_weighting
from wsae_lens.multi import WeightedMultiSAETrainingRunner, WeightedMultiSAETrainingRunnerConfig

__version__ = "0.1.0"

register_architectures()

__all__ = [
    "Arm",
    "ComparisonConfig",
    "run_comparison",
    "SweepConfig",
    "run_sweep",
    "TokenFilter",
    "FilteredActivationsStore",
    "iter_activation_batches",
    "estimate_gamma_from_activations",
    "load_embedded_hf_model",
    "load_embedded_model",
    "finetune_sae",
    "to_weighted_topk",
    "publish_saes",
    "WeightedTopKSAE",
    "WeightedTopKSAEConfig",
    "WeightedTopKTrainingSAE",
    "WeightedTopKTrainingSAEConfig",
    "WeightedStandardSAE",
    "WeightedStandardSAEConfig",
    "WeightedStandardTrainingSAE",
    "WeightedStandardTrainingSAEConfig",
    "WeightedBatchTopKSAE",
    "WeightedBatchTopKSAEConfig",
    "WeightedBatchTopKTrainingSAE",
    "WeightedBatchTopKTrainingSAEConfig",
    "SparseTopKTrainingMixin",
    "SparseTrainingConfig",
    "selected_preactivations",
    "sparse_decode",
    "sparse_topk_encode",
    "TopAFASAE",
    "TopAFASAEConfig",
    "TopAFATrainingSAE",
    "TopAFATrainingSAEConfig",
    "fast_afa_selection",
    "AFASummary",
    "AFATokenMetrics",
    "afa_diagnostics",
    "afa_token_metrics",
    "zf_plot",
    "full_sort_afa_selection",
    "GBASAE",
    "GBASAEConfig",
    "GBATrainingSAE",
    "GBATrainingSAEConfig",
    "load_gamma",
    "save_gamma",
    "validate_gamma",
    "register_architectures",
    "estimate_gamma",
    "scores_to_gamma",
    "latent_semantic_consistency",
    "TrainingInterrupted",
    "WeightedSAETrainingRunner",
    "WeightedMultiSAETrainingRunner",
    "WeightedMultiSAETrainingRunnerConfig",
    "prepare_weighting",
    "IdentifiabilityReport",
    "identifiability_report",
    "ToyModel",
    "ToyBenchmarkConfig",
    "run_toy_benchmark",
    "recovery_rate",
    "mmcs",
    "mcc",
    "AutoInterpConfig",
    "AutoInterpTrainingRunner",
    "OpenAICompatibleClient",
    "TransformersChatClient",
    "compare_saes",
    "run_autointerp",
]
