"""SAE vs WSAE on the paper's toy model: the one sweep that the example script and the CLI run.

For every sparsity S and seed, one training set and one eval set are drawn from the toy
(:class:`~wsae_lens.diagnostics.toy_model.ToyModel`); every model of the sweep trains on exactly that
data in the same order, from the same initialisation (``torch.manual_seed(seed)`` before building it),
with SAELens's :class:`~sae_lens.training.sae_trainer.SAETrainer`:

* ``SAE``: SAELens's ``topk`` (or ``standard``) training SAE;
* ``WSAE(α, variance)``: ``weighted_topk`` (``weighted_standard``) with Γ from the variance proxy,
  γ_i = Var(x_p,i)^α normalised to mean(γ²) = 1 (:func:`wsae_lens.estimators.scores_to_gamma`);
* ``WSAE(α, oracle)`` (optional control): γ_i ∝ (1 / true polysemanticity of dimension i)^α, the
  direction the theory asks for (Theorem 5), to separate "does weighting help" from "does the
  variance proxy point the right way".

Each model is evaluated with :func:`~wsae_lens.diagnostics.ground_truth.evaluate_ground_truth`.
The correlation between γ_i and the true polysemanticity of dimension i is reported for each proxy.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from sae_lens.config import LoggingConfig, SAETrainerConfig
from sae_lens.registry import get_sae_training_class
from sae_lens.training.sae_trainer import SAETrainer
from tqdm.auto import tqdm

from wsae_lens.diagnostics.ground_truth import GroundTruthMetrics, evaluate_ground_truth
from wsae_lens.diagnostics.toy_model import (
    ToyModel,
    digon_wp,
    heterogeneous_wp,
    polysemanticity,
    random_wp,
    validate_sparsity,
)
from wsae_lens.architectures.weighting import validate_weighting_options
from wsae_lens.estimators import estimate_variance, scores_to_gamma

GEOMETRY_CHOICES: tuple[str, ...] = ("heterogeneous", "random", "digon")
ARCHITECTURE_CHOICES: tuple[str, ...] = ("topk", "standard")
PROXY_CHOICES: tuple[str, ...] = ("variance", "oracle")
DEFAULT_SPARSITIES: tuple[float, ...] = (0.2, 0.5, 0.8, 0.9, 0.95, 0.99, 0.995)


@dataclass
class ToyBenchmarkConfig:
    """Settings of the SAE-vs-WSAE sweep (defaults: the paper's n = 200, n_p = 20 toy).

    Args:
        geometry: ``"heterogeneous"`` (``n_mono`` monosemantic dimensions + random superposed rest),
            ``"random"`` (random unit columns) or ``"digon"`` (``n_p`` dims, ``n_features − n_p`` digons).
        n_features: ground-truth features n.
        n_p: observed dimensions n_p.
        n_mono: monosemantic dimensions of the heterogeneous geometry.
        magnitude: firing magnitudes (``"uniform"`` = U[0, 1]).
        sparsities: the S values swept (each in [0, 1)).
        seeds: seeds (data, W_p draw of random geometries and SAE init all follow the seed).
        alphas: α values of the WSAE.
        proxies: Γ proxies: ``"variance"`` (the paper's) and/or ``"oracle"`` (control).
        architecture: ``"topk"`` (untied TopK with biases, SAELens) or ``"standard"`` (ReLU + L1).
        d_sae: latents (n_m); ``None`` means n_m = n.
        k: TopK's k; ``None`` means k = clamp(round(n·(1 − S)), 1, n_m), the expected active features.
        l1_coefficient: L1 coefficient of the ``standard`` architecture.
        n_train: training samples drawn per (S, seed); training cycles through them.
        n_steps: optimiser steps per model; batch_size: samples per step; lr: Adam learning rate.
        n_eval: held-out samples for the metrics.
        dead_feature_window: steps without firing after which SAELens counts a latent dead (TopK's AuxK
            loss then revives it); shorter than SAELens's 1,000 because the toy runs are short.
        lr_decay_fraction: share of the final steps over which SAELens decays the learning rate to 0.
        allow_negative_alpha: explicit opt-in to α < 0 in ``alphas`` (the inverse proxy); checked by
            :func:`~wsae_lens.architectures.weighting.validate_weighting_options`, like the SAE config.
    """

    geometry: str = "heterogeneous"
    n_features: int = 200
    n_p: int = 20
    n_mono: int = 10
    magnitude: str = "uniform"
    sparsities: tuple[float, ...] = DEFAULT_SPARSITIES
    seeds: tuple[int, ...] = (0, 1, 2)
    alphas: tuple[float, ...] = (1.0, 0.5)
    proxies: tuple[str, ...] = ("variance",)
    architecture: str = "topk"
    d_sae: int | None = None
    k: int | None = None
    l1_coefficient: float = 1e-2
    n_train: int = 65_536
    n_steps: int = 800
    batch_size: int = 512
    lr: float = 3e-3
    n_eval: int = 16_384
    dead_feature_window: int = 100
    lr_decay_fraction: float = 0.0
    allow_negative_alpha: bool = False

    def __post_init__(self) -> None:
        self.sparsities = tuple(float(s) for s in self.sparsities)
        self.seeds = tuple(int(s) for s in self.seeds)
        self.alphas = tuple(float(a) for a in self.alphas)
        self.proxies = tuple(self.proxies)
        if self.geometry not in GEOMETRY_CHOICES:
            raise ValueError(f"geometry={self.geometry!r} is not supported; choose one of {list(GEOMETRY_CHOICES)}.")
        if self.architecture not in ARCHITECTURE_CHOICES:
            raise ValueError(
                f"architecture={self.architecture!r} is not supported; choose one of {list(ARCHITECTURE_CHOICES)}."
            )
        for p in self.proxies:
            if p not in PROXY_CHOICES:
                raise ValueError(f"proxies contains {p!r}; choose from {list(PROXY_CHOICES)}.")
        if not self.sparsities:
            raise ValueError("sparsities is empty: give at least one S in [0, 1).")
        for s in self.sparsities:
            validate_sparsity(s)
        if not self.seeds:
            raise ValueError("seeds is empty: give at least one seed.")
        for a in self.alphas:
            validate_weighting_options(alpha=a, allow_negative_alpha=self.allow_negative_alpha)
        for name in ("n_features", "n_p", "n_train", "n_steps", "batch_size", "n_eval"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.n_features <= self.n_p:
            raise ValueError(f"n_features={self.n_features} must exceed n_p={self.n_p} (superposition: n > n_p).")
        if self.geometry == "digon" and self.n_features > 2 * self.n_p:
            raise ValueError(
                f"geometry='digon' needs n_features <= 2·n_p = {2 * self.n_p} (one digon per dimension), "
                f"got {self.n_features}."
            )

    @property
    def n_latents(self) -> int:
        return self.d_sae if self.d_sae is not None else self.n_features

    def k_for(self, sparsity: float) -> int:
        """TopK's k at sparsity S (the expected number of active features unless ``k`` is set)."""
        if self.k is not None:
            return self.k
        return int(min(max(round(self.n_features * (1.0 - sparsity)), 1), self.n_latents))

    def make_wp(self, seed: int) -> torch.Tensor:
        if self.geometry == "random":
            return random_wp(self.n_features, self.n_p, seed=seed)
        if self.geometry == "heterogeneous":
            return heterogeneous_wp(self.n_features, self.n_p, self.n_mono, seed=seed)
        return digon_wp(self.n_p, self.n_features - self.n_p)

    def model_names(self) -> list[str]:
        return ["SAE"] + [f"WSAE(a={a:g},{p})" for p in self.proxies for a in self.alphas]


@dataclass
class ToyRun:
    """One trained model of the sweep and its metrics."""

    sparsity: float
    seed: int
    model: str
    alpha: float
    proxy: str
    k: int | None
    metrics: GroundTruthMetrics
    gamma_polysemanticity_corr: float | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "metrics": self.metrics.to_dict()}


def _row(run: ToyRun) -> dict[str, float]:
    m = run.metrics
    return {
        "l_gt": m.l_gt,
        "l_gt_zero": m.l_gt_zero,
        "reconstruction": m.reconstruction,
        "mcc": m.mcc,
        "frr_0.9": m.recovery.get("0.9", float("nan")),
        "avg_activated_features": m.avg_activated_features,
        "latent_variance": m.latent_variance,
        "dead_latents": float(m.dead_latents),
    }


TABLE_COLUMNS: tuple[str, ...] = (
    "l_gt",
    "l_gt_zero",
    "reconstruction",
    "mcc",
    "frr_0.9",
    "avg_activated_features",
    "latent_variance",
    "dead_latents",
)


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    t = torch.tensor(list(values), dtype=torch.float64)
    return t.mean().item(), (t.std(unbiased=True).item() if len(values) > 1 else 0.0)


@dataclass
class ToyBenchmarkResult:
    """All runs of a sweep, with aggregation (mean ± std over seeds), a table, JSON and plots."""

    config: ToyBenchmarkConfig
    runs: list[ToyRun] = field(default_factory=list)
    gamma_polysemanticity_corr: dict[str, float] = field(default_factory=dict)
    """Pearson correlation of γ_i (α = 1) with the true polysemanticity of dimension i, per proxy (mean over S, seeds)."""
    seconds: float = 0.0

    def summary(self) -> list[dict[str, Any]]:
        """One row per (S, model): mean and std over seeds of every :data:`TABLE_COLUMNS` metric."""
        rows = []
        for s in self.config.sparsities:
            for name in self.config.model_names():
                runs = [r for r in self.runs if r.sparsity == s and r.model == name]
                if not runs:
                    continue
                row: dict[str, Any] = {"sparsity": s, "model": name, "n_seeds": len(runs)}
                for col in TABLE_COLUMNS:
                    row[col], row[col + "_std"] = _mean_std([_row(r)[col] for r in runs])
                rows.append(row)
        return rows

    def relative_l_gt(self, model: str) -> dict[float, tuple[float, float]]:
        """Per S: mean and std over seeds of (L_GT(model) − L_GT(SAE)) / L_GT(SAE), paired by seed."""
        out = {}
        for s in self.config.sparsities:
            diffs = []
            for seed in self.config.seeds:
                base = [r for r in self.runs if r.sparsity == s and r.seed == seed and r.model == "SAE"]
                other = [r for r in self.runs if r.sparsity == s and r.seed == seed and r.model == model]
                if base and other:
                    diffs.append((other[0].metrics.l_gt - base[0].metrics.l_gt) / base[0].metrics.l_gt)
            if diffs:
                out[s] = _mean_std(diffs)
        return out

    def format_table(self) -> str:
        """Plain-text table: S, model, then mean ± std of each metric, and the paired ΔL_GT vs SAE."""
        names = ["S", "model", "L_GT", "L_GT(x̂=0)", "recon", "MCC", "FRR@0.9", "avg act. feats", "latent var", "dead", "ΔL_GT vs SAE"]
        rel = {m: self.relative_l_gt(m) for m in self.config.model_names() if m != "SAE"}
        lines = []
        for row in self.summary():
            d = rel.get(row["model"], {}).get(row["sparsity"])
            lines.append(
                [
                    f"{row['sparsity']:g}",
                    row["model"],
                    f"{row['l_gt']:.4g}±{row['l_gt_std']:.2g}",
                    f"{row['l_gt_zero']:.4g}",
                    f"{row['reconstruction']:.4g}±{row['reconstruction_std']:.2g}",
                    f"{row['mcc']:.3f}±{row['mcc_std']:.3f}",
                    f"{row['frr_0.9']:.3f}",
                    f"{row['avg_activated_features']:.3g}±{row['avg_activated_features_std']:.2g}",
                    f"{row['latent_variance']:.3g}±{row['latent_variance_std']:.2g}",
                    f"{row['dead_latents']:.3g}",
                    "" if d is None else f"{100 * d[0]:+.1f}%±{100 * d[1]:.1f}",
                ]
            )
        widths = [max(len(h), *(len(r[i]) for r in lines)) for i, h in enumerate(names)]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        out = [fmt.format(*names), fmt.format(*("-" * w for w in widths))]
        out += [fmt.format(*r) for r in lines]
        corr = ", ".join(f"{p}: {c:+.3f}" for p, c in self.gamma_polysemanticity_corr.items())
        out.append(f"corr(γ_i, polysemanticity of dimension i): {corr}")
        return "\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "runs": [r.to_dict() for r in self.runs],
            "summary": self.summary(),
            "gamma_polysemanticity_corr": self.gamma_polysemanticity_corr,
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToyBenchmarkResult:
        """Rebuild a result from :meth:`to_dict` (e.g. to re-plot a saved ``--json`` file)."""
        runs = [ToyRun(**{**r, "metrics": GroundTruthMetrics(**r["metrics"])}) for r in data["runs"]]
        return cls(
            config=ToyBenchmarkConfig(**data["config"]),
            runs=runs,
            gamma_polysemanticity_corr=dict(data.get("gamma_polysemanticity_corr", {})),
            seconds=float(data.get("seconds", 0.0)),
        )

    def save_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    def plot(self, out_dir: str | Path, prefix: str = "wsae_toy") -> list[Path]:
        """Write ``{prefix}_lgt_vs_s.png`` (L_GT and reconstruction vs S) and ``{prefix}_monosemanticity_vs_s.png``."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        summary = self.summary()
        sparsities = list(self.config.sparsities)
        # x axis: −log10(1 − S) spreads the sparse end (0.2 … 0.995)
        xs = [-math.log10(1 - s) for s in sparsities]

        def series(model: str, col: str) -> tuple[list[float], list[float]]:
            rows = {r["sparsity"]: r for r in summary if r["model"] == model}
            return [rows[s][col] for s in sparsities], [rows[s][col + "_std"] for s in sparsities]

        def panel(ax: Any, col: str, label: str, log: bool) -> None:
            for model in self.config.model_names():
                mean, std = series(model, col)
                ax.errorbar(xs, mean, yerr=std, marker="o", capsize=3, label=model)
            ax.set_xticks(xs, [f"{s:g}" for s in sparsities], rotation=45)
            ax.set_xlabel("feature sparsity S")
            ax.set_ylabel(label)
            if log:
                ax.set_yscale("log")
            ax.grid(alpha=0.3)

        title = (
            f"{self.config.geometry} toy, n={self.config.n_features}, n_p={self.config.n_p}, "
            f"{self.config.architecture}, {len(self.config.seeds)} seeds"
        )
        paths = []
        fig, axes = plt.subplots(1, 3, figsize=(16, 4))
        panel(axes[0], "l_gt", "L_GT = E‖x − Π σ(W_enc x_p)‖²", log=True)
        panel(axes[2], "reconstruction", "reconstruction E‖x_p − x̂_p‖²", log=True)
        for i, model in enumerate(self.config.model_names()[1:], start=1):
            rel = self.relative_l_gt(model)
            axes[1].errorbar(
                [xs[sparsities.index(s)] for s in rel], [100 * m for m, _ in rel.values()],
                yerr=[100 * sd for _, sd in rel.values()], marker="o", capsize=3, label=model, color=f"C{i}",
            )
        axes[1].axhline(0, color="k", lw=0.8)
        axes[1].set_xticks(xs, [f"{s:g}" for s in sparsities], rotation=45)
        axes[1].set_xlabel("feature sparsity S")
        axes[1].set_ylabel("L_GT(WSAE) / L_GT(SAE) − 1  [%] (paired by seed)")
        axes[1].grid(alpha=0.3)
        axes[1].legend(fontsize=8)
        axes[0].legend(fontsize=8)
        fig.suptitle(title)
        fig.tight_layout()
        paths.append(out_dir / f"{prefix}_lgt_vs_s.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)

        fig, axes = plt.subplots(1, 3, figsize=(15, 4))
        panel(axes[0], "avg_activated_features", "avg. activated GT features per live latent (↓)", log=True)
        panel(axes[1], "latent_variance", "per-latent activation variance (↑)", log=True)
        panel(axes[2], "mcc", "MCC (↑)", log=False)
        axes[0].legend(fontsize=8)
        fig.suptitle(title)
        fig.tight_layout()
        paths.append(out_dir / f"{prefix}_monosemanticity_vs_s.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
        return paths


class _CyclingBatches(Iterator[torch.Tensor]):
    """Batches of a fixed training set, reshuffled each epoch by a seeded generator (same order for every model)."""

    def __init__(self, data: torch.Tensor, batch_size: int, seed: int) -> None:
        self.data, self.batch_size = data, min(batch_size, data.shape[0])
        self.gen = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(data.shape[0], generator=self.gen)
        self.pos = 0

    def __iter__(self) -> _CyclingBatches:
        return self

    def __next__(self) -> torch.Tensor:
        if self.pos + self.batch_size > self.data.shape[0]:
            self.order, self.pos = torch.randperm(self.data.shape[0], generator=self.gen), 0
        idx = self.order[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return self.data[idx]


def gamma_from_proxy(
    proxy: str,
    x_p_train: torch.Tensor,
    w_p: torch.Tensor,
    alpha: float,
    polysemanticity_threshold: float = 0.1,
    allow_negative_alpha: bool = False,
) -> torch.Tensor:
    """Γ (float32 [n_p]) from ``"variance"`` (Var over the training x_p) or ``"oracle"`` (1 / true polysemanticity)."""
    if proxy == "variance":
        scores = estimate_variance([x_p_train], progress=False)
    elif proxy == "oracle":
        scores = 1.0 / polysemanticity(w_p, polysemanticity_threshold).to(torch.float64)
    else:
        raise ValueError(f"proxy={proxy!r} is not supported; choose one of {list(PROXY_CHOICES)}.")
    return scores_to_gamma(scores, alpha=alpha, allow_negative_alpha=allow_negative_alpha).float()


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of two 1-D tensors (NaN when either is constant)."""
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    den = a.norm() * b.norm()
    return (a @ b / den).item() if den > 0 else float("nan")


def train_toy_sae_on_data(
    cfg: ToyBenchmarkConfig,
    x_p_train: torch.Tensor,
    sparsity: float,
    seed: int,
    gamma: torch.Tensor | None,
) -> Any:
    """Train one SAE (Γ = None: SAELens's own architecture) with SAELens's SAETrainer on fixed data."""
    weighted = gamma is not None
    arch = ("weighted_" if weighted else "") + cfg.architecture
    sae_cls, cfg_cls = get_sae_training_class(arch)
    kwargs: dict[str, Any] = {"d_in": cfg.n_p, "d_sae": cfg.n_latents}
    if cfg.architecture == "topk":
        kwargs["k"] = cfg.k_for(sparsity)
    else:
        kwargs["l1_coefficient"] = cfg.l1_coefficient
    torch.manual_seed(seed)  # identical initialisation for SAE and WSAE (Γ adds no random draw)
    sae = sae_cls(cfg_cls(**kwargs))
    if weighted:
        sae.set_gamma(gamma, weighting="uniform")
    n_samples = cfg.n_steps * cfg.batch_size
    trainer_cfg = SAETrainerConfig(
        n_checkpoints=0,
        checkpoint_path=None,
        save_final_checkpoint=False,
        total_training_samples=n_samples,
        device="cpu",
        autocast=False,
        lr=cfg.lr,
        lr_end=cfg.lr if cfg.lr_decay_fraction == 0 else 0.0,
        lr_scheduler_name="constant",
        lr_warm_up_steps=0,
        adam_beta1=0.9,
        adam_beta2=0.999,
        lr_decay_steps=int(cfg.lr_decay_fraction * cfg.n_steps),
        n_restart_cycles=1,
        train_batch_size_samples=cfg.batch_size,
        dead_feature_window=cfg.dead_feature_window,
        feature_sampling_window=2000,
        logger=LoggingConfig(log_to_wandb=False, eval_every_n_wandb_logs=2**31 - 1),
        n_batches_for_norm_estimate=100,
    )
    trainer = SAETrainer(
        cfg=trainer_cfg,
        sae=sae,
        data_provider=_CyclingBatches(x_p_train, cfg.batch_size, seed),
        save_checkpoint_fn=lambda checkpoint_path: None,
    )
    trainer.fit()
    return sae


def run_toy_benchmark(cfg: ToyBenchmarkConfig, progress: bool = True) -> ToyBenchmarkResult:
    """Run the sweep: for each S and seed, train the SAE and every WSAE on the same data, evaluate all."""
    result = ToyBenchmarkResult(config=cfg)
    corr: dict[str, list[float]] = {p: [] for p in cfg.proxies}
    start = time.perf_counter()
    jobs = [(s, seed) for s in cfg.sparsities for seed in cfg.seeds]
    bar = tqdm(total=len(jobs) * len(cfg.model_names()), desc="toy benchmark", disable=not progress)
    for sparsity, seed in jobs:
        w_p = cfg.make_wp(seed)
        toy = ToyModel(w_p, sparsity, cfg.magnitude)
        _, x_p_train = toy.sample(cfg.n_train, seed=2 * seed)
        x_eval, x_p_eval = toy.sample(cfg.n_eval, seed=2 * seed + 1)
        poly = polysemanticity(w_p).float()
        plan: list[tuple[str, float, str, torch.Tensor | None]] = [("SAE", 0.0, "none", None)]
        for proxy in cfg.proxies:
            corr[proxy].append(pearson(gamma_from_proxy(proxy, x_p_train, w_p, 1.0), poly))
            plan += [
                (f"WSAE(a={a:g},{proxy})", a, proxy,
                 gamma_from_proxy(proxy, x_p_train, w_p, a, allow_negative_alpha=cfg.allow_negative_alpha))
                for a in cfg.alphas
            ]
        for name, alpha, proxy, gamma in plan:
            t0 = time.perf_counter()
            sae = train_toy_sae_on_data(cfg, x_p_train, sparsity, seed, gamma)
            metrics = evaluate_ground_truth(sae, w_p, x_eval, x_p_eval)
            result.runs.append(
                ToyRun(
                    sparsity=sparsity,
                    seed=seed,
                    model=name,
                    alpha=alpha,
                    proxy=proxy,
                    k=cfg.k_for(sparsity) if cfg.architecture == "topk" else None,
                    metrics=metrics,
                    gamma_polysemanticity_corr=None if gamma is None else pearson(gamma, poly),
                    seconds=time.perf_counter() - t0,
                )
            )
            bar.update(1)
    bar.close()
    result.gamma_polysemanticity_corr = {
        p: float(torch.tensor(v).nanmean()) for p, v in corr.items() if v
    }
    result.seconds = time.perf_counter() - start
    return result


__all__ = [
    "ARCHITECTURE_CHOICES",
    "DEFAULT_SPARSITIES",
    "GEOMETRY_CHOICES",
    "PROXY_CHOICES",
    "TABLE_COLUMNS",
    "ToyBenchmarkConfig",
    "ToyBenchmarkResult",
    "ToyRun",
    "gamma_from_proxy",
    "pearson",
    "run_toy_benchmark",
    "train_toy_sae_on_data",
]
