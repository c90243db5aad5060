"""Time and memory of the paper's whole-network energy on a large network (issue 7).

Builds the model, the whole-network structured Ising model (``energy="ipruning"``, a
``keep`` budget on parameters) and solves it with the given solver through
``PruningProblem.solve`` (which ends with the budget-exact swap polish). Prints one JSON
line per stage with wall time and the process's peak resident memory (``ru_maxrss``,
so it includes Python, torch and the model itself), and writes them to ``--out``.

    .venv/bin/python benchmarks/pruning/whole_network.py --model resnet101 \\
        --reads 2 --sweeps 100 --out benchmarks/results/whole-network.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from ising_qubo.nets import models
from ising_qubo.pruning.problem import PruningProblem


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet101")
    parser.add_argument("--keep", type=float, default=0.5)
    parser.add_argument("--batch", type=int, default=8, help="calibration images (random)")
    parser.add_argument("--solver", default="torch-sa")
    parser.add_argument("--reads", type=int, default=2)
    parser.add_argument("--sweeps", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--compare-penalty",
        action="store_true",
        help="also solve with the budget as a penalty (single-flip torch-sa "
        "on the structured model, then the swap polish), same reads "
        "and sweeps, in this run",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    rows = []

    def record(stage: str, started: float, **extra) -> None:
        row = {
            "stage": stage,
            "seconds": round(time.perf_counter() - started, 3),
            "peak_rss_mib": round(peak_mib(), 1),
            **extra,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)

    record("import", time.perf_counter())
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    model = models.build(args.model, num_classes=10)
    batch = torch.randn(args.batch, 3, 32, 32)
    record("model", started, parameters=sum(p.numel() for p in model.parameters()))

    started = time.perf_counter()
    problem = PruningProblem.from_model(
        model, batch[:1], energy="ipruning", keep=args.keep, data=batch
    )
    structured = problem.structured(budget=False)
    record(
        "build",
        started,
        groups=len(problem.groups),
        variables=problem.num_variables,
        layer_units=int(sum(len(layer.units) for g in problem.groups for layer in g.layers)),
        blocks=len(structured.blocks),
        rank=int(structured.lowrank_u.shape[0]),
        block_entries=int(sum(len(index) ** 2 for index, _ in structured.blocks)),
    )

    started = time.perf_counter()
    solution = problem.solve(
        args.solver, num_reads=args.reads, num_sweeps=args.sweeps, seed=args.seed
    )
    info = solution.samplesets[0].info
    record(
        "solve",
        started,
        solver=args.solver,
        solver_seconds=round(solution.seconds, 3),
        energy=solution.energy,
        polish_swaps=solution.swaps,
        repair_flips=solution.repair_flips,
        backend=info.get("backend"),
        kept_fraction=float(np.mean([m.mean() for m in solution.masks.values()])),
    )
    # (peak memory of build + solve is the "solve" row's: ru_maxrss only grows)
    if args.compare_penalty:
        from ising_qubo.solvers import get_solver

        started = time.perf_counter()
        sampleset = get_solver("torch-sa").sample_structured(
            problem.structured(budget=True),
            num_reads=args.reads,
            num_sweeps=args.sweeps,
            seed=args.seed,
        )
        state = np.asarray([sampleset.first.sample[v] for v in problem.labels]) > 0
        masks, repairs, swaps = problem.polish(problem.masks_from_state(state.astype(np.int8)))
        record(
            "solve-penalty",
            started,
            energy=problem.energy(masks),
            polish_swaps=swaps,
            repair_flips=repairs,
        )
    total = sum(r["seconds"] for r in rows if r["stage"] in ("build", "solve"))
    solve_row = next(r for r in rows if r["stage"] == "solve")
    summary = {
        "model": args.model,
        "build_plus_solve_seconds": round(total, 2),
        "peak_rss_mib": solve_row["peak_rss_mib"],  # before any --compare-penalty
        "machine": platform.processor() or platform.machine(),
        "cpus": len(__import__("os").sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads(),
        "date": date.today().isoformat(),
    }
    print(json.dumps(summary), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                {"args": vars(args) | {"out": str(args.out)}, "stages": rows, "summary": summary},
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
