"""Reproduce the WSAE paper's toy comparison (arXiv 2506.15963): SAE vs WSAE across feature sparsity S.

    python examples/reproduce_wsae_toy.py            # the numbers in docs/identifiability.md and docs/wsae_toy_*.png
    python examples/reproduce_wsae_toy.py --quick    # a 1-minute smoke run (no files written to docs/)

Runs :func:`wsae_lens.diagnostics.toy_benchmark.run_toy_benchmark` (the same sweep as
``wsae-lens toy-benchmark``): the heterogeneous toy (n = 200, n_p = 20; 10 monosemantic dimensions, 190
features in superposition in the other 10), U[0, 1] magnitudes, SAELens TopK (untied, biases,
k = n(1 − S)) vs weighted_topk with variance Γ (α = 1, 0.5), 3 seeds, identical data and init.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import wsae_lens  # noqa: F401  (registers the architectures)
from wsae_lens.diagnostics.toy_benchmark import ToyBenchmarkConfig, run_toy_benchmark

DOCS = Path(__file__).resolve().parents[1] / "docs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run; plots go to /tmp")
    parser.add_argument("--geometry", default="heterogeneous", choices=["heterogeneous", "random", "digon"])
    parser.add_argument("--proxies", default="variance", help="comma-separated: variance, oracle")
    args = parser.parse_args()
    torch.set_num_threads(1)  # tiny matmuls (20 × 200): threading costs more than it gains, badly so under load
    proxies = tuple(p for p in args.proxies.split(",") if p)
    if args.quick:
        cfg = ToyBenchmarkConfig(
            geometry=args.geometry, sparsities=(0.5, 0.99), seeds=(0,), n_steps=100, proxies=proxies
        )
        out_dir, prefix = Path("/tmp"), "wsae_toy_quick"
    else:
        cfg = ToyBenchmarkConfig(geometry=args.geometry, proxies=proxies)  # the defaults are the documented run
        out_dir = DOCS
        prefix = "wsae_toy" if args.geometry == "heterogeneous" and proxies == ("variance",) else (
            f"wsae_toy_{args.geometry}_{'_'.join(proxies)}"
        )
    result = run_toy_benchmark(cfg)
    print(result.format_table())
    for path in result.plot(out_dir, prefix=prefix):
        print(f"wrote {path}")
    print(f"wrote {result.save_json(out_dir / f'{prefix}_results.json')}")
    print(f"total {result.seconds:.0f} s")


if __name__ == "__main__":
    main()
