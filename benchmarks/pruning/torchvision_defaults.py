"""Time of ``prune_model(model, x, keep=0.5)`` with default settings on torchvision models.

What a user would do first: a torchvision classification model as it is built
(``torchvision.models.X()``, 1,000 classes, random weights: the claim is time, and
weights do not change the problem's size), one 1x3x224x224 random input as the example
inputs and, by default, also as the calibration data (the default energy, "redundancy"
with l1 importance, needs no labelled batch), and nothing else. Each (model, solver) runs
in its own subprocess (memory; a failure stays in its row) and writes one JSON file to the
run directory; files already there are skipped, so an interrupted run resumes.

The call itself is timed, and split into phases by timers wrapped around the library
calls it makes (same process, same call): ``groups`` (Torch-Pruning's dependency graph,
:class:`~ising_qubo.pruning.groups.ModelGroups`), ``budget`` (the uniform keep counts),
``energy`` (:meth:`PruningProblem.refresh`: the energy build, with the number of builds),
``solve`` (:meth:`PruningProblem.solve`, the budget polish included) and ``surgery``
(:meth:`ModelGroups.prune`); ``other`` is the rest (the deep copy, solver look-up).

    .venv/bin/python benchmarks/pruning/torchvision_defaults.py
    .venv/bin/python benchmarks/pruning/torchvision_defaults.py --models vgg11_bn \\
        --solvers default,cpsat --out benchmarks/results/torchvision-defaults-20261130
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

MODELS = (
    "resnet18",
    "mobilenet_v3_small",
    "efficientnet_b0",
    "densenet121",
    "vgg11_bn",
    "convnext_tiny",
    "vit_b_16",
)
#: "default" calls prune_model without a solver argument (torch-sa)
SOLVERS = ("default", "cpsat", "neal")
PHASES = ("groups", "budget", "energy", "solve", "surgery")
#: a run longer than this is stopped and recorded as such
CHILD_TIMEOUT_S = 1200
GOAL_S = 60.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated")
    parser.add_argument("--solvers", default=",".join(SOLVERS), help="comma-separated")
    parser.add_argument("--keep", type=float, default=0.5)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("benchmarks/results")
        / f"torchvision-defaults-{datetime.now(timezone.utc):%Y%m%d}",
    )
    parser.add_argument("--timeout", type=float, default=CHILD_TIMEOUT_S)
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "SOLVER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        model, solver = args.child
        print(json.dumps(run_one(model, solver, args.keep)))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    for model in args.models.split(","):
        for solver in args.solvers.split(","):
            path = args.out / f"{model}-{solver}.json"
            if path.exists():
                print(f"{path}: done before, skipped", flush=True)
                continue
            row = run_child(model, solver, args.keep, args.timeout)
            path.write_text(json.dumps(row, indent=1) + "\n")
            print(format_row(row), flush=True)
    print()
    print(table(sorted(args.out.glob("*.json"))))


def run_child(model: str, solver: str, keep: float, timeout: float) -> dict:
    """One (model, solver) in a fresh interpreter; its JSON line, or what went wrong."""
    command = [sys.executable, __file__, "--child", model, solver, "--keep", str(keep)]
    started = time.perf_counter()
    load = os.getloadavg()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {
            "model": model,
            "solver": solver,
            "error": f"stopped after {timeout:.0f} s",
            "wall_s": time.perf_counter() - started,
            "load_before": load,
        }
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        return {"model": model, "solver": solver, "error": f"exit {done.returncode}: {tail}"}
    return json.loads(lines[-1])


def run_one(name: str, solver: str, keep: float) -> dict:
    """Build ``name``, time prune_model with default settings (``solver`` unless
    "default"), and return the record."""
    import torch
    import torchvision

    from ising_qubo import prune_model
    from ising_qubo.pruning import problem as problem_module
    from ising_qubo.pruning.groups import ModelGroups, count_params

    torch.manual_seed(0)
    model = getattr(torchvision.models, name)()
    example = torch.randn(1, 3, 224, 224)
    phases = dict.fromkeys(PHASES, 0.0)
    calls = dict.fromkeys(PHASES, 0)
    seen: dict = {}

    def timed(owner, attribute: str, phase: str, keep_result: bool = False) -> None:
        original = getattr(owner, attribute)

        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                result = original(*args, **kwargs)
            finally:
                phases[phase] += time.perf_counter() - started
                calls[phase] += 1
            if keep_result:
                seen[phase] = (args[0], result)
            return result

        setattr(owner, attribute, wrapper)

    timed(ModelGroups, "__init__", "groups", keep_result=True)
    timed(problem_module, "uniform_keep_counts", "budget")
    timed(problem_module.PruningProblem, "refresh", "energy")
    timed(problem_module.PruningProblem, "solve", "solve", keep_result=True)
    timed(ModelGroups, "prune", "surgery")
    options = {} if solver == "default" else {"solver": solver}
    load_before = os.getloadavg()
    started = time.perf_counter()
    pruned = prune_model(model, example, keep=keep, **options)
    total = time.perf_counter() - started
    load_after = os.getloadavg()
    groups = seen["groups"][0]
    problem, solution = seen["solve"]
    sizes = [group.size for group in groups.groups]
    paths = [report.get("path") for report in solution.groups.values()]
    statuses = [report.get("status") for report in solution.groups.values()]
    return {
        "model": name,
        "solver": solver,
        "solver_name": solution.solver,
        "keep": keep,
        "total_s": total,
        "phases_s": phases,
        "phase_calls": calls,
        "other_s": total - sum(phases.values()),
        "groups": len(sizes),
        "largest_group": max(sizes),
        "units": sum(sizes),
        "structured_groups": paths.count("structured"),
        "structured_above": problem.structured_group_above,
        "statuses": {s: statuses.count(s) for s in set(statuses) if s is not None},
        "optimal": solution.optimal,
        "budget": solution.budget,
        "params_before": count_params(model),
        "params_after": count_params(pruned),
        "energy": solution.energy,
        "load_before": load_before,
        "load_after": load_after,
        "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "call": f"prune_model(torchvision.models.{name}(), torch.randn(1, 3, 224, 224), "
        f"keep={keep}{', solver=' + repr(solver) if solver != 'default' else ''})",
    }


def format_row(row: dict) -> str:
    if "error" in row:
        return f"| {row['model']} | {row['solver']} | error: {row['error']} |"
    phases = " | ".join(f"{row['phases_s'][p]:.1f}" for p in PHASES)
    met = row["budget"].get("met", float("nan"))
    optimal = {True: "yes", False: "no", None: "-"}[row["optimal"]]
    load = f"{row['load_before'][0]:.1f}/{row['load_after'][0]:.1f}"
    flag = "" if row["total_s"] < GOAL_S else " (over 60 s)"
    return (
        f"| {row['model']} | {solver_label(row)} | {row['groups']} | {row['largest_group']} | "
        f"{row['units']} | {row['structured_groups']} | {phases} | {row['other_s']:.1f} | "
        f"**{row['total_s']:.1f}**{flag} | {met:.3f} | {optimal} | {load} | "
        f"{row['torch_threads']} | {row['date'][:10]} |"
    )


def solver_label(row: dict) -> str:
    return "torch-sa (default)" if row["solver"] == "default" else row["solver"]


def table(paths: list[Path]) -> str:
    head = (
        "| model | solver | groups | largest | units | structured | "
        + " | ".join(f"{p} s" for p in PHASES)
        + " | other s | total s | kept (params) | optimal | load 1-min before/after | "
        "torch threads | date |"
    )
    rule = "|" + "---|" * (head.count("|") - 1)
    records = [json.loads(p.read_text()) for p in paths]
    order = {name: k for k, name in enumerate(MODELS + SOLVERS)}
    records.sort(key=lambda r: (order.get(r["model"], 99), r["model"], order.get(r["solver"], 99)))
    rows = [format_row(r) for r in records]
    return "\n".join([head, rule, *rows])


if __name__ == "__main__":
    main()
