"""The main job (``wsae-lens demo``): SAEs compared on the embedded SmolLM2-135M, written up as a report.

:func:`run_demo` runs :func:`wsae_lens.pipeline.comparison.run_comparison` and writes the report
(:mod:`wsae_lens.pipeline.report`) into ``output_dir``: ``results.json``, ``report.md``,
``comparison.png`` and ``saes/<arm>/`` (loadable with ``SAE.load_from_disk`` after ``import wsae_lens``).

The default budget (163,840 cached tokens at layer 15, 8 epochs, 8× expansion, k = 32, two arms) is sized
to finish in under 10 minutes on a quiet 2-core CPU; ``scale`` multiplies the cached tokens and held-out rows.
"""

from __future__ import annotations

from dataclasses import replace

from wsae_lens.pipeline.comparison import ComparisonConfig, ComparisonResult, run_comparison
from wsae_lens.pipeline.report import write_report


def scaled_config(cfg: ComparisonConfig, scale: float) -> ComparisonConfig:
    """``cfg`` with the cached tokens and held-out rows multiplied by ``scale``."""
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}.")
    return replace(cfg, training_tokens=int(cfg.training_tokens * scale),
                   held_out_rows=max(cfg.eval_rows, int(round(cfg.held_out_rows * scale))))


def run_demo(cfg: ComparisonConfig | None = None, scale: float = 1.0) -> ComparisonResult:
    """Run the comparison (default: the embedded model, mid layer, topk vs weighted_topk) and write the report."""
    cfg = scaled_config(cfg or ComparisonConfig(), scale)
    result = run_comparison(cfg)
    write_report(result)
    return result
