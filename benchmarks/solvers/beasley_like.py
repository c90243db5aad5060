"""Write OR-Library-style dense QUBO files larger than the shared set (bqp50-bqp250).

    python benchmarks/solvers/beasley_like.py 1000 2500 --out /tmp/beasley-like
    python benchmarks/solvers/beasley_like.py 500 1000 1500 --seeds 1 2 3 --out DIR

Beasley (1998) drew the bqp instances with density 10 % and integer entries uniform in
[-100, 100]; this does the same with numpy's generator seeded by n, in the OR-Library file
format (one problem per file; ``ising-qubo bench FILE`` reads it); ``--seeds`` draws
several instances per size. There is no best-known
value for these: the benchmark's reference is the best any solver found in the run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

DENSITY = 0.1
LARGEST = 100


def write_instance(n: int, path: Path, seed: int | None = None) -> int:
    """One n-variable instance at ``path`` (drawn from seed n, or (n, seed)); returns its
    number of nonzero entries."""
    rng = np.random.default_rng(n if seed is None else [n, seed])
    rows, cols = np.triu_indices(n)  # the diagonal is drawn too, as in the OR-Library
    keep = rng.random(len(rows)) < DENSITY
    values = rng.integers(-LARGEST, LARGEST + 1, size=int(keep.sum()))
    rows, cols = rows[keep][values != 0], cols[keep][values != 0]
    values = values[values != 0]
    lines = [" 1", f" {n} {len(values)}"]
    lines += [f" {i + 1} {j + 1} {q}" for i, j, q in zip(rows, cols, values)]
    path.write_text("\n".join(lines) + "\n")
    return len(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sizes", nargs="+", type=int, help="numbers of variables")
    parser.add_argument("--out", type=Path, required=True, help="folder for bqp<n>.txt")
    parser.add_argument(
        "--seeds", type=int, nargs="+", help="instances per size: bqp<n>-s<seed>.txt each"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for n in args.sizes:
        for seed in args.seeds or [None]:
            path = args.out / (f"bqp{n}.txt" if seed is None else f"bqp{n}-s{seed}.txt")
            entries = write_instance(n, path, seed)
            print(f"{path}: {n} variables, {entries} entries")


if __name__ == "__main__":
    main()
