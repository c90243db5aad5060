"""The records of a benchmark: one :class:`RunResult` per (instance, solver, seed), the
:class:`BenchmarkRecord` that holds them all, and time to target computed from them.

The runner fills these records and the report reads them: both import this module, and
the report never imports the runner.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dimod

from ising_qubo.bench.instances import BenchInstance
from ising_qubo.bench.plans import SolverPlan


@dataclass
class RunResult:
    """One (instance, solver, seed): the best found and the best-so-far trajectory.

    ``trajectory`` holds ``[solver_time_s, best_objective_so_far]`` at every improvement and
    at the end; ``best_sample`` lists the best state's values in ``bqm.variables`` order.
    ``best_energy`` is recomputed from that sample by the harness, never taken on trust.
    """

    instance: str
    solver: str
    seed: int
    rounds: int = 0
    elapsed: float = 0.0
    best_objective: float | None = None
    best_energy: float | None = None
    best_sample: list[int] | None = None
    trajectory: list[list[float]] = field(default_factory=list)
    status: str | None = None
    error: str | None = None
    complete: bool = False
    energy_mismatch: float = 0.0

    @property
    def ok(self) -> bool:
        """Finished without error and found something: counts in the statistics."""
        return self.complete and self.error is None and self.best_objective is not None

    def observe(self, sampleset: dimod.SampleSet, instance: BenchInstance) -> bool:
        """Take a round's result; True if it improved the best objective."""
        if len(sampleset) == 0:
            return False
        first = sampleset.first
        reported = float(first.energy)
        if self.best_energy is not None and not _may_improve(
            instance, reported, self.best_objective
        ):
            return False
        energy = float(instance.bqm.energy(first.sample))
        self.energy_mismatch = max(self.energy_mismatch, abs(energy - reported))
        objective = float(instance.objective(energy))
        if self.best_objective is not None and not instance.better(objective, self.best_objective):
            return False
        self.best_objective = objective
        self.best_energy = energy
        self.best_sample = [int(first.sample[v]) for v in instance.bqm.variables]
        self.trajectory.append([self.elapsed, objective])
        return True

    def finish(self) -> None:
        if self.best_objective is not None and (
            not self.trajectory or self.trajectory[-1][0] < self.elapsed
        ):
            self.trajectory.append([self.elapsed, self.best_objective])


def _may_improve(instance: BenchInstance, reported_energy: float, best: float | None) -> bool:
    """Cheap pre-check on the reported energy before recomputing it (tolerant of rounding)."""
    if best is None:
        return True
    objective = float(instance.objective(reported_energy))
    slack = 1e-6 * max(1.0, abs(best))
    return objective > best - slack if instance.sense == "max" else objective < best + slack


def target_value(reference: float, fraction: float, sense: str) -> float:
    """The objective that counts as reaching ``fraction`` of ``reference``.

    Within ``(1 - fraction) * |reference|`` of the reference on the worse side, so the sign
    of the reference (negative energies, say) never flips the meaning.
    """
    slack = (1.0 - fraction) * abs(reference)
    return reference - slack if sense == "max" else reference + slack


def reaches(value: float, target: float, reference: float, sense: str) -> bool:
    tol = 1e-9 * max(1.0, abs(reference))
    return value >= target - tol if sense == "max" else value <= target + tol


def time_to_target(
    trajectory: Sequence[Sequence[float]], reference: float | None, fraction: float, sense: str
) -> float | None:
    """First solver time at which the best-so-far reached ``fraction`` of ``reference``."""
    if reference is None:
        return None
    target = target_value(reference, fraction, sense)
    for t, value in trajectory:
        if reaches(value, target, reference, sense):
            return float(t)
    return None


def fraction_key(fraction: float) -> str:
    """``0.995`` -> ``"0.995"``, ``1`` -> ``"1.0"``: the JSON key of a target fraction."""
    return repr(float(fraction))


@dataclass
class BenchmarkRecord:
    """Everything one benchmark produced, and what follows from it per run (reference
    values, times to target). :class:`ising_qubo.bench.report.BenchmarkResult` adds the
    outputs (summary, table, files)."""

    instances: list[BenchInstance]
    solvers: list[SolverPlan]
    seeds: list[int]
    time_limit: float
    targets: list[float]
    stop_at_best_known: bool = True
    runs: list[RunResult] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=dict)
    started: str = ""
    finished: str | None = None
    interrupted: bool = False
    out_dir: Path | None = None
    command: list[str] | None = None
    # busy processes the harness ran beside the solvers, and the load average
    # (:meth:`ising_qubo.bench.load.BackgroundLoad.record`); None for a hand-built record
    background_load: dict[str, Any] | None = None

    def instance(self, name: str) -> BenchInstance:
        return next(i for i in self.instances if i.name == name)

    def reference(self, instance: BenchInstance) -> tuple[float | None, str | None]:
        """The value targets are fractions of: best known, else the best any run found."""
        if instance.best_known is not None:
            return float(instance.best_known), "best known"
        found = [
            r.best_objective
            for r in self.runs
            if r.instance == instance.name and r.best_objective is not None
        ]
        if not found:
            return None, None
        return (max(found) if instance.sense == "max" else min(found)), "best found"

    def run_times(self, run: RunResult) -> dict[str, float | None]:
        """Time to each target fraction for one run (None: not reached)."""
        instance = self.instance(run.instance)
        reference, _ = self.reference(instance)
        return {
            fraction_key(f): time_to_target(run.trajectory, reference, f, instance.sense)
            for f in self.targets
        }


__all__ = [
    "BenchmarkRecord",
    "RunResult",
    "fraction_key",
    "reaches",
    "target_value",
    "time_to_target",
]
