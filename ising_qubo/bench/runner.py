"""Time-to-target runs: each solver repeats fixed-size rounds until its time limit.

One run is one (instance, solver, seed). A run calls ``sampler.sample(bqm, **params,
seed=derived_seed)`` again and again ("rounds", i.e. restarts) until the summed time of
those calls reaches the time limit, and keeps the best objective so far after each round.
The time of a run is *solver time*: the sum of the ``sample`` calls, so the harness's own
work (energy checks, progress bar, writing files) is not charged to any solver. A round's
result exists only when the round ends, so time-to-target has the resolution of one round;
the per-round work in :data:`SOLVER_DEFAULTS` is chosen small enough to give several points
per run on Gset-sized problems on a CPU.

Solvers that take ``time_limit`` get ``time_limit = min(their per-round value, time left)``,
so the last round ends at the limit. Single-call solvers (CP-SAT, exact, and any solver
without a ``seed`` parameter, which would only repeat itself) make one call with the whole
time limit; their trajectory has one point. A run stops early when its best reaches the
best-known value (``stop_at_best_known``) or the solver reports ``status == "OPTIMAL"``.

Runs go instance -> seed -> solver, all in this process, so every solver sees the same
machine conditions within a few seconds of the others.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dimod
import numpy as np

from ising_qubo.bench.instances import REPO_ROOT, BenchInstance, collect_instances
from ising_qubo.solvers import get_solver


@dataclass(frozen=True)
class SolverSettings:
    """Per-round parameters of one solver in a benchmark (before ``--param`` overrides).

    ``single_call``: one ``sample`` call with ``time_limit`` = the whole budget instead of
    rounds. Parameters the solver does not declare are dropped, so the table can name
    parameters of solvers that are still being written. ``grow``: ``(parameter, factor,
    cap)``, the parameter's value is multiplied by ``factor`` each round up to ``cap``
    (restarts with growing anneals: short early rounds reach loose targets quickly, long
    later rounds reach tight ones).
    """

    params: dict[str, Any] = field(default_factory=dict)
    single_call: bool = False
    about: str = ""
    grow: tuple[str, float, int] | None = None


# Annealers run restarts whose length grows 1.5x per round from 1000 sweeps to 32,000.
_ANNEAL_GROWTH = ("num_sweeps", 1.5, 32_000)


#: Per-round work of each solver, sized for a 10 s budget on Gset-sized problems on a CPU.
SOLVER_DEFAULTS: dict[str, SolverSettings] = {
    "neal": SolverSettings({"num_reads": 1, "num_sweeps": 1000}, grow=_ANNEAL_GROWTH,
                           about="one anneal per round (neal is single-threaded), 1000 "
                                 "sweeps growing 1.5x per round to 32,000"),
    "torch-sa": SolverSettings({"num_reads": os.cpu_count() or 1, "num_sweeps": 1000},
                               grow=_ANNEAL_GROWTH,
                               about="one replica per CPU core per round, 1000 sweeps "
                                     "growing 1.5x per round to 32,000; raise num_reads on "
                                     "CUDA"),
    "torch-sb": SolverSettings({"num_reads": 64, "num_steps": 1000},
                               about="64 agents x 1000 steps per round; raise num_reads "
                                     "on CUDA"),
    "sb-ref": SolverSettings({"num_reads": 64, "num_steps": 1000},
                             about="reference SB, 64 replicas per round"),
    "tabu": SolverSettings({"num_reads": 1, "time_limit": 0.2},
                           about="one 0.2 s tabu search per round"),
    "greedy": SolverSettings({"num_reads": 100}, about="100 random descents per round"),
    "de": SolverSettings({"num_reads": 1, "num_generations": 500},
                         about="one population, 500 generations per round"),
    "cpsat": SolverSettings(single_call=True, about="one call, time_limit = the whole budget"),
    "exact": SolverSettings(single_call=True, about="one brute-force call (<= 24 variables)"),
}
_GENERIC = SolverSettings(about="the solver's own defaults per round")

#: Harness options accepted by ``--param SOLVER:KEY=VALUE`` besides solver parameters.
HARNESS_KEYS = ("single_call", "grow")


@dataclass
class SolverPlan:
    """A solver as it will run: the sampler, its per-round parameters, rounds or one call."""

    name: str
    sampler: Any = field(repr=False)
    params: dict[str, Any]
    single_call: bool
    about: str = ""
    grow: tuple[str, float, int] | None = None

    @property
    def accepted(self) -> set[str]:
        return set(getattr(self.sampler, "parameters", {}) or {})

    def call_params(self, seed: int, round_index: int, remaining: float) -> dict[str, Any]:
        """Keyword arguments of one ``sample`` call."""
        kwargs = dict(self.params)
        accepted = self.accepted
        if self.grow is not None and self.grow[0] in kwargs:
            key, factor, cap = self.grow
            kwargs[key] = int(min(cap, round(kwargs[key] * factor ** round_index)))
        if "time_limit" in accepted:
            own = kwargs.get("time_limit")
            kwargs["time_limit"] = (remaining if self.single_call or own is None
                                    else min(float(own), remaining))
        if "seed" in accepted:
            kwargs["seed"] = round_seed(seed, round_index)
        return kwargs

    def describe(self) -> dict[str, Any]:
        return {"params": dict(self.params), "mode": "single call" if self.single_call
                else "rounds", "grow": self.grow, "about": self.about}


def round_seed(seed: int, round_index: int) -> int:
    """The solver seed of round ``round_index`` of run ``seed`` (31 bits, reproducible)."""
    state = np.random.SeedSequence([int(seed), int(round_index)]).generate_state(1)[0]
    return int(state) & 0x7FFFFFFF


def plan_solvers(
    solvers: Iterable[str | tuple[str, Any]] | Mapping[str, Any],
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[SolverPlan]:
    """Resolve solver names (or ``(name, sampler)`` pairs) and apply parameter overrides.

    Raises ValueError for an unknown solver, a duplicate, an override for a solver that is
    not in the run, or a parameter the solver does not declare.
    """
    items = list(solvers.items()) if isinstance(solvers, Mapping) else list(solvers)
    overrides = {k: dict(v) for k, v in (overrides or {}).items()}
    plans: list[SolverPlan] = []
    for item in items:
        name, sampler = (item, None) if isinstance(item, str) else item
        if not isinstance(name, str) or not name:
            raise ValueError(f"solver names must be non-empty strings, got {name!r}")
        if any(p.name == name for p in plans):
            raise ValueError(f"solver {name!r} is listed twice")
        sampler = get_solver(name) if sampler is None or isinstance(sampler, str) else sampler
        settings = SOLVER_DEFAULTS.get(name, _GENERIC)
        accepted = set(getattr(sampler, "parameters", {}) or {})
        params = {k: v for k, v in settings.params.items() if k in accepted}
        single = settings.single_call or "seed" not in accepted
        grow, about = settings.grow, settings.about
        for key, value in overrides.pop(name, {}).items():
            if key == "single_call":
                single = _as_bool(value, name)
            elif key == "grow":
                grow, about = _grow_override(value, settings, name)
            elif key == "seed":
                raise ValueError(f"solver {name!r}: seeds are set by the harness (--seeds), "
                                 "not by --param")
            elif key not in accepted:
                raise ValueError(f"solver {name!r} has no parameter {key!r}; its parameters: "
                                 f"{', '.join(sorted(accepted)) or 'none'}")
            else:
                params[key] = value
        plans.append(SolverPlan(name, sampler, params, single, about, grow))
    if not plans:
        raise ValueError("no solvers given")
    if overrides:
        raise ValueError(f"--param for solver(s) not in the run: {', '.join(sorted(overrides))}")
    return plans


def _grow_override(value: Any, settings: SolverSettings, solver: str
                   ) -> tuple[tuple[str, float, int] | None, str]:
    """``--param SOLVER:grow=F``: the growing parameter's factor per round (1: every round
    the same length); the notes column of the report says what was run."""
    try:
        factor = float(value)
    except (TypeError, ValueError):
        factor = math.nan
    if not factor >= 1.0 or not math.isfinite(factor):
        raise ValueError(f"solver {solver!r}: grow must be a factor >= 1 (1: fixed-length "
                         f"rounds), got {value!r}")
    if settings.grow is None:
        raise ValueError(f"solver {solver!r}: its rounds do not grow; grow applies to "
                         f"{', '.join(n for n, s in SOLVER_DEFAULTS.items() if s.grow)}")
    key, _, cap = settings.grow
    if factor == 1.0:
        return None, f"every round the same ({key} as given; --param grow=1)"
    return (key, factor, cap), f"{key} growing {factor:g}x per round to {cap:,} (--param grow)"


def _as_bool(value: Any, solver: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.lower() in ("true", "yes", "1")
    raise ValueError(f"solver {solver!r}: single_call must be true or false, got {value!r}")


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
        if self.best_energy is not None and not _may_improve(instance, reported,
                                                             self.best_objective):
            return False
        energy = float(instance.bqm.energy(first.sample))
        self.energy_mismatch = max(self.energy_mismatch, abs(energy - reported))
        objective = float(instance.objective(energy))
        if self.best_objective is not None and not instance.better(objective,
                                                                   self.best_objective):
            return False
        self.best_objective = objective
        self.best_energy = energy
        self.best_sample = [int(first.sample[v]) for v in instance.bqm.variables]
        self.trajectory.append([self.elapsed, objective])
        return True

    def finish(self) -> None:
        if self.best_objective is not None and (
                not self.trajectory or self.trajectory[-1][0] < self.elapsed):
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


def time_to_target(trajectory: Sequence[Sequence[float]], reference: float | None,
                   fraction: float, sense: str) -> float | None:
    """First solver time at which the best-so-far reached ``fraction`` of ``reference``."""
    if reference is None:
        return None
    target = target_value(reference, fraction, sense)
    for t, value in trajectory:
        if reaches(value, target, reference, sense):
            return float(t)
    return None


@dataclass
class BenchmarkResult:
    """Everything one benchmark produced; ``write`` puts it in ``out_dir``."""

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

    def instance(self, name: str) -> BenchInstance:
        return next(i for i in self.instances if i.name == name)

    def reference(self, instance: BenchInstance) -> tuple[float | None, str | None]:
        """The value targets are fractions of: best known, else the best any run found."""
        if instance.best_known is not None:
            return float(instance.best_known), "best known"
        found = [r.best_objective for r in self.runs
                 if r.instance == instance.name and r.best_objective is not None]
        if not found:
            return None, None
        return (max(found) if instance.sense == "max" else min(found)), "best found"

    def run_times(self, run: RunResult) -> dict[str, float | None]:
        """Time to each target fraction for one run (None: not reached)."""
        instance = self.instance(run.instance)
        reference, _ = self.reference(instance)
        return {fraction_key(f): time_to_target(run.trajectory, reference, f, instance.sense)
                for f in self.targets}

    def summary(self) -> list[dict[str, Any]]:
        from ising_qubo.bench.report import summarize

        return summarize(self)

    def to_dict(self) -> dict[str, Any]:
        from ising_qubo.bench.report import result_to_dict

        return result_to_dict(self)

    def table_markdown(self) -> str:
        from ising_qubo.bench.report import table_markdown

        return table_markdown(self)

    def write(self, out_dir: str | Path | None = None, table: bool = True,
              plot: bool = False) -> Path:
        from ising_qubo.bench.report import write_outputs

        return write_outputs(self, Path(out_dir or self.out_dir), table=table, plot=plot)


def fraction_key(fraction: float) -> str:
    """``0.995`` -> ``"0.995"``, ``1`` -> ``"1.0"``: the JSON key of a target fraction."""
    return repr(float(fraction))


def default_out_dir() -> Path:
    """``<repo>/benchmarks/results/<UTC timestamp>/`` (a suffix avoids collisions)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = REPO_ROOT / "benchmarks" / "results"
    path = base / stamp
    k = 1
    while path.exists():
        k += 1
        path = base / f"{stamp}-{k}"
    return path


def run_benchmark(
    instances: Iterable[BenchInstance | str | Path],
    solvers: Iterable[str | tuple[str, Any]] | Mapping[str, Any],
    seeds: Iterable[int] = (0, 1, 2, 3, 4),
    time_limit: float = 10.0,
    target_fractions: Iterable[float] = (0.995, 1.0),
    progress: bool = True,
    out_dir: str | Path | None = None,
    *,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    bench_dir: str | Path | None = None,
    stop_at_best_known: bool = True,
    plot: bool = True,
    warmup: bool = True,
    command: list[str] | None = None,
) -> BenchmarkResult:
    """Run every solver on every instance for every seed; write results as they come.

    ``instances``: :class:`BenchInstance` objects or specs for :func:`collect_instances`.
    ``solvers``: registered names, ``(name, sampler)`` pairs or a ``{name: sampler}`` map.
    ``params``: ``{solver: {key: value}}`` overrides of :data:`SOLVER_DEFAULTS`.
    ``out_dir``: where ``results.json``, ``table.md`` and ``trajectories.png`` go (default
    :func:`default_out_dir`). ``results.json`` is rewritten atomically after every seed of
    every instance. On KeyboardInterrupt everything gathered so far is written with
    ``"interrupted": true`` and the interrupt is re-raised.
    """
    seeds = _check_seeds(seeds)
    targets = _check_targets(target_fractions)
    time_limit = _check_time_limit(time_limit)
    plans = plan_solvers(solvers, params)
    instances = list(instances)
    if not all(isinstance(i, BenchInstance) for i in instances):
        instances = collect_instances(instances, bench_dir)
    names = [i.name for i in instances]
    if len(set(names)) != len(names):
        raise ValueError("instance names must be unique within a benchmark")
    if warmup:
        for plan in plans:
            _warm_up(plan)

    from ising_qubo.bench.report import machine_info

    out = Path(out_dir) if out_dir is not None else default_out_dir()
    out.mkdir(parents=True, exist_ok=True)
    result = BenchmarkResult(
        instances, plans, seeds, time_limit, targets, stop_at_best_known,
        machine=machine_info(), started=_now(), out_dir=out, command=command)
    bar = _progress_bar(len(instances) * len(seeds) * len(plans), progress)
    try:
        for instance in instances:
            for seed in seeds:
                for plan in plans:
                    run = RunResult(instance.name, plan.name, seed)
                    result.runs.append(run)
                    _run_one(run, instance, plan, result, bar)
                    bar.update(1)
                result.write(out, table=False)
            result.write(out, table=True)
    except KeyboardInterrupt:
        result.interrupted = True
        result.finished = _now()
        bar.close()
        result.write(out, table=True, plot=plot)
        raise
    bar.close()
    result.finished = _now()
    result.write(out, table=True, plot=plot)
    return result


def _run_one(run: RunResult, instance: BenchInstance, plan: SolverPlan,
             result: BenchmarkResult, bar: Any) -> None:
    goal = instance.best_known if result.stop_at_best_known else None
    last_refresh = 0.0
    try:
        while run.elapsed < result.time_limit:
            kwargs = plan.call_params(run.seed, run.rounds, result.time_limit - run.elapsed)
            start = time.perf_counter()
            sampleset = plan.sampler.sample(instance.bqm, **kwargs)
            run.elapsed += time.perf_counter() - start
            run.rounds += 1
            run.observe(sampleset, instance)
            if getattr(sampleset, "info", {}).get("interrupted"):
                # the solver kept its best state on Ctrl-C; the benchmark still stops here
                raise KeyboardInterrupt
            status = sampleset.info.get("status") if hasattr(sampleset, "info") else None
            run.status = None if status is None else str(status)
            if time.perf_counter() - last_refresh > 0.5 and run.best_objective is not None:
                last_refresh = time.perf_counter()
                bar.set_postfix_str(f"{instance.name} {plan.name} seed={run.seed} "
                                    f"best={run.best_objective:.6g}")
            if plan.single_call or run.status == "OPTIMAL":
                break
            if goal is not None and run.best_objective is not None and reaches(
                    run.best_objective, goal, goal, instance.sense):
                break
    except KeyboardInterrupt:
        run.finish()
        raise
    except Exception as exc:  # one failing solver must not end the whole benchmark
        run.error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        if not any(r.error for r in result.runs if r is not run
                   and (r.instance, r.solver) == (run.instance, run.solver)):
            bar.write(f"warning: {plan.name} failed on {instance.name} (seed {run.seed}; "
                      f"later failures on this instance not repeated): {run.error}",
                      file=sys.stderr)
    run.complete = True
    run.finish()


def _warm_up(plan: SolverPlan) -> None:
    """One untimed call on a tiny problem: imports, allocators and CUDA start-up happen here."""
    rng = np.random.default_rng(12345)
    n = 8
    rows, cols = np.triu_indices(n, 1)
    bqm = dimod.BinaryQuadraticModel.from_numpy_vectors(
        rng.standard_normal(n), (rows, cols, rng.standard_normal(len(rows))), 0.0, dimod.SPIN)
    kwargs = plan.call_params(0, 0, 0.2)
    try:
        plan.sampler.sample(bqm, **kwargs)
    except Exception as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        raise RuntimeError(f"solver {plan.name!r} failed on a warm-up problem with "
                           f"parameters {plan.params}: {message}") from exc


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, text: str) -> None:
        pass

    def write(self, text: str, file: Any = None) -> None:
        print(text, file=file or sys.stderr)

    def close(self) -> None:
        pass


def _progress_bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="run", desc="bench", dynamic_ncols=True, file=sys.stderr)


def _check_seeds(seeds: Iterable[int]) -> list[int]:
    out = []
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0:
            raise ValueError(f"seeds must be non-negative integers, got {s!r}")
        out.append(int(s))
    if not out:
        raise ValueError("at least one seed is needed")
    if len(set(out)) != len(out):
        raise ValueError(f"seeds must be distinct, got {out}")
    return out


def _check_targets(targets: Iterable[float]) -> list[float]:
    out = []
    for t in targets:
        try:
            value = float(t)
        except (TypeError, ValueError):
            value = math.nan
        if not 0.0 < value <= 1.0:
            raise ValueError(f"target fractions must be in (0, 1], got {t!r}")
        out.append(value)
    if not out:
        raise ValueError("at least one target fraction is needed")
    return sorted(set(out))


def _check_time_limit(value: float) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"time limit must be a positive number of seconds, got {value!r}")
    return seconds


def _now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


__all__ = [
    "SOLVER_DEFAULTS",
    "BenchmarkResult",
    "RunResult",
    "SolverPlan",
    "SolverSettings",
    "plan_solvers",
    "round_seed",
    "run_benchmark",
    "target_value",
    "time_to_target",
]
