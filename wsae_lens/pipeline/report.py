"""The comparison's report: ``results.json``, ``report.md`` (table, budget, token filter) and ``comparison.png``
(metrics per arm, training curves, the Γ spectrum of every weighted arm)."""

from __future__ import annotations

from pathlib import Path

from wsae_lens.pipeline.comparison import ComparisonResult

METRICS_SHOWN: tuple[tuple[str, str, str], ...] = (
    # key, label, which direction is better
    ("explained_variance", "explained variance", "higher"),
    ("mse", "MSE", "lower"),
    ("l0", "L0", "-"),
    ("dead_fraction_last_epoch", "dead latents (last epoch)", "lower"),
    ("ce_loss_score", "CE-loss score", "higher"),
    ("semantic_consistency", "latent semantic consistency", "higher"),
)


def comparison_table(result: ComparisonResult) -> str:
    """The markdown comparison table (one row per metric, one column per arm)."""
    names = list(result.metrics)
    lines = ["| metric | better | " + " | ".join(names) + " |", "|---|---|" + "---:|" * len(names)]
    for key, label, better in METRICS_SHOWN:
        values = " | ".join(f"{result.metrics[name][key]:.4g}" for name in names)
        lines.append(f"| {label} | {better} | {values} |")
    return "\n".join(lines)


def report_markdown(result: ComparisonResult) -> str:
    """``report.md``: what was trained on what, the token filter, the table, the time per step."""
    cfg = result.config
    tf, dropped = result.token_filter, result.filtered
    share = (dropped["special"] + dropped["outliers"]) / dropped["seen"] if dropped["seen"] else 0.0
    arms = "; ".join(f"`{arm['name']}` = {arm['architecture']} {arm['sae'] or ''}".rstrip() for arm in cfg["arms"])
    lines = [
        "# SAEs compared on one real model",
        "",
        f"Model `{cfg['model_name']}`, hook `{result.hook_name}` (d_in {result.d_in}), corpus `{cfg['dataset_path']}`.",
        f"Arms: {arms}. Shared: k = {cfg['k']}, {cfg['expansion_factor']}× latents, lr {cfg['lr']}, batch "
        f"{cfg['train_batch_size_tokens']} tokens, seed {cfg['seed']}.",
        f"Budget: {result.cached_tokens:,} cached tokens, {result.kept_tokens:,} kept, {cfg['epochs']} epochs "
        f"({cfg['epochs'] * result.kept_tokens:,} training tokens per SAE).",
        f"Token filter: special tokens and tokens with norm > {tf['outlier_norm_ratio']} × median "
        f"({tf['median_norm']:.4g}) = {tf['norm_threshold']:.4g}; dropped {dropped['special']:,} special and "
        f"{dropped['outliers']:,} outlier tokens of {dropped['seen']:,} ({share:.3%}), in training, Γ and evaluation."
        if tf["norm_threshold"] is not None else "Token filter: special tokens only (outlier rule off).",
        f"Evaluation on {cfg['held_out_rows']} held-out rows (kept tokens only; CE loss on {cfg['eval_rows']} rows, "
        "the SAE spliced in at kept positions); dead latents counted over the last training epoch.",
        "",
        comparison_table(result),
        "",
    ]
    for name, gamma in result.gamma_summary.items():
        lines.append(f"Γ of `{name}`: min {gamma['min']:.3g}, median {gamma['median']:.3g}, max {gamma['max']:.3g} "
                     "(normalised to mean(γ²) = 1).")
    lines += ["", "Seconds per step: " + ", ".join(f"{k} {v:.0f}" for k, v in result.seconds.items()), "",
              "Load the SAEs with `import wsae_lens` then `SAE.load_from_disk(\"saes/<arm>\")`."]
    return "\n".join(lines) + "\n"


def write_report(result: ComparisonResult) -> Path:
    """Write ``results.json``, ``report.md`` and ``comparison.png`` into the result's output folder."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from wsae_lens.architectures.weighting import load_gamma

    out = Path(result.config["output_dir"])
    (out / "results.json").write_text(result.to_json())
    (out / "report.md").write_text(report_markdown(result))

    names = list(result.metrics)
    panels = len(METRICS_SHOWN) + 3
    fig, axes = plt.subplots(1, panels, figsize=(2.9 * panels, 3.2))
    colours = [f"C{i}" for i in range(len(names))]
    for ax, (key, label, better) in zip(axes, METRICS_SHOWN):
        ax.bar(names, [result.metrics[n][key] for n in names], color=colours)
        ax.set_title(f"{label}\n({better} is better)" if better != "-" else label, fontsize=9)
        ax.tick_params(axis="x", labelsize=7, rotation=30)
    curve_ev, curve_dead, spectrum = axes[-3:]
    for name, colour in zip(names, colours):
        curve = result.curves[name]
        tokens = [t / 1e6 for t in curve["tokens"]]
        if curve["explained_variance"]:
            curve_ev.plot(tokens, curve["explained_variance"], "o-", color=colour, label=name)
        curve_dead.plot(tokens, curve["dead_fraction"], "o-", color=colour, label=name)
        if name in result.gamma_summary:
            gamma = load_gamma(Path(result.sae_paths[name]) / "sae_weights.safetensors").float()
            spectrum.semilogy(torch.sort(gamma, descending=True).values.numpy(), color=colour, label=name)
    curve_ev.set_title("held-out explained variance\nper epoch", fontsize=9)
    curve_dead.set_title("dead fraction per epoch", fontsize=9)
    for ax in (curve_ev, curve_dead):
        ax.set_xlabel("training tokens (M)", fontsize=8)
        ax.legend(fontsize=7)
    spectrum.set_title("Γ spectrum (sorted γ_i)", fontsize=9)
    spectrum.set_xlabel("input dimension (sorted)", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "comparison.png", dpi=110)
    plt.close(fig)
    return out
