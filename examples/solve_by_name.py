"""Solve one problem with several solvers chosen by name and compare them in a table.

    python examples/solve_by_name.py [FILE [--instance K]]

Without arguments it solves OR-Library bqp50 instance 1 (proven optimum 2098).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import ising_qubo
from ising_qubo import io

HERE = Path(__file__).resolve().parent

# Settings that fit a couple of seconds each on a laptop CPU.
SETTINGS = {
    "neal": dict(num_reads=20, num_sweeps=2000, seed=0),
    "tabu": dict(num_reads=2, time_limit=1.0, seed=0),
    "greedy": dict(num_reads=200, seed=0),
    "de": dict(num_reads=4, num_generations=2000, seed=0),
    "torch-sa": dict(num_reads=32, num_sweeps=500, seed=0),
    "cpsat": dict(time_limit=20.0, seed=0),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", default=HERE / "instances" / "bqp50.txt")
    parser.add_argument("--instance", type=int, default=None)
    args = parser.parse_args()
    if args.instance is None and Path(args.file).name == "bqp50.txt":
        args.instance = 1
    instance = io.read_instance(args.file, instance=args.instance)
    print(
        f"{instance.name}: {instance.bqm.num_variables} variables, "
        f"{instance.bqm.num_interactions} interactions\n"
    )
    print(
        f"| solver   | energy       | {instance.objective_name or 'objective':<13} "
        "| status   | time (s) |"
    )
    print("|----------|--------------|---------------|----------|----------|")
    for name, params in SETTINGS.items():
        start = time.perf_counter()
        sampleset = ising_qubo.solve(instance.bqm, name, **params)
        elapsed = time.perf_counter() - start
        energy = sampleset.first.energy
        objective = instance.objective(energy)
        status = sampleset.info.get("status", "FEASIBLE")
        shown = "" if objective is None else f"{objective:.6g}"
        print(f"| {name:<8} | {energy:<12.6g} | {shown:<13} | {status:<8} | {elapsed:8.2f} |")


if __name__ == "__main__":
    main()
