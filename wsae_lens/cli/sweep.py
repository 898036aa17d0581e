"""``wsae-lens sweep CONFIG.yaml``: a grid of weighted SAEs on one cache (a thin layer over :func:`run_sweep`)."""

from __future__ import annotations

from pathlib import Path

import typer

from wsae_lens.cli.app import app


@app.command()
def sweep(config: Path = typer.Argument(..., help="YAML: weightings, alphas, seeds, architecture, comparison (ComparisonConfig fields).")) -> None:
    """Train weightings × α × seeds (uniform included) from one activation cache; write a table and a Pareto plot.

    Example CONFIG: `weightings: {variance: {weighting: variance}}`, `alphas: [-1, 0.5, 1]`, `seeds: [0, 1, 2]`,
    `comparison: {epochs: 6, output_dir: sweep_report}`.
    """
    from wsae_lens.pipeline.loading import read_config_file
    from wsae_lens.pipeline.sweep import SweepConfig, run_sweep, sweep_table

    cfg = SweepConfig.from_dict(read_config_file(config))
    result, summary = run_sweep(cfg)
    typer.echo(sweep_table(summary))
    typer.echo(f"Report written to {result.config['output_dir']}/ (sweep.md, sweep.json, pareto.png, saes/)")
