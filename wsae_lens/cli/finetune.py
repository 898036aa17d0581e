"""``wsae-lens finetune SOURCE CONFIG.yaml``: continue training a TopK SAE as a weighted_topk SAE."""

from __future__ import annotations

from pathlib import Path

import typer

from wsae_lens.cli.app import app


@app.command()
def finetune(
    source: str = typer.Argument(..., help="A local SAELens SAE folder, or a hub release (with --sae-id)."),
    config: Path = typer.Argument(..., help="YAML of SAELens runner fields (training_tokens, lr, output_path, ...)."),
    sae_id: str = typer.Option(None, help="SAE id within a hub release (SAE.from_pretrained(release, sae_id))."),
    weighting: str = typer.Option("variance", help="Where Γ comes from: variance or semantic_consistency."),
    alpha: float = typer.Option(1.0, help="Exponent α in γ_i = s_i^α."),
    weighting_tokens: int = typer.Option(0, help="Tokens for the Γ estimate (0 = runner default)."),
) -> None:
    """Convert a plain TopK SAE to weighted_topk (same weights), estimate Γ, and continue training.

    Model, hook and context size default to the SAE's own metadata; `model_name: "embedded:smollm2-135m"`
    and `dataset_path: "embedded:english"` select the offline embedded defaults.
    """
    from wsae_lens.pipeline.loading import load_runner_config
    from wsae_lens.pipeline.finetune import finetune_sae

    inputs = load_runner_config(config, require_sae=False)
    sae = finetune_sae(source, inputs.config, sae_id=sae_id, weighting=weighting, alpha=alpha,
                       weighting_tokens=weighting_tokens, model=inputs.model, dataset=inputs.dataset,
                       outlier_norm_ratio=inputs.outlier_norm_ratio)
    typer.echo(f"Fine-tuned weighted_topk SAE (d_in={sae.cfg.d_in}, d_sae={sae.cfg.d_sae}, Γ from {sae.cfg.weighting}).")
    if inputs.config.get("output_path"):
        typer.echo(f"Saved to {inputs.config['output_path']}")
