"""Whole-network budgets (issue 13): allocation, solvers, selection time.

Three measurements, each a resumable step (a JSON file per step under ``--out``; a step
whose file exists is skipped, so the script can span sessions):

* ``allocation``: kept fraction per group of the Ising global solution (energies
  ``taylor`` and ``ipruning``, torch-sa) against Torch-Pruning's global magnitude and
  Taylor baselines, for resnet20 and resnet56 at keep 0.5 and 0.3; one figure per
  (model, keep) with the groups in network order;
* ``solvers``: the global problems of resnet20 and resnet56 (``--solver-model``) with
  the ``taylor`` and ``ipruning`` energies (``--solver-energy``) solved by torch-sa,
  neal, tabu, cpsat (with its proven bound) and de with time limits of 1, 5 and 20 s:
  energy reached, budget met on the really pruned model, how many units' masks differ
  from torch-sa's, and how much the exact repair and descent changed the solver's state;
* ``latency``: ``keep_by="latency"`` on resnet20 and resnet56 at keep 0.7 and 0.5: the
  fraction of the dense latency the fitted model predicts and the one measured;
* ``timing``: selection time with solver defaults: resnet56 (torch-sa, global and
  uniform) and ResNet-101 (whole network, torch-sa defaults, global and uniform).

The networks are the CIFAR models of :mod:`ising_qubo.nets.models`, He-initialised (not
trained: the pruning study trains them), with a calibration batch of CIFAR-10 JPEG images
(``--data-dir``, an image folder; random images when absent, said in the output).

    .venv/bin/python benchmarks/pruning/global_budget.py \\
        --out benchmarks/results/global-budget-20261129 --data-dir data/cifar10-jpeg
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ising_qubo.io.jsonvalues import dumps
from ising_qubo.nets import models
from ising_qubo.nets.data import BatchLoader, load_dataset
from ising_qubo.pruning.groups import ModelGroups, count_params
from ising_qubo.pruning.problem import PruningProblem
from ising_qubo.pruning.pruners import ImportancePruner

KEEPS = (0.5, 0.3)
ALLOCATION_MODELS = ("resnet20", "resnet56")
BASELINES = ("tp-global-magnitude", "tp-global-taylor")
ISING_ENERGIES = ("taylor", "ipruning")
SOLVERS = ("torch-sa", "neal", "tabu", "cpsat", "de")
LIMITS = (1.0, 5.0, 20.0)


def calibration(data_dir: str | None, size: int, seed: int) -> tuple[Any, str]:
    if data_dir and Path(data_dir).is_dir():
        train = load_dataset("imagefolder", data_dir, "train", subset=size, seed=seed)
        x, y = next(iter(BatchLoader(train, len(train), shuffle=False)))
        return (x, y), f"{len(train)} CIFAR-10 training images from {data_dir}"
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(size, 3, 32, 32, generator=generator)
    y = torch.randint(0, 10, (size,), generator=generator)
    return (x, y), f"{size} random images (no --data-dir)"


def build(name: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return models.build(name, num_classes=10).eval()


def real_fraction(model: torch.nn.Module, example: torch.Tensor, masks: dict) -> float:
    pruned = copy.deepcopy(model)
    ModelGroups(pruned, example).prune(masks)
    return count_params(pruned) / count_params(model)


def fractions(groups, masks: dict) -> list[float]:
    return [float(np.asarray(masks[g.name]).sum() / g.size) for g in groups]


def step(out: Path, name: str, run) -> dict:
    """A resumable step: its JSON is written once, atomically; a later call reads it."""
    path = out / f"{name}.json"
    if path.exists():
        print(f"{name}: done before, skipped ({path})")
        return json.loads(path.read_text())
    started = time.perf_counter()
    result = run()
    result["step_seconds"] = round(time.perf_counter() - started, 2)
    result["load_average_after"] = os.getloadavg()
    result["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(dumps(result) + "\n")
    tmp.replace(path)
    print(f"{name}: {result['step_seconds']} s -> {path}")
    return result


def allocation(model_name: str, keep: float, data, seed: int) -> dict:
    model = build(model_name, seed)
    x = data[0]
    example = x[:1]
    rows: dict[str, Any] = {}
    groups = None
    for energy in ISING_ENERGIES:
        started = time.perf_counter()
        problem = PruningProblem.from_model(
            model, example, energy=energy, keep=keep, data=data, budget="global"
        )
        solution = problem.solve("torch-sa", seed=seed)
        groups = problem.groups
        rows[f"ising-global-{energy}"] = {
            "fractions": fractions(groups, solution.masks),
            "met": real_fraction(model, example, solution.masks),
            "seconds": round(time.perf_counter() - started, 2),
        }
    for baseline in BASELINES:
        started = time.perf_counter()
        pruner = ImportancePruner(
            model, example, keep=keep, importance=baseline, data=data, min_keep=0.1, seed=seed
        )
        masks = pruner.step()
        rows[baseline] = {
            "fractions": fractions(pruner.groups, masks),
            "met": real_fraction(model, example, masks),
            "seconds": round(time.perf_counter() - started, 2),
        }
    assert groups is not None
    return {"model": model_name, "keep": keep, "groups": [g.name for g in groups], "rows": rows}


def plot_allocation(result: dict, path: Path) -> None:
    fig = Figure(figsize=(max(7, 0.16 * len(result["groups"])), 3.6))
    ax = fig.subplots()
    for label, row in result["rows"].items():
        ax.plot(row["fractions"], marker="o", markersize=3, linewidth=1, label=label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # group indices are whole
    ax.set_xlabel("unit group, in network order")
    ax.set_ylabel("kept fraction of the group's channels")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"{result['model']}, keep {result['keep']} of parameters (global budget)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def solvers(model_name: str, energy: str, data, seed: int) -> dict:
    model = build(model_name, seed)
    example = data[0][:1]
    problem = PruningProblem.from_model(
        model, example, energy=energy, keep=0.5, data=data, budget="global"
    )
    rows = []
    masks_by: dict[tuple[str, float], dict] = {}
    for limit in LIMITS:
        for solver in SOLVERS:  # interleaved: every solver at one limit before the next
            params: dict[str, Any] = {"time_limit": limit}
            if solver != "cpsat":
                params["seed"] = seed
            started = time.perf_counter()
            try:
                solution = problem.solve(solver, **params)
            except Exception as exc:  # a solver that fails is a result too
                rows.append({"solver": solver, "limit": limit, "error": str(exc)[:300]})
                continue
            wall = time.perf_counter() - started
            masks_by[(solver, limit)] = solution.masks
            info = solution.samplesets[-1].info if solution.samplesets else {}
            rows.append(
                {
                    "solver": solver,
                    "limit": limit,
                    "energy": solution.energy,
                    "wall_s": round(wall, 2),
                    "met": real_fraction(model, example, solution.masks),
                    "asked": solution.budget.get("asked"),
                    "status": info.get("status"),
                    "bound": info.get("bound"),
                    "fallback": info.get("fallback"),
                    # what the exact repair and the budget-keeping descent changed in the
                    # solver's state: how much of the result is the solver's own
                    "repair_flips": solution.repair_flips,
                    "polish_moves": solution.swaps,
                }
            )
            print(json.dumps(rows[-1]))
    for row in rows:
        key = (row["solver"], row["limit"])
        ref = masks_by.get(("torch-sa", row["limit"]))
        if key in masks_by and ref is not None:
            row["units_differing_from_torch_sa"] = int(
                sum((masks_by[key][g] != ref[g]).sum() for g in ref)
            )
    return {"model": model_name, "energy": energy, "variables": problem.num_variables, "rows": rows}


def latency(data, seed: int) -> dict:
    """keep_by="latency": the budget the fitted latency model predicts against the one the
    really pruned network meets, timed interleaved with its dense original (batch 1,
    torch's thread count as set: one thread)."""
    from ising_qubo.pruning.latency import measured_latency_fraction

    rows = []
    for model_name in ALLOCATION_MODELS:
        model = build(model_name, seed)
        example = data[0][:1]
        for keep in (0.7, 0.5):
            started = time.perf_counter()
            problem = PruningProblem.from_model(
                model,
                example,
                energy="taylor",
                keep=keep,
                data=data,
                budget="global",
                keep_by="latency",
            )
            built = time.perf_counter() - started
            solution = problem.solve("torch-sa", seed=seed)
            pruned = copy.deepcopy(model)
            ModelGroups(pruned, example).prune(solution.masks)
            rows.append(
                {
                    "model": model_name,
                    "keep": keep,
                    "build_s": round(built, 2),
                    "predicted": solution.budget["met"],
                    "measured": measured_latency_fraction(model, pruned, example),
                    "params_fraction": count_params(pruned) / count_params(model),
                }
            )
            print(json.dumps(rows[-1]))
    return {"energy": "taylor", "batch": 1, "torch_threads": torch.get_num_threads(), "rows": rows}


def timing(data, seed: int) -> dict:
    rows = []
    for model_name in ("resnet56", "resnet101"):
        model = build(model_name, seed)
        x = data[0]
        example = x[:1]
        for budget in ("global", "uniform"):
            started = time.perf_counter()
            problem = PruningProblem.from_model(
                model, example, energy="ipruning", keep=0.5, data=x[:8], budget=budget
            )
            built = time.perf_counter() - started
            started = time.perf_counter()
            solution = problem.solve("torch-sa", seed=seed)  # solver defaults
            solved = time.perf_counter() - started
            rows.append(
                {
                    "model": model_name,
                    "budget": budget,
                    "variables": problem.num_variables,
                    "build_s": round(built, 2),
                    "select_s": round(solved, 2),
                    "met": solution.budget.get("met"),
                }
            )
            print(json.dumps(rows[-1]))
    return {"energy": "ipruning", "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--calibration-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", default="allocation,solvers,latency,timing")
    parser.add_argument("--solver-model", default="resnet20,resnet56", help="comma list")
    parser.add_argument("--solver-energy", default="taylor,ipruning", help="comma list")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)  # the solvers get the cores; the networks are small
    data, about = calibration(args.data_dir, args.calibration_size, args.seed)
    meta = {
        "calibration": about,
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "load_average_start": os.getloadavg(),
    }
    (args.out / "meta.json").write_text(dumps(meta) + "\n")
    print(json.dumps(meta))
    steps = args.steps.split(",")
    if "allocation" in steps:
        for model_name in ALLOCATION_MODELS:
            for keep in KEEPS:
                name = f"allocation-{model_name}-keep{keep}"
                result = step(
                    args.out, name, lambda m=model_name, k=keep: allocation(m, k, data, args.seed)
                )
                plot_allocation(result, args.out / f"{name}.png")
    if "solvers" in steps:
        for model_name in args.solver_model.split(","):
            for energy in args.solver_energy.split(","):
                step(
                    args.out,
                    f"solvers-{model_name}-{energy}",
                    lambda m=model_name, e=energy: solvers(m, e, data, args.seed),
                )
    if "latency" in steps:
        step(args.out, "latency", lambda: latency(data, args.seed))
    if "timing" in steps:
        step(args.out, "timing", lambda: timing(data, args.seed))


if __name__ == "__main__":
    main()
