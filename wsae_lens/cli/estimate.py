"""``wsae-lens estimate SOURCE -o gamma.safetensors``: estimate Γ once, inspect it, reuse it.

SOURCE is a SAELens cached-activations directory (``CacheActivationsRunner`` output) or a SAELens
runner config YAML (the same file ``wsae-lens train`` takes: its model, hook and dataset are used, so
Γ is estimated on the activations that training will see). Writes Γ with :func:`save_gamma` (metadata:
weighting, alpha, tokens, source), prints min / median / max weight and the most and least weighted
dimensions, and optionally a histogram PNG. Train with it via ``weighting: file`` +
``weighting_path: gamma.safetensors``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from wsae_lens.activations import DEFAULT_OUTLIER_NORM_RATIO, TokenFilter
from wsae_lens.cli.app import app


def runner_config_store(config: Path, outlier_norm_ratio: float | None = None) -> tuple[Any, int]:
    """A filtered ActivationsStore for a runner config YAML (embedded names resolved), and its Γ token budget.

    ``outlier_norm_ratio`` overrides the config's (0: no outlier rule)."""
    from wsae_lens.activations import FilteredActivationsStore, TokenFilter
    from wsae_lens.pipeline.loading import load_runner_config
    from wsae_lens.estimators.entry import weighting_token_budget

    inputs = load_runner_config(config, load_hub_model=True)
    cfg = inputs.runner_config()
    store = FilteredActivationsStore.from_config(inputs.model, cfg, override_dataset=inputs.dataset)
    ratio = inputs.outlier_norm_ratio if outlier_norm_ratio is None else outlier_norm_ratio or None
    store.token_filter = TokenFilter(special_token_ids=store.exclude_special_tokens, outlier_norm_ratio=ratio)
    return store, weighting_token_budget(int(getattr(cfg.sae, "weighting_tokens", 0)), int(cfg.training_tokens))


def save_gamma_histogram(gamma: Any, path: Path, title: str) -> Path:
    """Histogram of the weights γ_i as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(gamma.double().cpu().numpy(), bins=min(60, max(10, gamma.numel() // 8)), color="tab:blue")
    ax.axvline(1.0, color="grey", linestyle="--", linewidth=1, label="γ = 1 (uniform)")
    ax.set_xlabel("γ_i (normalised: mean γ² = 1)")
    ax.set_ylabel("input dimensions")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


@app.command()
def estimate(
    source: Path = typer.Argument(
        ..., help="SAELens cached-activations directory, or a runner config YAML (model + hook + dataset)."
    ),
    output: Path = typer.Option(..., "--output", "-o", help="Γ safetensors file to write (key 'gamma')."),
    weighting: str = typer.Option("variance", help="Proxy: variance | semantic_consistency."),
    alpha: float = typer.Option(1.0, help="Exponent α in γ_i = s_i^α."),
    max_tokens: int = typer.Option(0, help="Tokens to read (0: all of a cached directory; the config's budget for a YAML)."),
    floor: float = typer.Option(1e-3, help="Zero scores are raised to floor × the largest score."),
    threshold: float = typer.Option(1e-6, help="semantic_consistency: active when |x_i|/‖x‖ > threshold."),
    active_quantile: float = typer.Option(
        None, help="semantic_consistency: active where |x_i| is above its own q-quantile (e.g. 0.99; dense streams)."),
    transform: str = typer.Option("none", help="Scores before γ = s^α: none | rank | log."),
    allow_negative_alpha: bool = typer.Option(False, help="Allow α < 0 (the inverse proxy)."),
    hook_name: str = typer.Option(None, help="Activation column of a cached directory with several hooks."),
    outlier_norm_ratio: float = typer.Option(
        None, help="Leave out tokens whose norm exceeds this × the median norm (default: the config's, else "
        f"{DEFAULT_OUTLIER_NORM_RATIO:g}; 0: keep every norm)."),
    histogram: Path = typer.Option(None, help="Also write a histogram of γ to this PNG."),
    top: int = typer.Option(5, help="How many most/least weighted dimensions to print."),
    overwrite: bool = typer.Option(False, help="Replace an existing output file."),
) -> None:
    """Estimate Γ from activations, save it, and print a summary."""
    from wsae_lens import save_gamma
    from wsae_lens.architectures.weighting import ESTIMATED_WEIGHTINGS
    from wsae_lens.estimators import describe_gamma
    from wsae_lens.estimators.entry import estimate_gamma_from_activations

    if weighting not in ESTIMATED_WEIGHTINGS:
        raise typer.BadParameter(f"{weighting!r} is not estimated; choose one of {list(ESTIMATED_WEIGHTINGS)}.", param_hint="--weighting")
    if max_tokens < 0:
        raise typer.BadParameter(f"max_tokens must be >= 0, got {max_tokens}.", param_hint="--max-tokens")
    if output.exists() and not overwrite:
        raise typer.BadParameter(f"{output} exists; pass --overwrite to replace it.", param_hint="--output")
    if not source.exists():
        raise typer.BadParameter(f"{source} does not exist.", param_hint="SOURCE")

    budget: int | None = max_tokens or None
    if source.is_dir():
        activations: Any = source
        ratio = DEFAULT_OUTLIER_NORM_RATIO if outlier_norm_ratio is None else outlier_norm_ratio or None
        token_filter = TokenFilter(outlier_norm_ratio=ratio)
    elif source.suffix in (".yaml", ".yml"):
        activations, config_budget = runner_config_store(source, outlier_norm_ratio)
        token_filter = activations.token_filter
        budget = budget or config_budget
    else:
        raise typer.BadParameter(
            f"{source} is neither a cached-activations directory nor a runner config YAML.", param_hint="SOURCE"
        )
    estimator_kwargs: dict[str, Any] = {"transform": transform, "allow_negative_alpha": allow_negative_alpha}
    if weighting == "semantic_consistency":
        estimator_kwargs.update(threshold=threshold, active_quantile=active_quantile)
    try:
        gamma, tokens, filtered = estimate_gamma_from_activations(
            activations, weighting, alpha, max_tokens=budget, hook_name=hook_name, token_filter=token_filter,
            floor=floor, **estimator_kwargs)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="SOURCE") from err
    metadata = {"weighting": weighting, "alpha": str(alpha), "tokens": str(tokens), "source": str(source),
                "transform": transform, "active_quantile": str(active_quantile)}
    save_gamma(gamma, output, metadata=metadata)

    summary = describe_gamma(gamma, top=top)
    typer.echo(f"Γ ({weighting}, α={alpha}, {tokens:,} tokens, d_in={summary['d_in']}) -> {output}")
    typer.echo(f"  token filter: {filtered.describe()}")
    typer.echo(f"  min {summary['min']:.4g}   median {summary['median']:.4g}   max {summary['max']:.4g}   mean γ² {summary['mean_square']:.4g}")
    typer.echo("  most weighted:  " + ", ".join(f"{i}: {g:.4g}" for i, g in summary["most_weighted"]))
    typer.echo("  least weighted: " + ", ".join(f"{i}: {g:.4g}" for i, g in summary["least_weighted"]))
    if histogram is not None:
        save_gamma_histogram(gamma, histogram, f"Γ from {weighting}, α = {alpha}")
        typer.echo(f"  histogram -> {histogram}")
