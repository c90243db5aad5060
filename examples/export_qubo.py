"""Build a QUBO, save it in every writable format, load each file back and compare.

python examples/export_qubo.py [OUT_DIR]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

import ising_qubo
from ising_qubo import io


def main() -> None:
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    # A small selection problem: reward on the diagonal, redundancy penalties off it,
    # and "keep exactly 4 of 10" as a quadratic penalty.
    Q = np.triu(np.abs(rng.normal(size=(10, 10))), 1) - np.diag(rng.uniform(1, 2, 10))
    labels = [f"conv1:{c}" for c in range(10)]
    bqm = ising_qubo.with_cardinality(ising_qubo.from_qubo_matrix(Q, labels=labels), 4)

    for fmt in io.formats():
        if not fmt.can_write:
            continue
        path = io.save(bqm, out_dir / f"problem{fmt.suffixes[0]}")
        again = io.load(path)
        same = again == bqm
        print(
            f"{fmt.name:<5} {path}  {path.stat().st_size:>6} bytes  "
            f"round trip {'exact' if same else 'NOT exact'}"
        )
        if not same:
            raise SystemExit(f"round trip through {fmt.name} changed the problem")

    best = ising_qubo.solve(bqm, "cpsat").first.sample
    kept = [v for v in labels if best[v] == 1]
    print(f"\nCP-SAT keeps {len(kept)} of {len(labels)}: {', '.join(kept)}")


if __name__ == "__main__":
    main()
