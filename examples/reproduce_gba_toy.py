"""Reproduce the imbalanced sparse-coding toy of arXiv 2506.14002 (GBA vs TopK vs BA).

X = H V, n = 128 unit-norm Gaussian features in d = 42, half of every batch 3-sparse and half 20-sparse
(:mod:`wsae_lens.diagnostics.sparse_coding_toy`). Every SAE is trained by SAELens's own ``SAETrainer``
with the same width, steps, batch and learning rate; FRR(τ) (``wsae_lens.diagnostics.recovery_rate``) of
the decoder rows against V is printed as mean ± std over seeds next to the published numbers.

    python examples/reproduce_gba_toy.py                # 3 seeds, the defaults below
    python examples/reproduce_gba_toy.py --seeds 0 --steps 1000 --update-interval 10   # a quick look
    python examples/reproduce_gba_toy.py --only GBA --gba-option tied_weights=false   # a GBA variant
    python examples/reproduce_gba_toy.py --only GBA --start-at-truth   # does training keep the true V?
    python examples/reproduce_gba_toy.py --sparsities 3 --d-sae 512 --steps 1000 --lr-decay-steps 300 \
        --gba-option freq_high=0.02 --gba-option tied_weights=false   # the 3-sparse toy (see docs/gba.md)

"GBA" is the paper's configuration (tied, K = 10 targets 0.1 → 1e-3; ``--gba-option`` changes it);
"GBA fitted range" is untied (its own encoder) with K = 10 targets 0.1 → 0.05, from just above the toy's
per-feature firing rate (≈ 0.09) down to about half of it.

Choices: width 2,048 (16n), batch 512, 2,000 steps, Adam lr 1e-2 decayed linearly to 0 over the last 600
steps (SAELens's ``lr_decay_steps``), T = 10 (the paper's 50 gives only 40 bias updates in this budget);
single-group BA targets p = 0.01 (the geometric middle of GBA's range); the "wrong range" GBA uses targets
0.5 → 0.1, all above the toy's per-feature firing rate (≈ 0.09), so no group is pushed to be selective.
Results depend on float rounding (e.g. the thread count) at the level of a few features.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from sae_lens import TopKTrainingSAEConfig
from sae_lens.saes.sae import TrainingSAE, TrainingSAEConfig

import wsae_lens  # noqa: F401  (registers "gba")
from wsae_lens import GBATrainingSAEConfig
from wsae_lens.diagnostics.ground_truth import best_cosine_per_feature
from wsae_lens.diagnostics.sparse_coding_toy import SparseCodingToy, make_toy_sae, toy_recovery, train_on_toy

IMBALANCED = (3, 20)
PUBLISHED = {  # FRR(0.8), FRR(0.9) in %, arXiv 2506.14002 (imbalanced toy)
    "GBA": (100.0, 100.0),
    "GBA fitted range": (None, None),
    "TopK k=20": (100.0, 98.4),
    "TopK k=30": (98.4, 24.2),
    "TopK k=50": (94.5, 23.4),
    "BA (1 group)": (None, None),
    "GBA wrong range": (38.3, 3.9),
}


def model_configs(
    d_in: int, d_sae: int, update_interval: int = 50, gba_options: dict[str, Any] | None = None
) -> dict[str, TrainingSAEConfig]:
    """The compared SAEs, all of width ``d_sae``; the (G)BA ones update their biases every ``update_interval``;
    ``gba_options`` are extra :class:`GBATrainingSAEConfig` fields of the "GBA" model (e.g. ``n_groups``)."""
    t = update_interval
    return {
        "GBA": GBATrainingSAEConfig(d_in=d_in, d_sae=d_sae, update_interval=t, **(gba_options or {})),
        "GBA fitted range": GBATrainingSAEConfig(
            d_in=d_in, d_sae=d_sae, update_interval=t, tied_weights=False, freq_low=0.05
        ),
        "TopK k=20": TopKTrainingSAEConfig(d_in=d_in, d_sae=d_sae, k=20),
        "TopK k=30": TopKTrainingSAEConfig(d_in=d_in, d_sae=d_sae, k=30),
        "TopK k=50": TopKTrainingSAEConfig(d_in=d_in, d_sae=d_sae, k=50),
        "BA (1 group)": GBATrainingSAEConfig(
            d_in=d_in, d_sae=d_sae, n_groups=1, freq_high=0.01, freq_low=0.01, update_interval=t
        ),
        "GBA wrong range": GBATrainingSAEConfig(
            d_in=d_in, d_sae=d_sae, freq_high=0.5, freq_low=0.1, update_interval=t
        ),
    }


def run(
    seeds: list[int],
    steps: int,
    batch_size: int,
    lr: float,
    d_sae: int,
    update_interval: int,
    only: list[str] | None,
    lr_decay_steps: int = 0,
    gba_options: dict[str, Any] | None = None,
    start_at_truth: bool = False,
    sparsities: tuple[int, ...] = IMBALANCED,
) -> dict[str, Any]:
    """Train every model on every seed's toy (half of each batch per entry of ``sparsities``, (3, 20) the
    paper's imbalanced toy); returns {model: {tau: [FRR per seed]}}.

    ``start_at_truth`` (a diagnostic) sets the first n decoder rows (and encoder columns) of every model
    to the true features V before training, so the FRR shows whether training keeps or leaves them.
    """
    results: dict[str, dict[float, list[float]]] = {}
    for seed in seeds:
        toy = SparseCodingToy(n_features=128, d=42, sparsities=sparsities, seed=seed)
        for name, cfg in model_configs(toy.d, d_sae, update_interval, gba_options).items():
            if only and name not in only:
                continue
            start = time.perf_counter()
            sae = make_toy_sae(cfg, seed)
            if start_at_truth:
                set_first_directions(sae, toy.true_directions)
            sae = train_on_toy(sae, toy, steps, batch_size, lr, data_seed=seed, lr_decay_steps=lr_decay_steps)
            frr = toy_recovery(sae, toy)
            for tau, value in frr.items():
                results.setdefault(name, {}).setdefault(tau, []).append(value)
            worst = best_cosine_per_feature(sae.W_dec.detach(), toy.true_directions).min().item()
            print(
                f"seed {seed} {name:<18} FRR(0.8) {frr[0.8]:.3f}  FRR(0.9) {frr[0.9]:.3f}"
                f"  worst feature's best cosine {worst:.3f}  ({time.perf_counter() - start:.0f}s)",
                flush=True,
            )
    return results


@torch.no_grad()
def set_first_directions(sae: TrainingSAE[Any], directions: torch.Tensor) -> None:
    """Overwrite the first len(directions) decoder rows (and encoder columns, when the SAE has its own
    ``W_enc``) with ``directions`` [n, d_in]; the rest of the SAE keeps its initialisation."""
    n = directions.shape[0]
    sae.W_dec.data[:n] = directions.to(sae.W_dec.dtype) * sae.W_dec.data[:n].norm(dim=1, keepdim=True)
    if isinstance(getattr(sae, "W_enc", None), torch.nn.Parameter):
        sae.W_enc.data[:, :n] = directions.T.to(sae.W_enc.dtype) * sae.W_enc.data[:, :n].norm(dim=0, keepdim=True)


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """``["n_groups=20", "tied_weights=false"]`` → ``{"n_groups": 20, "tied_weights": False}`` (JSON values,
    bare words as strings)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--gba-option expects FIELD=VALUE (e.g. n_groups=20), got {pair!r}.")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def _mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):5.1f} ± {100 * std:4.1f}"


def print_table(results: dict[str, dict[float, list[float]]], sparsities: tuple[int, ...] = IMBALANCED) -> None:
    """Mean ± std per model; the published numbers only beside the paper's imbalanced toy."""
    print(f"\n{'model':<18}{'FRR(0.8) %':>16}{'FRR(0.9) %':>16}{'published 0.8/0.9':>20}")
    for name, by_tau in results.items():
        published = PUBLISHED.get(name, (None, None)) if sparsities == IMBALANCED else (None, None)
        pub = "—" if published[0] is None else f"{published[0]:.1f} / {published[1]:.1f}"
        print(f"{name:<18}{_mean_std(by_tau[0.8]):>16}{_mean_std(by_tau[0.9]):>16}{pub:>20}")


def plot(results: dict[str, dict[float, list[float]]], path: Path, sparsities: tuple[int, ...] = IMBALANCED) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    width = 0.38
    for offset, tau in ((-width / 2, 0.8), (width / 2, 0.9)):
        means = [100 * statistics.mean(results[n][tau]) for n in names]
        stds = [100 * statistics.stdev(results[n][tau]) if len(results[n][tau]) > 1 else 0 for n in names]
        ax.bar([i + offset for i in range(len(names))], means, width, yerr=stds, label=f"FRR({tau})", capsize=3)
    ax.set_xticks(range(len(names)), names, rotation=15)
    ax.set_ylabel("features recovered (%)")
    ax.set_ylim(0, 105)
    ax.legend()
    kind = "imbalanced toy" if sparsities == IMBALANCED else "toy"
    ax.set_title(f"{kind} (n=128, d=42, s∈{{{','.join(map(str, sparsities))}}}), mean ± std over seeds")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--sparsities", type=int, nargs="+", default=list(IMBALANCED),
        help="non-zeros per sample, batches split evenly among them (default: the paper's imbalanced 3 20)",
    )
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--d-sae", type=int, default=2048)
    parser.add_argument("--update-interval", type=int, default=10, help="T of the (G)BA models (paper: 50)")
    parser.add_argument("--lr-decay-steps", type=int, default=600, help="linear lr decay to 0 over the last steps")
    parser.add_argument("--only", nargs="*", default=None, help="model names to run (default: all)")
    parser.add_argument(
        "--gba-option", action="append", default=[], metavar="FIELD=VALUE",
        help="extra GBATrainingSAEConfig field of the GBA model, repeatable (e.g. n_groups=20 tied_weights=false)",
    )
    parser.add_argument(
        "--start-at-truth", action="store_true",
        help="diagnostic: start every model with its first 128 directions at the true features",
    )
    parser.add_argument("--plot", default="docs/gba_toy.png", help='PNG path ("" for none)')
    parser.add_argument("--json", type=Path, default=None, help="also write the raw FRRs here")
    args = parser.parse_args()
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    sparsities = tuple(args.sparsities)
    if any(not 1 <= s <= 128 for s in sparsities):
        parser.error(f"--sparsities: each must lie in [1, 128] (the toy's n_features), got {args.sparsities}.")
    models = list(model_configs(42, 256))
    if args.only and (unknown := sorted(set(args.only) - set(models))):
        parser.error(f"--only: unknown model(s) {unknown}; the models are {models}.")
    gba_options = parse_options(args.gba_option)
    known = {field.name for field in dataclasses.fields(GBATrainingSAEConfig)}
    if unknown := sorted(set(gba_options) - known):
        parser.error(f"--gba-option: {unknown} not GBATrainingSAEConfig fields (e.g. n_groups, tied_weights, freq_high).")
    results = run(
        args.seeds, args.steps, args.batch_size, args.lr, args.d_sae, args.update_interval, args.only,
        args.lr_decay_steps, gba_options, args.start_at_truth, sparsities,
    )
    print_table(results, sparsities)
    if args.json:
        args.json.write_text(json.dumps({n: {str(t): v for t, v in r.items()} for n, r in results.items()}, indent=1))
    if args.plot:
        plot(results, Path(args.plot), sparsities)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
