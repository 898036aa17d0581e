"""``wsae-lens demo``: the README's main job (a thin layer over :func:`wsae_lens.pipeline.demo.run_demo`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from wsae_lens.cli.app import app
from wsae_lens.pipeline.comparison import ComparisonConfig

DEFAULTS = ComparisonConfig()


def comparison_config(config: Path | None, overrides: dict[str, Any]) -> ComparisonConfig:
    """ComparisonConfig from a YAML file of its fields (``arms:`` included) and the flags given."""
    from dataclasses import fields

    from wsae_lens.pipeline.loading import read_config_file

    values = read_config_file(config) if config is not None else {}
    known = {f.name for f in fields(ComparisonConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{config} has unknown fields {unknown}; ComparisonConfig fields are {sorted(known)}.")
    return ComparisonConfig(**{**values, **{k: v for k, v in overrides.items() if v is not None}})


@app.command()
def demo(
    config: Path = typer.Option(None, help="YAML of ComparisonConfig fields (arms, epochs, training_tokens, ...)."),
    output_dir: Path = typer.Option(None, help=f"Report folder [default: {DEFAULTS.output_dir}]."),
    scale: float = typer.Option(1.0, help="Multiply the cached tokens and held-out rows (e.g. 10 for a longer run)."),
    layer: int = typer.Option(None, help="Layer whose residual stream is used [default: the middle layer]."),
    epochs: int = typer.Option(None, help=f"Epochs over the cache [default: {DEFAULTS.epochs}]."),
    seed: int = typer.Option(None, help=f"Seed shared by every SAE (initial weights, data order) [default: {DEFAULTS.seed}]."),
    model_name: str = typer.Option(None, help=f"Model [default: {DEFAULTS.model_name}; or a transformer-lens name]."),
    dataset_path: str = typer.Option(None, help=f"Text corpus [default: {DEFAULTS.dataset_path}; or a hub dataset]."),
    keep_activations: bool = typer.Option(None, help="Keep the activation cache (output_dir/activations)."),
) -> None:
    """Cache activations, train the arms (default: SAELens topk vs weighted_topk), evaluate, write a report."""
    from wsae_lens.pipeline.demo import run_demo
    from wsae_lens.pipeline.report import comparison_table

    cfg = comparison_config(config, dict(
        output_dir=None if output_dir is None else str(output_dir), layer=layer, epochs=epochs, seed=seed,
        model_name=model_name, dataset_path=dataset_path, keep_activations=keep_activations))
    result = run_demo(cfg, scale=scale)
    typer.echo(comparison_table(result))
    typer.echo(f"Token filter: {result.filtered}; report written to {cfg.output_dir}/ "
               "(report.md, results.json, comparison.png, saes/)")
