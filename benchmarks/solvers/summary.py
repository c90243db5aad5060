"""The summary across instances of one or more `ising-qubo bench` results.

    python benchmarks/solvers/summary.py RESULTS.json|DIR [...] --out DIR [--target F]

Pools the runs of the given ``results.json`` files (or folders holding one) and writes
``summary.csv``, ``summary.tex`` and ``profile.png`` (performance profile and
time-to-target ECDF; skipped with a warning without matplotlib) into ``--out``: see
:mod:`ising_qubo.bench.summary` for the definitions. Files may hold different instances,
solvers or seeds; the same (instance, solver, seed) twice is an error. Bad input is a
one-line error and exit status 1.
"""

from __future__ import annotations

import argparse
import sys

from ising_qubo.bench.summary import summarize_results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", help="results.json files or their folders")
    parser.add_argument("--out", required=True, help="folder for the summary files")
    parser.add_argument(
        "--target",
        type=float,
        default=None,
        help="target fraction of the reference (default: the highest all files recorded)",
    )
    parser.add_argument("--no-plot", action="store_true", help="skip profile.png")
    args = parser.parse_args(argv)
    try:
        written = summarize_results(
            args.results, args.out, fraction=args.target, plot=not args.no_plot
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
