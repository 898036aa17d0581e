"""Does weighting help? A grid of weighted SAEs (weightings × α × seeds, uniform included) as one comparison.

Every SAE of the grid is an :class:`~wsae_lens.pipeline.comparison.Arm` of one
:func:`~wsae_lens.pipeline.comparison.run_comparison`: one activation cache, one token filter, the same
epochs and held-out evaluation for all. Per seed the grid has the uniform SAE (α = 0) and one SAE per
(weighting, α); the report gives mean ± std over seeds per setting, the paired difference to the uniform
SAE of the same seed, and a Pareto plot of unweighted reconstruction (explained variance, CE-loss score)
against interpretability (latent semantic consistency) with the dead fraction in the table.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from wsae_lens.pipeline.comparison import Arm, ComparisonConfig, ComparisonResult, run_comparison

SWEEP_METRICS: tuple[tuple[str, str], ...] = (
    ("explained_variance", "EV"),
    ("ce_loss_score", "CE score"),
    ("semantic_consistency", "sem. consistency"),
    ("dead_fraction_last_epoch", "dead"),
    ("l0", "L0"),
)
UNIFORM = "uniform"


@dataclass
class SweepConfig:
    """A grid on top of a :class:`ComparisonConfig` (``comparison``: its fields; ``arms`` is built here).

    ``weightings`` maps a setting's name to weighted-SAE config fields (e.g. ``{"weighting": "variance"}``);
    every setting is trained at every α in ``alphas`` (or in the setting's own ``alphas`` list) and every
    seed in ``seeds``, beside a uniform SAE per seed. ``architecture`` is the weighted architecture used for every SAE of the grid.
    """

    weightings: dict[str, dict[str, Any]] = field(default_factory=lambda: {"variance": {"weighting": "variance"}})
    alphas: list[float] = field(default_factory=lambda: [0.5, 1.0])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    architecture: str = "weighted_topk"
    comparison: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.weightings or not self.alphas or not self.seeds:
            raise ValueError("weightings, alphas and seeds must each be non-empty.")
        if UNIFORM in self.weightings:
            raise ValueError(f"{UNIFORM!r} is always in the grid; do not list it under weightings.")
        if "arms" in self.comparison:
            raise ValueError("comparison.arms is built by the sweep from weightings × alphas × seeds; remove it.")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown sweep fields {unknown}; the fields are {sorted(known)}.")
        return cls(**data)

    def arms(self) -> list[Arm]:
        """Per seed: the uniform SAE, then every (weighting, α)."""
        arms = []
        for seed in self.seeds:
            arms.append(Arm(f"{UNIFORM}_seed{seed}", self.architecture, {"weighting": "uniform"}, seed))
            for name, setting in self.weightings.items():
                sae_fields = {key: value for key, value in setting.items() if key != "alphas"}
                for alpha in setting.get("alphas", self.alphas):
                    arms.append(Arm(f"{name}_a{alpha:g}_seed{seed}", self.architecture,
                                    {**sae_fields, "weighting_alpha": float(alpha)}, seed))
        return arms

    def comparison_config(self) -> ComparisonConfig:
        return ComparisonConfig(**{**self.comparison, "arms": self.arms()})


def setting_of(arm_name: str) -> tuple[str, int]:
    """(setting, seed) of an arm name built by :meth:`SweepConfig.arms`, e.g. ("variance_a0.5", 2)."""
    setting, seed = arm_name.rsplit("_seed", 1)
    return setting, int(seed)


def summarise(result: ComparisonResult) -> dict[str, dict[str, dict[str, float]]]:
    """Per setting and metric: mean, std over seeds, and the mean paired difference to the uniform SAE."""
    values: dict[str, dict[str, dict[int, float]]] = {}
    for name, metrics in result.metrics.items():
        setting, seed = setting_of(name)
        for key, _ in SWEEP_METRICS:
            values.setdefault(setting, {}).setdefault(key, {})[seed] = metrics[key]
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for setting, per_metric in values.items():
        summary[setting] = {}
        for key, by_seed in per_metric.items():
            seeds = sorted(by_seed)
            xs = [by_seed[s] for s in seeds]
            deltas = [by_seed[s] - values[UNIFORM][key][s] for s in seeds]
            summary[setting][key] = {
                "mean": statistics.fmean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else 0.0,
                "delta": statistics.fmean(deltas), "delta_std": statistics.stdev(deltas) if len(deltas) > 1 else 0.0,
            }
    return summary


def sweep_table(summary: dict[str, dict[str, dict[str, float]]]) -> str:
    """Markdown: one row per setting, mean ± std over seeds, and Δ vs uniform (paired by seed) ± std."""
    header = "| setting | " + " | ".join(f"{label} | Δ {label}" for _, label in SWEEP_METRICS) + " |"
    lines = [header, "|---|" + "---:|---:|" * len(SWEEP_METRICS)]
    for setting in sorted(summary, key=lambda s: (s != UNIFORM, s)):
        cells = []
        for key, _ in SWEEP_METRICS:
            m = summary[setting][key]
            cells.append(f"{m['mean']:.4f} ± {m['std']:.4f}")
            cells.append("—" if setting == UNIFORM else f"{m['delta']:+.4f} ± {m['delta_std']:.4f}")
        lines.append(f"| {setting} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_sweep_report(result: ComparisonResult, output_dir: str | Path) -> Path:
    """``sweep.json``, ``sweep.md`` (the table) and ``pareto.png`` into ``output_dir``."""
    out = Path(output_dir)
    summary = summarise(result)
    (out / "sweep.json").write_text(json.dumps({"summary": summary, "metrics": result.metrics,
                                                 "config": result.config}, indent=2, default=str))
    table = sweep_table(summary)
    (out / "sweep.md").write_text(
        f"# Weighting sweep\n\n{result.kept_tokens:,} kept tokens × {result.config['epochs']} epochs per SAE, "
        f"hook `{result.hook_name}`; token filter dropped {result.filtered['special']:,} special and "
        f"{result.filtered['outliers']:,} outlier tokens of {result.filtered['seen']:,}; mean ± std over seeds; "
        f"Δ = paired difference to the uniform SAE of the same seed.\n\n{table}\n")
    plot_pareto(summary, out / "pareto.png")
    return out


def plot_pareto(summary: dict[str, dict[str, dict[str, float]]], path: str | Path) -> None:
    """Latent semantic consistency against explained variance and CE-loss score, mean ± std over seeds:
    one colour and marker per weighting (the setting's name before ``_a``), its α written beside each point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = list(dict.fromkeys(setting.rsplit("_a", 1)[0] for setting in
                                  sorted(summary, key=lambda s: (s != UNIFORM, s))))
    markers = "os^DvPX*"
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, x_key, x_label in ((axes[0], "explained_variance", "explained variance (held-out, unweighted)"),
                               (axes[1], "ce_loss_score", "CE-loss score")):
        labelled: set[str] = set()
        for setting in summary:
            family, _, alpha = setting.rpartition("_a") if "_a" in setting else (setting, "", "")
            index = families.index(family)
            x, y = summary[setting][x_key], summary[setting]["semantic_consistency"]
            ax.errorbar(x["mean"], y["mean"], xerr=x["std"], yerr=y["std"], fmt=markers[index % len(markers)],
                        color=f"C{index}", label=None if family in labelled else family)
            labelled.add(family)
            if alpha and float(alpha) != 0:
                ax.annotate(f"α={alpha}", (x["mean"], y["mean"]), textcoords="offset points", xytext=(4, 3), fontsize=7)
        ax.set_xlabel(x_label)
        ax.set_ylabel("latent semantic consistency")
    axes[1].legend(fontsize=8, loc="best")
    fig.suptitle("Reconstruction vs interpretability, mean ± std over seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_sweep(cfg: SweepConfig, model: Any | None = None) -> tuple[ComparisonResult, dict[str, Any]]:
    """Train and evaluate the grid, write the report; returns the comparison result and the summary."""
    result = run_comparison(cfg.comparison_config(), model=model)
    write_sweep_report(result, result.config["output_dir"])
    return result, summarise(result)


__all__ = ["SweepConfig", "plot_pareto", "run_sweep", "summarise", "sweep_table", "write_sweep_report"]
