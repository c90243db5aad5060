"""Batched annealing: 20 independent problems in one call against 20 separate calls.

    python benchmarks/solvers/batched.py [--backend numba|torch] [--repeats 3]

Problems: dense SK-like SPIN models, n = 64 ... 512 (20 sizes, evenly spaced, seeded).
Both ways run the same sweeps and replicas per problem, one after the other in this
process, so the ratio is fair; quality is the mean over problems of the best energy.
Prints a markdown table and writes it next to this script's results folder.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import dimod
import numpy as np
import torch

import ising_qubo


def sk_problem(n: int, seed: int) -> dimod.BinaryQuadraticModel:
    rng = np.random.default_rng(seed)
    upper = np.triu(rng.normal(size=(n, n)), 1)
    rows, cols = np.nonzero(upper)
    return dimod.BinaryQuadraticModel.from_numpy_vectors(
        np.zeros(n), (rows, cols, upper[rows, cols]), 0.0, "SPIN"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="numba", choices=["numba", "torch"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--num-reads", type=int, default=8)
    parser.add_argument("--num-sweeps", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    problems = [sk_problem(int(n), k) for k, n in enumerate(np.linspace(64, 512, 20))]
    sampler = ising_qubo.get_solver("torch-sa")
    params = dict(
        num_reads=args.num_reads,
        num_sweeps=args.num_sweeps,
        backend=args.backend,
        device=args.device,
    )
    sampler.sample_batch(problems[:2], **dict(params, num_sweeps=2))  # compile / warm up
    rows = []
    for repeat in range(args.repeats):
        start = time.perf_counter()
        separate = [
            sampler.sample(bqm, seed=repeat * 100 + k, **params) for k, bqm in enumerate(problems)
        ]
        t_separate = time.perf_counter() - start
        start = time.perf_counter()
        batched = sampler.sample_batch(problems, seed=repeat, **params)
        t_batched = time.perf_counter() - start
        rows.append(
            {
                "repeat": repeat,
                "separate_s": t_separate,
                "batched_s": t_batched,
                "ratio": t_separate / t_batched,
                "separate_mean_best": float(np.mean([s.first.energy for s in separate])),
                "batched_mean_best": float(np.mean([s.first.energy for s in batched])),
            }
        )
    print(
        f"backend {args.backend} on {args.device}; 20 SK problems n=64..512; "
        f"{args.num_reads} reads x {args.num_sweeps} sweeps each\n"
    )
    print(
        "| repeat | 20 separate calls (s) | one batched call (s) | speed-up | "
        "mean best E separate | mean best E batched |"
    )
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['repeat']} | {row['separate_s']:.2f} | {row['batched_s']:.2f} | "
            f"{row['ratio']:.2f}x | {row['separate_mean_best']:.1f} | "
            f"{row['batched_mean_best']:.1f} |"
        )
    median = float(np.median([r["ratio"] for r in rows]))
    print(f"\nmedian speed-up {median:.2f}x")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                {
                    "date": datetime.now(timezone.utc).isoformat(),
                    "params": params,
                    "machine": {"platform": platform.platform(), "torch": torch.__version__},
                    "rows": rows,
                    "median_speedup": median,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
