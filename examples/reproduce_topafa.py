"""Top-AFA vs TopK over a k sweep (arXiv 2503.24277) on the embedded SmolLM2-135M, same data and budget.

Residual stream after the middle block (``blocks.15.hook_resid_post``, d_in 576) of the embedded
SmolLM2-135M over the embedded corpus (offline-assets.md). Activations are cached once with SAELens's
``CacheActivationsRunner`` and every SAE is trained from that cache by SAELens's runner with the same
seed, initial weights, token budget, batch order and lr (:mod:`wsae_lens.pipeline.comparison`). Evaluation
is on held-out rows (special tokens left out). Prints NMSE and L0 per configuration, then the AFA (ZF)
summary of each SAE, and writes ZF plots to docs/. Run from the repository root:

    .venv/bin/python examples/reproduce_topafa.py      # about 15 minutes on a 2-core CPU
    .venv/bin/python examples/reproduce_topafa.py --training-tokens 20480 --ks 32   # a quick look
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from sae_lens import SAE

from wsae_lens.diagnostics.afa import afa_token_metrics, zf_plot
from wsae_lens.pipeline.comparison import (
    ComparisonConfig,
    cache_training_rows,
    hook_activation_batches,
    runner_config_dict,
    special_token_ids,
    train_from_cache,
    training_rows,
)
from wsae_lens.pipeline.loading import load_language_model, load_text_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--training-tokens", type=int, default=204_800, help="cached once, read by every SAE")
    parser.add_argument("--expansion-factor", type=int, default=8)
    parser.add_argument("--ks", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--afa-coefficients", type=float, nargs="+", default=[1 / 32, 1 / 16])
    parser.add_argument("--held-out-rows", type=int, default=32, help="rows of 128 tokens for evaluation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plots", type=Path, default=Path("docs"))
    args = parser.parse_args()

    cfg = ComparisonConfig(training_tokens=args.training_tokens, expansion_factor=args.expansion_factor, seed=args.seed)
    model = load_language_model(cfg.model_name)
    layer = model.cfg.n_layers // 2
    hook_name, d_in = f"blocks.{layer}.hook_resid_post", model.cfg.d_model
    dataset = load_text_dataset(cfg.dataset_path, model.tokenizer, context_size=cfg.context_size, streaming=False,
                                seed=cfg.seed)
    cached_tokens, train_rows = training_rows(cfg, dataset, args.held_out_rows)
    held_out_rows = dataset.select(range(len(dataset) - args.held_out_rows, len(dataset)))
    special = special_token_ids(model.tokenizer)
    held_out = torch.cat([acts for acts, _ in hook_activation_batches(model, held_out_rows, hook_name, layer, special)])

    configurations = [(f"topk k={k}", "topk", {"k": k}) for k in args.ks]
    configurations += [
        (f"topafa λ=1/{round(1 / c)}", "topafa", {"afa_coefficient": c}) for c in args.afa_coefficients
    ]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = Path(tmp) / "activations"
        cache_training_rows(cfg, model, train_rows, hook_name, d_in, cached_tokens, cache_dir)
        for name, architecture, fields in configurations:
            path = Path(tmp) / "saes" / name.replace(" ", "_")
            cfg_dict = runner_config_dict(cfg, architecture, hook_name, d_in, cache_dir, path, cached_tokens)
            cfg_dict["sae"].update(fields)  # k for TopK, λ_AFA for top-AFA
            train_from_cache(cfg_dict, model, train_rows, cfg.seed)
            sae = SAE.load_from_disk(path)
            sae.eval()
            metrics = afa_token_metrics(sae, held_out)
            rows.append((name, metrics))
            if architecture == "topafa" or name == "topk k=32":
                slug = name.replace(" ", "_").replace("=", "").replace("λ", "lambda").replace("/", "-")
                zf_plot(metrics, args.plots / f"zf_smollm2_{slug}.png", title=f"{name} (SmolLM2-135M, held-out tokens)")

    print(f"\nSmolLM2-135M {hook_name}, d_in {d_in}, d_sae {d_in * cfg.expansion_factor}, {cached_tokens} training "
          f"tokens, {held_out.shape[0]} held-out tokens, seed {cfg.seed}")
    print(f"{'configuration':<18}{'NMSE':>9}{'L0 mean':>9}{'L0 median':>11}")
    for name, metrics in rows:
        total_nmse = (metrics.nmse * metrics.dense_norm.square()).sum() / metrics.dense_norm.square().sum()
        print(f"{name:<18}{total_nmse.item():>9.4f}{metrics.l0.float().mean().item():>9.1f}"
              f"{metrics.l0.float().median().item():>11.0f}")
    print("(NMSE = Σ‖z − ẑ‖² / Σ‖z‖² over held-out tokens)\n")
    print(f"{'configuration':<18}{'median ‖f̃‖/‖z‖':>17}{'q05':>8}{'q95':>8}{'over':>8}{'under':>8}{'med ε_LBO':>11}")
    for name, metrics in rows:
        s = metrics.summary()
        print(f"{name:<18}{s.median_ratio:>17.3f}{s.ratio_quantiles[0.05]:>8.3f}{s.ratio_quantiles[0.95]:>8.3f}"
              f"{s.share_over_activated:>8.1%}{s.share_under_activated:>8.1%}{s.median_eps_lbo:>11.4f}")
    print(f"\nZF plots written to {args.plots}/zf_smollm2_*.png")


if __name__ == "__main__":
    main()
