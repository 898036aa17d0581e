"""Paper-scale SAE vs WSAE on Pythia-160M (arXiv 2506.15963): 12 layers, TopK k = 32, 32× (24,576
latents), α ∈ {0.5, 1}. Needs the Hugging Face Hub (model and a pre-tokenised Pile sample).

For each layer and α this runs :func:`wsae_lens.pipeline.comparison.run_comparison` (cache the
residual stream with SAELens's CacheActivationsRunner, estimate Γ = Var^α, train SAELens topk and
weighted_topk from the same cache, evaluate with run_evals + latent semantic consistency) and prints
one table row per run; every run's report folder lands under --output-dir.

    python examples/pythia160m_paper.py --layers 0-11 --alphas 0.5 1 --training-tokens 20000000

Cost (estimate, see docs/real-models.md): the cache takes training_tokens × 768 × 4 bytes (61 GB at 20M tokens,
deleted after each run unless --keep-activations).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from wsae_lens.pipeline.comparison import ComparisonConfig, run_comparison
from wsae_lens.pipeline.demo import METRICS_SHOWN, write_report

PILE_TOKENISED = "apollo-research/monology-pile-uncopyrighted-tokenizer-EleutherAI-gpt-neox-20b"


def parse_layers(text: str) -> list[int]:
    if "-" in text:
        first, last = text.split("-")
        return list(range(int(first), int(last) + 1))
    return [int(x) for x in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", default="0-11", help="e.g. 0-11 or 3,8")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.5, 1.0])
    parser.add_argument("--training-tokens", type=int, default=20_000_000)
    parser.add_argument("--context-size", type=int, default=128)
    parser.add_argument("--dataset-path", default=PILE_TOKENISED)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--output-dir", default="pythia160m_wsae")
    parser.add_argument("--keep-activations", action="store_true")
    args = parser.parse_args()

    header = ["layer", "α", "architecture"] + [label for _, label, _ in METRICS_SHOWN]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for layer in parse_layers(args.layers):
        for alpha in args.alphas:
            cfg = ComparisonConfig(
                model_name="pythia-160m", dataset_path=args.dataset_path, layer=layer, context_size=args.context_size,
                training_tokens=args.training_tokens, expansion_factor=32, k=32, alpha=alpha, lr=3e-4,
                train_batch_size_tokens=4096, model_batch_size=32, eval_batch_size_prompts=32, n_eval_batches=20,
                consistency_tokens=1_000_000, device=args.device, keep_activations=args.keep_activations,
                output_dir=str(Path(args.output_dir) / f"layer{layer}_alpha{alpha:g}"),
            )
            result = run_comparison(cfg)
            write_report(result)
            for name, metrics in result.metrics.items():
                row = [str(layer), f"{alpha:g}", name] + [f"{metrics[key]:.4g}" for key, _, _ in METRICS_SHOWN]
                print("| " + " | ".join(row) + " |", flush=True)
            (Path(cfg.output_dir) / "summary.json").write_text(json.dumps(result.metrics, indent=2))


if __name__ == "__main__":
    main()
