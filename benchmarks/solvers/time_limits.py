"""Does every solver keep its ``time_limit`` on large sparse and dense problems?

    python benchmarks/solvers/time_limits.py --out benchmarks/results/time-limits-<date> \\
        [--time-limit 5] [--solvers neal,tabu,...] [--problems sparse-20000,dense-1120] \\
        [--background-load N]

One fresh process per (problem, solver): it loads a generated problem (seeded, so every
solver sees the same one), calls ``ising_qubo.solve(bqm, solver, time_limit=T)`` and
reports the call's wall time, the solver's own clock where it keeps one, the energy and
its peak resident memory. The parent kills a child that runs past ``3 T + 120`` s and
records that as a hang. Every case is one JSON file in ``--out``: finished cases are
skipped, so the script continues where an interrupted run stopped. Prints a table
(time over the limit) and records the load average before and after each case.
``--background-load N`` runs N busy processes (``ising_qubo.bench.load``) beside every
case, so that a loaded machine can be reproduced; each case records N.

Problems: ``sparse-N`` is a random 6-regular-like max-cut Ising graph of N spins with +-1
couplings (Gset-like); ``dense-N`` a QUBO with all N(N-1)/2 couplings uniform in
[-100, 100] (OR-Library-like).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from ising_qubo.bench.load import BackgroundLoad

DEFAULT_SOLVERS = "neal,tabu,de,cpsat,torch-sa,torch-sb,sb-ref,openjij,greedy"
DEFAULT_PROBLEMS = "sparse-20000,dense-1120,dense-4096"

CHILD = r"""
import json, resource, sys, time
import numpy as np
import dimod
import ising_qubo

kind, n, solver, limit = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
rng = np.random.default_rng(n)
if kind == "sparse":
    edges = 3 * n
    i = rng.integers(0, n, edges)
    j = rng.integers(0, n, edges)
    keep = i != j
    i, j = i[keep], j[keep]
    w = rng.choice([-1.0, 1.0], size=i.size)
    bqm = dimod.BinaryQuadraticModel.from_numpy_vectors(
        np.zeros(n), (i, j, w), 0.0, "SPIN")
else:
    iu, ju = np.triu_indices(n, 1)
    w = rng.uniform(-100, 100, iu.size)
    bqm = dimod.BinaryQuadraticModel.from_numpy_vectors(
        rng.uniform(-100, 100, n), (iu, ju, w), 0.0, "BINARY")
    del iu, ju, w
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
result = ising_qubo.solve(bqm, solver, time_limit=limit, seed=0)
wall = time.perf_counter() - start
info = {k: v for k, v in result.info.items() if isinstance(v, (int, float, str, bool))}
print(json.dumps({
    "wall_s": wall,
    "energy": float(result.first.energy),
    "variables": bqm.num_variables,
    "interactions": bqm.num_interactions,
    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "rss_before_solve_mib": before / 1024,
    "info": info,
}))
"""


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_case(problem: str, solver: str, limit: float) -> dict:
    kind, size = problem.split("-")
    started = time.perf_counter()
    load_before = load_average()
    try:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, kind, size, solver, str(limit)],
            capture_output=True,
            text=True,
            timeout=3 * limit + 120,
        )
    except subprocess.TimeoutExpired:
        return {"status": "hang", "process_s": time.perf_counter() - started}
    row: dict = {"process_s": time.perf_counter() - started, "load_before": load_before}
    row["load_after"] = load_average()
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        row.update(status=f"exit {done.returncode}", error=lines[-1] if lines else "")
        return row
    row.update(status="ok", **json.loads(done.stdout.strip().splitlines()[-1]))
    row["over_limit"] = row["wall_s"] / limit
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="run directory (resumable)")
    parser.add_argument("--time-limit", type=float, default=5.0, help="seconds per solve")
    parser.add_argument("--solvers", default=DEFAULT_SOLVERS, help="comma-separated names")
    parser.add_argument("--problems", default=DEFAULT_PROBLEMS, help="kind-size, comma-separated")
    parser.add_argument(
        "--background-load", type=int, default=0, help="busy processes beside every case"
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = args.out / "machine.json"
    if not meta.exists():
        meta.write_text(
            json.dumps(
                {
                    "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "machine": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                },
                indent=1,
            )
        )
    rows = []
    for problem in args.problems.split(","):
        for solver in args.solvers.split(","):
            path = args.out / f"{problem}-{solver}-{args.time_limit:g}s.json"
            if path.exists():
                row = json.loads(path.read_text())
            else:
                with BackgroundLoad(args.background_load, max_seconds=6 * args.time_limit + 300):
                    row = run_case(problem, solver, args.time_limit)
                row.update(
                    problem=problem,
                    solver=solver,
                    time_limit=args.time_limit,
                    background_load=args.background_load,
                )
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(row, indent=1))
                tmp.replace(path)
            rows.append(row)
            wall = row.get("wall_s")
            print(
                f"{problem:>14} {solver:>9}  {row['status']:>8}  "
                + (f"{wall:7.2f} s  x{row['over_limit']:.2f}  " if wall is not None else " " * 20)
                + f"{row.get('peak_rss_mib', float('nan')):8.0f} MiB  "
                f"load {row.get('load_before')}  {row.get('error', '')}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
