"""Do other solvers select other units on the study's problems? (issue 14: "solver rows
only where solvers give different masks, and how different").

For every seed whose dense model has finished, the selection problem of each Ising
method at the study's budget is built exactly as its run builds it (the run's
:class:`~ising_qubo.pruning.pipeline.RunConfig`: the same dense model, calibration batch,
energy, budget and floors) and solved by each solver with its defaults and the run's
seeding. Recorded per (run, solver): the energy of the solution, the units whose mask
differs from the study's solver's (the first in the list), and the seconds of the solve
(on whatever else the machine runs). One JSON file, a case written as soon as it is done,
so an interrupted comparison continues where it stopped.
"""

from __future__ import annotations

import copy
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ising_qubo.io.jsonvalues import write_json
from ising_qubo.pruning.pipeline import Run
from ising_qubo.pruning.problem import PruningProblem
from ising_qubo.pruning.pruners.ising import seeded_params
from ising_qubo.solvers import resolve_sampler

#: The study directory's file of the comparison.
SOLVERS_FILE = "solvers.json"


def selection_problem(config: Any, loaded: dict[tuple, Any] | None = None) -> PruningProblem:
    """The problem the run of ``config`` selects on (its data, dense model and energy).
    ``loaded`` caches the loaded data and model per (data, seed, model): the methods of a
    seed share them, and loading 20,000 images takes a while."""
    key = (config.dataset, config.data_dir, config.seed, config.checkpoint)
    if loaded is None or key not in loaded:
        job = Run(config)
        job.load_data()
        entry = (job, job.build_model())
        if loaded is not None:
            loaded.clear()  # one seed's images at a time
            loaded[key] = entry
    else:
        entry = loaded[key]
    job, dense = entry
    return PruningProblem.from_model(
        copy.deepcopy(dense),
        job.example_inputs,
        energy=config.energy,
        keep=config.keep,
        data=job.calibration,
        keep_by=config.keep_by,
        budget=config.budget,
        min_keep=config.min_keep,
        importance=config.importance,
        similarity=config.similarity,
        seed=config.seed,
    )


def differing_units(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> int:
    """Units kept by one set of masks and removed by the other."""
    return int(sum(np.count_nonzero(np.asarray(a[g]) != np.asarray(b[g])) for g in a))


def compare(
    cases: list[tuple[str, Any, dict[str, int] | None]],
    solvers: list[str],
    path: Path,
    say=print,
) -> dict[str, Any]:
    """Solve each (key, RunConfig, the run's kept units per group or None) case with every
    solver; ``path`` holds the record (read first: cases it has for every solver are
    skipped). ``reproduces_run``: whether the first solver kept, group by group, as many
    units as the study's run did (the rebuilt problem is the run's)."""
    record: dict[str, Any] = {"solvers": solvers, "cases": {}}
    if path.exists():
        record["cases"] = json.loads(path.read_text()).get("cases", {})
    loaded: dict[tuple, Any] = {}
    for key, config, run_kept in cases:
        done = record["cases"].get(key, {})
        if all(name in done for name in solvers):
            say(f"done     {key}")
            continue
        with tempfile.TemporaryDirectory() as scratch:  # the Run never writes there
            config.out = str(Path(scratch) / "unused")
            problem = selection_problem(config, loaded)
        reference = None
        rows: dict[str, Any] = {}
        for name in solvers:
            sampler = resolve_sampler(name)
            params = dict(config.solver_params) if name == config.solver else {}
            params = seeded_params(sampler, params, problem.seed, solve_index=0)
            started = time.perf_counter()
            solution = problem.solve(sampler, **params)
            seconds = time.perf_counter() - started
            reference = solution.masks if reference is None else reference
            rows[name] = {
                "energy": float(solution.energy),
                "differ": differing_units(solution.masks, reference),
                "kept": int(sum(solution.kept.values())),
                "kept_by_group": solution.kept,
                "seconds": seconds,
                "budget_met": solution.budget.get("met"),
            }
            say(f"{key}: {name} energy {solution.energy:.6g}, {rows[name]['differ']} units differ")
        first = rows[solvers[0]]["kept_by_group"]
        reproduces = None if run_kept is None else first == run_kept
        record["cases"][key] = {
            "units": int(problem.num_variables),
            "reproduces_run": reproduces,
            **rows,
        }
        write_json(path, record)
    return record


__all__ = ["SOLVERS_FILE", "compare", "differing_units", "selection_problem"]
