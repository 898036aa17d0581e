"""A heterogeneous WSAE toy in which the unweighted SAE *does* recover the features: does any Γ lower L_GT?

The paper's toy (n = 200 features in n_p = 20 dimensions, :mod:`~wsae_lens.diagnostics.toy_benchmark`)
recovers nothing at any sparsity S in our budget (MCC ≤ 0.76), so comparing Γs there compares codes that
recover nothing. This toy keeps the paper's ingredients (arXiv 2506.15963: x sparse and non-negative,
U[0, 1] magnitudes, x_p = W_p x, an untied TopK SAE with biases, L_GT as in
:func:`~wsae_lens.diagnostics.ground_truth.ground_truth_loss`) but is small enough to be recovered:

* W_p = :func:`~wsae_lens.diagnostics.toy_model.heterogeneous_wp`: ``n_mono`` = 16 dimensions carry one
  axis-aligned feature each (monosemantic), the other ``n_poly_dims`` = 32 carry ``n_poly_features`` = 64
  random unit-norm features (each of those dimensions has non-negligible weight from ~50 features).
  n = 80 features in n_p = 48 dimensions.
* S = 0.98, k = round(n (1 − S)) = 2, n_m = n latents; SAELens TopK / ``weighted_topk`` trained with
  :func:`~wsae_lens.diagnostics.toy_benchmark.train_toy_sae_on_data` (same data, batch order and
  initialisation for every row of a seed), 2,000 steps × 1,024 samples over 65,536 fixed samples.

Rows (each a Γ = diag(γ), γ normalised to mean(γ²) = 1 by :func:`wsae_lens.estimators.scores_to_gamma`):

* ``uniform``: Γ = 1 (SAELens's own ``topk``), the baseline of every paired Δ;
* ``variance α``: γ_i = Var(x_p,i)^α over the training samples (the paper's proxy; α = 0.5, 1);
* ``inverse variance``: the same with α = −1 (needs ``allow_negative_alpha``);
* ``oracle α``: γ_i ∝ (1 / #features in dimension i)^α (:func:`oracle_scores`), the direction Theorem 5
  asks for (small γ on polysemantic dimensions).

Per row: L_GT, reconstruction E‖x_p − x̂_p‖², MCC, paired (by seed) relative differences to ``uniform``
ΔL_GT = L_GT(row)/L_GT(uniform) − 1 and Δrecon, mean ± std over seeds, and corr(γ_i, #features in
dimension i) to show which way each Γ points.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from wsae_lens.diagnostics.ground_truth import GroundTruthMetrics, best_cosine_per_feature, evaluate_ground_truth
from wsae_lens.diagnostics.toy_benchmark import ToyBenchmarkConfig, pearson, train_toy_sae_on_data
from wsae_lens.diagnostics.toy_model import ToyModel, heterogeneous_wp, polysemanticity, validate_sparsity
from wsae_lens.estimators import estimate_variance, scores_to_gamma

GAMMA_PROXIES: tuple[str, ...] = ("uniform", "variance", "oracle")
"""Where a row's Γ comes from."""


@dataclass(frozen=True)
class GammaRow:
    """One Γ of the comparison: ``proxy`` in :data:`GAMMA_PROXIES` and the exponent α of γ_i = s_i^α."""

    name: str
    proxy: str
    alpha: float = 0.0


DEFAULT_ROWS: tuple[GammaRow, ...] = (
    GammaRow("uniform", "uniform"),
    GammaRow("variance α=0.5", "variance", 0.5),
    GammaRow("variance α=1", "variance", 1.0),
    GammaRow("inverse variance α=-1", "variance", -1.0),
    GammaRow("oracle α=1", "oracle", 1.0),
    GammaRow("oracle α=0.5", "oracle", 0.5),
)


@dataclass
class HeterogeneousToyConfig:
    """Settings of the heterogeneous toy (defaults: the README's table; see the module docstring).

    ``k`` None means round(n (1 − S)) clamped to [1, n_m]; ``d_sae`` None means n_m = n.
    """

    n_mono: int = 16
    n_poly_dims: int = 32
    n_poly_features: int = 64
    sparsity: float = 0.98
    magnitude: str = "uniform"
    seeds: tuple[int, ...] = (0, 1, 2)
    rows: tuple[GammaRow, ...] = DEFAULT_ROWS
    k: int | None = None
    d_sae: int | None = None
    n_train: int = 65_536
    n_steps: int = 2_000
    batch_size: int = 1_024
    lr: float = 3e-3
    n_eval: int = 16_384
    dead_feature_window: int = 50
    lr_decay_fraction: float = 0.3

    def __post_init__(self) -> None:
        self.seeds = tuple(int(s) for s in self.seeds)
        self.rows = tuple(r if isinstance(r, GammaRow) else GammaRow(**r) for r in self.rows)
        validate_sparsity(self.sparsity)
        if not self.seeds:
            raise ValueError("seeds is empty: give at least one seed.")
        if [r.proxy for r in self.rows].count("uniform") != 1:
            raise ValueError("rows must hold exactly one 'uniform' row: it is the baseline of every paired Δ.")
        for r in self.rows:
            if r.proxy not in GAMMA_PROXIES:
                raise ValueError(f"row {r.name!r} has proxy {r.proxy!r}; choose one of {list(GAMMA_PROXIES)}.")
        if len({r.name for r in self.rows}) != len(self.rows):
            raise ValueError("row names must be unique.")
        if not (1 <= self.n_poly_dims < self.n_poly_features):
            raise ValueError(
                f"n_poly_features={self.n_poly_features} must exceed n_poly_dims={self.n_poly_dims} >= 1 "
                "(superposition in the polysemantic dimensions)."
            )
        if self.n_mono < 1:
            raise ValueError(f"n_mono must be >= 1, got {self.n_mono}.")

    @property
    def n_features(self) -> int:
        return self.n_mono + self.n_poly_features

    @property
    def n_p(self) -> int:
        return self.n_mono + self.n_poly_dims

    def make_wp(self, seed: int) -> torch.Tensor:
        """W_p [n_p, n]: ``n_mono`` axis-aligned features, then random unit features in the other dimensions."""
        return heterogeneous_wp(self.n_features, self.n_p, self.n_mono, seed=seed)

    def trainer_config(self) -> ToyBenchmarkConfig:
        """The :class:`ToyBenchmarkConfig` that :func:`train_toy_sae_on_data` reads (TopK, this toy's sizes)."""
        return ToyBenchmarkConfig(
            geometry="heterogeneous", n_features=self.n_features, n_p=self.n_p, n_mono=self.n_mono,
            magnitude=self.magnitude, sparsities=(self.sparsity,), seeds=self.seeds, alphas=(), proxies=(),
            architecture="topk", d_sae=self.d_sae, k=self.k, n_train=self.n_train, n_steps=self.n_steps,
            batch_size=self.batch_size, lr=self.lr, n_eval=self.n_eval, dead_feature_window=self.dead_feature_window,
            lr_decay_fraction=self.lr_decay_fraction,
        )


def oracle_scores(w_p: torch.Tensor, threshold: float = 0.1) -> torch.Tensor:
    """s_i = 1 / #features in dimension i (:func:`~wsae_lens.diagnostics.toy_model.polysemanticity`), float64 [n_p]."""
    return 1.0 / polysemanticity(w_p, threshold).to(torch.float64)


def row_gamma(row: GammaRow, x_p_train: torch.Tensor, w_p: torch.Tensor) -> torch.Tensor | None:
    """Γ (float32 [n_p]) of a row; None for ``uniform`` (trained as SAELens's own ``topk``).

    A negative α is the row's explicit choice, so it is passed with ``allow_negative_alpha=True``.
    """
    if row.proxy == "uniform":
        return None
    scores = estimate_variance([x_p_train], progress=False) if row.proxy == "variance" else oracle_scores(w_p)
    return scores_to_gamma(scores, alpha=row.alpha, allow_negative_alpha=row.alpha < 0).float()


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    t = torch.tensor(list(values), dtype=torch.float64)
    return t.mean().item(), (t.std(unbiased=True).item() if len(values) > 1 else 0.0)


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(v) for v in value]
    return value


@dataclass
class HeterogeneousRun:
    """One trained SAE: its row, seed, ground-truth metrics, how Γ points, and per-group recovery."""

    row: str
    proxy: str
    alpha: float
    seed: int
    metrics: GroundTruthMetrics
    gamma_polysemanticity_corr: float
    """Pearson corr(γ_i, #features in dimension i); NaN for the uniform row (constant Γ)."""
    mono_best_cos: float
    """Mean over the monosemantic features of their best |cos| to a decoder row."""
    poly_best_cos: float
    """Mean over the superposed features of their best |cos| to a decoder row."""
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "metrics": self.metrics.to_dict()}


@dataclass
class HeterogeneousToyResult:
    """All runs, paired deltas vs ``uniform``, a markdown table, JSON and a plot."""

    config: HeterogeneousToyConfig
    runs: list[HeterogeneousRun] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def baseline(self) -> str:
        return next(r.name for r in self.config.rows if r.proxy == "uniform")

    def _run(self, row: str, seed: int) -> HeterogeneousRun | None:
        return next((r for r in self.runs if r.row == row and r.seed == seed), None)

    def paired_relative(self, row: str, metric: str) -> list[float]:
        """Per seed: metric(row) / metric(uniform) − 1 (``metric`` a :class:`GroundTruthMetrics` field)."""
        out = []
        for seed in self.config.seeds:
            base, other = self._run(self.baseline, seed), self._run(row, seed)
            if base is not None and other is not None:
                b = getattr(base.metrics, metric)
                out.append(getattr(other.metrics, metric) / b - 1.0)
        return out

    def summary(self) -> list[dict[str, Any]]:
        """One dict per row: mean ± std over seeds and the paired deltas (fractions, per seed and mean ± std)."""
        rows = []
        for spec in self.config.rows:
            runs = [r for r in self.runs if r.row == spec.name]
            if not runs:
                continue
            out: dict[str, Any] = {"row": spec.name, "proxy": spec.proxy, "alpha": spec.alpha, "n_seeds": len(runs)}
            for key, values in (
                ("l_gt", [r.metrics.l_gt for r in runs]),
                ("reconstruction", [r.metrics.reconstruction for r in runs]),
                ("mcc", [r.metrics.mcc for r in runs]),
                ("frr_0.9", [r.metrics.recovery.get("0.9", math.nan) for r in runs]),
                ("mono_best_cos", [r.mono_best_cos for r in runs]),
                ("poly_best_cos", [r.poly_best_cos for r in runs]),
                ("gamma_polysemanticity_corr", [r.gamma_polysemanticity_corr for r in runs]),
            ):
                out[key], out[key + "_std"] = _mean_std(values)
            out["l_gt_zero"] = _mean_std([r.metrics.l_gt_zero for r in runs])[0]
            for key, metric in (("delta_l_gt", "l_gt"), ("delta_reconstruction", "reconstruction")):
                per_seed = self.paired_relative(spec.name, metric)
                out[key + "_per_seed"] = per_seed
                out[key], out[key + "_std"] = _mean_std(per_seed) if per_seed else (math.nan, math.nan)
            rows.append(out)
        return rows

    def markdown_table(self) -> str:
        """The README table: one line per row, deltas in % (paired by seed, mean ± std, then per seed)."""
        head = (
            "| Γ | corr(γ, #feat.) | L_GT | ΔL_GT vs uniform | ΔL_GT per seed | reconstruction | Δrecon vs uniform "
            "| MCC | FRR@0.9 |"
        )
        lines = [head, "|" + "---|" * 9]

        def pct(m: float, s: float) -> str:
            return "" if math.isnan(m) else f"{100 * m:+.1f}% ± {100 * s:.1f}"

        for r in self.summary():
            is_base = r["proxy"] == "uniform"
            corr = "–" if is_base else f"{r['gamma_polysemanticity_corr']:+.2f}"
            seeds = "" if is_base else " / ".join(f"{100 * d:+.0f}%" for d in r["delta_l_gt_per_seed"])
            lines.append(
                f"| {r['row']} | {corr} | {r['l_gt']:.4f} ± {r['l_gt_std']:.4f} "
                f"| {'(baseline)' if is_base else pct(r['delta_l_gt'], r['delta_l_gt_std'])} | {seeds} "
                f"| {r['reconstruction']:.4f} ± {r['reconstruction_std']:.4f} "
                f"| {'(baseline)' if is_base else pct(r['delta_reconstruction'], r['delta_reconstruction_std'])} "
                f"| {r['mcc']:.3f} ± {r['mcc_std']:.3f} | {r['frr_0.9']:.2f} |"
            )
        l_gt_zero = self.summary()[0]["l_gt_zero"] if self.runs else math.nan
        c = self.config
        lines.append("")
        lines.append(
            f"n = {c.n_features} features in n_p = {c.n_p} dimensions ({c.n_mono} monosemantic, "
            f"{c.n_poly_features} features in {c.n_poly_dims}), S = {c.sparsity:g}, "
            f"k = {c.trainer_config().k_for(c.sparsity)}, {c.n_steps} steps, seeds {list(c.seeds)}; "
            f"L_GT(x̂ = 0) = E‖x‖² = {l_gt_zero:.4f}."
        )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "runs": [r.to_dict() for r in self.runs],
            "summary": self.summary(),
            "seconds": self.seconds,
        }

    def save_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as strict JSON (NaN written as null)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_nan_to_none(self.to_dict()), indent=2, allow_nan=False))
        return path

    def plot(self, path: str | Path) -> Path:
        """Bars of ΔL_GT and Δrecon vs uniform (mean ± std, seeds as dots) and MCC per row; one PNG."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        summary = self.summary()
        names = [r["row"] for r in summary]
        xs = list(range(len(names)))
        fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
        for ax, key, label in (
            (axes[0], "delta_l_gt", "ΔL_GT vs uniform [%] (paired by seed)"),
            (axes[1], "delta_reconstruction", "Δ reconstruction error vs uniform [%]"),
        ):
            means = [100 * r[key] for r in summary]
            stds = [100 * r[key + "_std"] for r in summary]
            ax.bar(xs, means, yerr=stds, capsize=4, color=[f"C{i}" for i in xs], alpha=0.7)
            for i, r in enumerate(summary):
                per_seed = [100 * d for d in r[key + "_per_seed"]]
                ax.scatter([i] * len(per_seed), per_seed, color="k", s=12, zorder=3)
            ax.axhline(0, color="k", lw=0.8)
            ax.set_ylabel(label)
        axes[2].bar(xs, [r["mcc"] for r in summary], yerr=[r["mcc_std"] for r in summary], capsize=4,
                    color=[f"C{i}" for i in xs], alpha=0.7)
        axes[2].axhline(0.9, color="k", lw=0.8, ls="--")
        axes[2].set_ylabel("MCC (Hungarian-matched |cos|)")
        axes[2].set_ylim(0, 1)
        for ax in axes:
            ax.set_xticks(xs, names, rotation=30, ha="right")
            ax.grid(alpha=0.3, axis="y")
        c = self.config
        fig.suptitle(
            f"heterogeneous toy: {c.n_mono} monosemantic dims + {c.n_poly_features} features in {c.n_poly_dims} dims, "
            f"S = {c.sparsity:g}, TopK k = {c.trainer_config().k_for(c.sparsity)}, seeds {list(c.seeds)}"
        )
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path


def run_heterogeneous_toy(cfg: HeterogeneousToyConfig, progress: bool = True) -> HeterogeneousToyResult:
    """Train one SAE per (seed, row) on the same data and initialisation; evaluate against ground truth."""
    result = HeterogeneousToyResult(config=cfg)
    trainer_cfg = cfg.trainer_config()
    start = time.perf_counter()
    bar = tqdm(total=len(cfg.seeds) * len(cfg.rows), desc="heterogeneous toy", disable=not progress)
    for seed in cfg.seeds:
        w_p = cfg.make_wp(seed)
        toy = ToyModel(w_p, cfg.sparsity, cfg.magnitude)
        _, x_p_train = toy.sample(cfg.n_train, seed=2 * seed)
        x_eval, x_p_eval = toy.sample(cfg.n_eval, seed=2 * seed + 1)
        features_per_dim = polysemanticity(w_p).to(torch.float64)
        for row in cfg.rows:
            t0 = time.perf_counter()
            gamma = row_gamma(row, x_p_train, w_p)
            sae = train_toy_sae_on_data(trainer_cfg, x_p_train, cfg.sparsity, seed, gamma)
            best = best_cosine_per_feature(sae.W_dec.detach(), w_p.T)
            result.runs.append(
                HeterogeneousRun(
                    row=row.name,
                    proxy=row.proxy,
                    alpha=row.alpha,
                    seed=seed,
                    metrics=evaluate_ground_truth(sae, w_p, x_eval, x_p_eval),
                    gamma_polysemanticity_corr=math.nan if gamma is None else pearson(gamma, features_per_dim),
                    mono_best_cos=best[: cfg.n_mono].mean().item(),
                    poly_best_cos=best[cfg.n_mono :].mean().item(),
                    seconds=time.perf_counter() - t0,
                )
            )
            bar.update(1)
    bar.close()
    result.seconds = time.perf_counter() - start
    return result


__all__ = [
    "DEFAULT_ROWS",
    "GAMMA_PROXIES",
    "GammaRow",
    "HeterogeneousRun",
    "HeterogeneousToyConfig",
    "HeterogeneousToyResult",
    "oracle_scores",
    "row_gamma",
    "run_heterogeneous_toy",
]
