"""Identifiability diagnostics (arXiv 2506.15963): ground-truth metrics, the WSAE toy model, theory checks,
``IdentifiabilityReport`` and the SAE-vs-WSAE toy benchmark.

* :mod:`~wsae_lens.diagnostics.ground_truth` — FRR/recovery rate, MMCS, MCC, L_GT, monosemanticity metrics.
* :mod:`~wsae_lens.diagnostics.toy_model` — x ~ sparse non-negative, x_p = W_p x; W_p geometries.
* :mod:`~wsae_lens.diagnostics.theory` — Theorem 1/4/5 numerical checks and the counterexamples.
* :mod:`~wsae_lens.diagnostics.identifiability` — :class:`IdentifiabilityReport` for any SAELens SAE.
* :mod:`~wsae_lens.diagnostics.toy_benchmark` — the S sweep behind ``wsae-lens toy-benchmark``.
* :mod:`~wsae_lens.diagnostics.heterogeneous_toy` — a toy the unweighted SAE recovers (16 monosemantic +
  32 superposed dimensions), where uniform, variance, inverse-variance and oracle Γ are compared.
* :mod:`~wsae_lens.diagnostics.afa` — approximate feature activation (arXiv 2503.24277) for any SAE:
  f̃, ε_LBO, NMSE, the ZF plot.
"""

from wsae_lens.diagnostics.afa import AFASummary, AFATokenMetrics, afa_diagnostics, afa_token_metrics, zf_plot
from wsae_lens.diagnostics.ground_truth import (
    RECOVERY_TAUS,
    GroundTruthMetrics,
    average_activated_features,
    dead_latents,
    evaluate_ground_truth,
    ground_truth_loss,
    match_latents_to_features,
    mcc,
    mmcs,
    per_latent_activation_variance,
    reconstruction_error,
    recovery_rate,
)
from wsae_lens.diagnostics.heterogeneous_toy import (
    GammaRow,
    HeterogeneousToyConfig,
    HeterogeneousToyResult,
    run_heterogeneous_toy,
)
from wsae_lens.diagnostics.identifiability import IdentifiabilityReport, decoder_interference, identifiability_report
from wsae_lens.diagnostics.theory import (
    feature_shrinking_example,
    loss_gap_check,
    no_sparse_activation_counterexample,
    theorem1_check,
    too_few_latents_bound,
)
from wsae_lens.diagnostics.toy_benchmark import ToyBenchmarkConfig, ToyBenchmarkResult, run_toy_benchmark
from wsae_lens.diagnostics.toy_model import (
    ToyModel,
    digon_wp,
    heterogeneous_wp,
    polygon_wp,
    polysemanticity,
    random_wp,
)

__all__ = [
    "AFASummary",
    "AFATokenMetrics",
    "afa_diagnostics",
    "afa_token_metrics",
    "zf_plot",
    "RECOVERY_TAUS",
    "GammaRow",
    "GroundTruthMetrics",
    "HeterogeneousToyConfig",
    "HeterogeneousToyResult",
    "IdentifiabilityReport",
    "ToyBenchmarkConfig",
    "ToyBenchmarkResult",
    "ToyModel",
    "average_activated_features",
    "dead_latents",
    "decoder_interference",
    "digon_wp",
    "evaluate_ground_truth",
    "feature_shrinking_example",
    "ground_truth_loss",
    "heterogeneous_wp",
    "identifiability_report",
    "loss_gap_check",
    "match_latents_to_features",
    "mcc",
    "mmcs",
    "no_sparse_activation_counterexample",
    "per_latent_activation_variance",
    "polygon_wp",
    "polysemanticity",
    "random_wp",
    "reconstruction_error",
    "recovery_rate",
    "run_heterogeneous_toy",
    "run_toy_benchmark",
    "theorem1_check",
    "too_few_latents_bound",
]
