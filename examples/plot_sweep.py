"""Merge sweep reports into one table and one Pareto plot (the figure in docs/real-models.md).

    python examples/plot_sweep.py sweep_report/sweep.json sweep_k_report/sweep.json -o docs/sweep_pareto.png

Each ``sweep.json`` is written by ``wsae-lens sweep``; settings of later files are added to the first's (the
uniform SAE, present in every sweep, is taken from the first). Prints the merged Markdown table.
"""

from __future__ import annotations

import argparse
import json

from wsae_lens.pipeline.sweep import plot_pareto, sweep_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", help="sweep.json files written by `wsae-lens sweep`")
    parser.add_argument("-o", "--output", default="sweep_pareto.png")
    args = parser.parse_args()
    summary: dict = {}
    for path in args.reports:
        with open(path) as f:
            for setting, metrics in json.load(f)["summary"].items():
                summary.setdefault(setting, metrics)
    print(sweep_table(summary))
    plot_pareto(summary, args.output)
    print(f"Wrote {args.output}")


if __name__ == "__main__":
    main()
