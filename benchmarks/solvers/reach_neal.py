"""Time for each solver to reach neal's median best energy, from a bench results.json.

    python benchmarks/solvers/reach_neal.py benchmarks/results/.../results.json

For each instance: neal's median over seeds of its final best objective is the target
(the worse middle value for an even count, so that a neal run reached it); a solver's time
is the median over seeds of the first solver time its best-so-far reached that target
(infinite when a seed never did). Prints the ratio to neal's own time, and to
``sb-ref``'s (the simulated-bifurcation package) where it ran (the GPU target compares
with both). Numbers are read with :func:`ising_qubo.io.jsonvalues.read_float`, so files
with non-finite values written as "inf"/"nan" (and older ones with null) both read.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections import defaultdict

from ising_qubo.io.jsonvalues import read_float


def first_time(trajectory, target, sense):
    for t, value in trajectory:
        t, value = read_float(t), read_float(value, missing=math.nan)
        if (value >= target - 1e-9 * abs(target)) if sense == "max" else (value <= target):
            return t
    return math.inf


def ratio(time: float, peer_time: float, peer: str) -> str:
    if not math.isfinite(time):
        return "never"
    if not math.isfinite(peer_time):
        return f"{peer} never"
    return f"{time / peer_time:.2f}"


def main(path: str) -> None:
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    sense = {i["name"]: i.get("sense", "max") for i in data["instances"]}
    runs = defaultdict(list)
    for run in data["runs"]:
        best = read_float(run["best_objective"])
        if best is not None and math.isfinite(best):
            runs[(run["instance"], run["solver"])].append(run)
    for instance in sorted({i for i, _ in runs}):
        neal = [read_float(r["best_objective"]) for r in runs.get((instance, "neal"), [])]
        if not neal:
            continue
        # median_low: a value some neal run actually reached, also for an even count
        target = (statistics.median_low if sense[instance] == "max" else statistics.median_high)(
            neal
        )
        times = {
            s: statistics.median(first_time(r["trajectory"], target, sense[instance]) for r in rs)
            for (i, s), rs in runs.items()
            if i == instance
        }
        peers = ["neal"] + (["sb-ref"] if "sb-ref" in times else [])
        print(f"{instance}: target = neal's median best objective {target:.1f}")
        print(
            "| solver | median time to target (s) | "
            + " | ".join(f"ratio to {p}" for p in peers)
            + " |"
        )
        print("|---|---|" + "---|" * len(peers))
        for solver, t in sorted(times.items(), key=lambda kv: kv[1]):
            print(
                f"| {solver} | {t:.3g} | " + " | ".join(ratio(t, times[p], p) for p in peers) + " |"
            )
        print()


if __name__ == "__main__":
    main(sys.argv[1])
