"""Top-AFA vs TopK over a k sweep (arXiv 2503.24277) on the embedded SmolLM2-135M, same data and budget.

Residual stream after the middle block (``blocks.15.hook_resid_post``, d_in 576) of the embedded
SmolLM2-135M over the embedded corpus (offline-assets.md). Every SAE is an arm of one comparison
(:mod:`wsae_lens.pipeline.comparison`): activations cached once, the token filter (special tokens,
outliers above 10× the median norm) applied to training and evaluation, the same seed, initial weights,
epochs, batch order and lr. Prints the comparison table (explained variance, dead latents, CE-loss
score, L0), the L0 distribution and NMSE per SAE, then the AFA (ZF) summary of each SAE on the held-out
kept tokens, and writes ZF plots to docs/. Run from the repository root:

    .venv/bin/python examples/reproduce_topafa.py                     # about 40 minutes on a 2-core CPU
    .venv/bin/python examples/reproduce_topafa.py --ks 32 64 --afa-coefficients 0.03125 --epochs 4
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from sae_lens import SAE

from wsae_lens.diagnostics.afa import afa_token_metrics, zf_plot
from wsae_lens.pipeline.comparison import Arm, ComparisonConfig, run_comparison
from wsae_lens.pipeline.report import comparison_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = ComparisonConfig()
    parser.add_argument("--training-tokens", type=int, default=defaults.training_tokens, help="cached once, read by every SAE")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--expansion-factor", type=int, default=defaults.expansion_factor)
    parser.add_argument("--ks", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--afa-coefficients", type=float, nargs="+", default=[1 / 32, 1 / 16])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plots", type=Path, default=Path("docs"))
    args = parser.parse_args()

    # TopK arms: SAELens's TopK loss (Γ = 1) on the sparse training path, as in the demo
    arms = [Arm(f"topk_k{k}", "weighted_topk", {"k": k, "weighting": "uniform"}) for k in args.ks]
    arms += [Arm(f"topafa_lambda1-{round(1 / c)}", "topafa", {"afa_coefficient": c}) for c in args.afa_coefficients]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = ComparisonConfig(training_tokens=args.training_tokens, epochs=args.epochs, seed=args.seed,
                               expansion_factor=args.expansion_factor, arms=arms, output_dir=tmp)
        result = run_comparison(cfg)
        held_out = result.held_out.activations
        rows = []
        for arm in arms:
            sae = SAE.load_from_disk(result.sae_paths[arm.name])
            metrics = afa_token_metrics(sae, held_out)
            rows.append((arm.name, metrics))
            if arm.architecture == "topafa" or arm.name == "topk_k32":
                zf_plot(metrics, args.plots / f"zf_smollm2_{arm.name}.png",
                        title=f"{arm.name} (SmolLM2-135M, held-out kept tokens)")

    print(f"\nSmolLM2-135M {result.hook_name}, d_in {result.d_in}, d_sae {result.d_in * cfg.expansion_factor}, "
          f"{result.kept_tokens:,} kept training tokens × {cfg.epochs} epochs, {held_out.shape[0]:,} held-out tokens, "
          f"seed {cfg.seed}; token filter dropped {result.filtered}")
    print(comparison_table(result))
    print(f"\n{'SAE':<22}{'NMSE':>9}{'L0 mean':>9}{'L0 median':>11}{'L0 q95':>9}")
    for name, metrics in rows:
        total_nmse = (metrics.nmse * metrics.dense_norm.square()).sum() / metrics.dense_norm.square().sum()
        l0 = metrics.l0.float()
        print(f"{name:<22}{total_nmse.item():>9.4f}{l0.mean().item():>9.1f}{l0.median().item():>11.0f}"
              f"{l0.quantile(0.95).item():>9.0f}")
    print("(NMSE = Σ‖z − ẑ‖² / Σ‖z‖² over held-out kept tokens)\n")
    print(f"{'SAE':<22}{'median ‖f̃‖/‖z‖':>17}{'q05':>8}{'q95':>8}{'over':>8}{'under':>8}{'med ε_LBO':>11}")
    for name, metrics in rows:
        s = metrics.summary()
        print(f"{name:<22}{s.median_ratio:>17.3f}{s.ratio_quantiles[0.05]:>8.3f}{s.ratio_quantiles[0.95]:>8.3f}"
              f"{s.share_over_activated:>8.1%}{s.share_under_activated:>8.1%}{s.median_eps_lbo:>11.4f}")
    print(f"\nZF plots written to {args.plots}/zf_smollm2_*.png")


if __name__ == "__main__":
    main()
