"""Activation caching on the embedded SmolLM2-135M: tokens/s of SAELens's ``CacheActivationsRunner`` at the old
demo setting (8 rows of 128 per model batch) and at the new one (32 rows), against the bare forward pass and
the fp32 compute bound of this CPU, in one run on the same rows and hook.

The forward to ``blocks.15.hook_resid_post`` costs 2 × (parameters of blocks 0-15) FLOPs per token plus
attention; the script measures this machine's fp32 matmul throughput and prints the share of it the forward
reaches, which bounds how much faster any fp32 implementation can cache.

    .venv/bin/python benchmarks/bench_caching.py            # about 2 minutes
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from wsae_lens.pipeline.caching import cache_activations, cache_config
from wsae_lens.pipeline.embedded import EMBEDDED_DATASET_NAME, EMBEDDED_MODEL_NAME, load_embedded_dataset, load_embedded_model

HOOK = "blocks.15.hook_resid_post"


def matmul_gflops(seconds: float = 3.0) -> float:
    """fp32 GFLOP/s of a [4096, 576] × [576, 1536] product (the MLP's shape) on this machine."""
    a, w = torch.randn(4096, 576), torch.randn(576, 1536)
    a @ w
    start, calls = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        a @ w
        calls += 1
    return calls * 2 * 4096 * 576 * 1536 / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=32_768, help="tokens cached per configuration")
    args = parser.parse_args()
    model = load_embedded_model()
    rows = load_embedded_dataset(model.tokenizer, context_size=128).select(range(args.tokens // 128))
    layer = 15
    block_params = sum(p.numel() for name, p in model.named_parameters() if name.startswith("blocks.")
                       and int(name.split(".")[1]) <= layer)
    flops_per_token = 2 * block_params

    results: dict[str, float] = {}
    with torch.no_grad():
        tokens = rows[:]["input_ids"]
        model.run_with_cache(tokens[:32], names_filter=[HOOK], stop_at_layer=layer + 1)  # warm-up
        start = time.perf_counter()
        for i in range(0, tokens.shape[0], 32):
            model.run_with_cache(tokens[i : i + 32], names_filter=[HOOK], stop_at_layer=layer + 1)
        results["bare forward, 32 rows"] = args.tokens / (time.perf_counter() - start)
    for batch in (8, 32):
        directory = Path(tempfile.mkdtemp())
        cfg = cache_config(model_name=EMBEDDED_MODEL_NAME, dataset_path=EMBEDDED_DATASET_NAME, hook_name=HOOK,
                           d_in=576, tokens=args.tokens, context_size=128, output_dir=directory / "cache",
                           model_batch_size=batch, batches_per_shard=args.tokens // (batch * 128) // 4)
        start = time.perf_counter()
        cache_activations(cfg, model=model, dataset=rows)
        results[f"SAELens CacheActivationsRunner, {batch} rows"] = args.tokens / (time.perf_counter() - start)
        shutil.rmtree(directory)
    peak = matmul_gflops()
    baseline = results["SAELens CacheActivationsRunner, 8 rows"]
    print(f"SmolLM2-135M to {HOOK}: {flops_per_token / 1e6:.0f} MFLOP/token (blocks 0-{layer}); "
          f"fp32 matmul on this machine {peak:.0f} GFLOP/s; {args.tokens:,} tokens per configuration")
    print(f"{'configuration':<44}{'tokens/s':>10}{'ratio':>8}{'share of fp32 peak':>20}")
    for name, rate in results.items():
        print(f"{name:<44}{rate:>10.0f}{rate / baseline:>8.2f}{rate * flops_per_token / 1e9 / peak:>20.0%}")


if __name__ == "__main__":
    main()
