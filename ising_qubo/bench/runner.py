"""Time-to-target runs: each solver repeats fixed-size rounds until its time limit.

One run is one (instance, solver, seed). A run calls ``sampler.sample(bqm, **params,
seed=derived_seed)`` again and again ("rounds", i.e. restarts) until the summed time of
those calls reaches the time limit, and keeps the best objective so far after each round.
The time of a run is *solver time*: the sum of the ``sample`` calls, so the harness's own
work (energy checks, progress bar, writing files) is not charged to any solver. A round's
result exists only when the round ends, so time-to-target has the resolution of one round;
the per-round work in :data:`~ising_qubo.bench.plans.SOLVER_DEFAULTS` is chosen small
enough to give several points per run on Gset-sized problems on a CPU. What each solver runs
is planned in :mod:`ising_qubo.bench.plans`, the results are recorded in
:mod:`ising_qubo.bench.record` and written by :mod:`ising_qubo.bench.report`.

Solvers that take ``time_limit`` get ``time_limit = min(their per-round value, time left)``,
so the last round ends at the limit. Single-call solvers (CP-SAT, exact, and any solver
without a ``seed`` parameter, which would only repeat itself) make one call with the whole
time limit; their trajectory has one point. A run stops early when its best reaches the
best-known value (``stop_at_best_known``) or the solver reports ``status == "OPTIMAL"``.

Runs go instance -> seed -> solver, all in this process, so every solver sees the same
machine conditions within a few seconds of the others. The solver order turns by one
place per seed (:func:`rotated`), so each solver takes each place equally often: on a
loaded machine the round right after a long run is slower (measured at background load
2 on G3, medians of 12: a 1000-sweep round right after 1 s of busy work took 11% (neal)
and 22% (torch-sa) longer than the same round second in line). ``background_load=N`` runs them all
next to N busy processes that the harness starts after the warm-up and stops at the end
(:mod:`ising_qubo.bench.load`); N and the load average are recorded with the results.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dimod
import numpy as np

from ising_qubo._progress import bars_allowed

# SOLVER_DEFAULTS, SolverSettings, round_seed, target_value and time_to_target are only
# re-exported: ``from ising_qubo.bench.runner import ...`` keeps working since they moved
from ising_qubo.bench.instances import BenchInstance, collect_instances
from ising_qubo.bench.load import BackgroundLoad, check_count
from ising_qubo.bench.plans import (
    SOLVER_DEFAULTS,
    SolverPlan,
    SolverSettings,
    plan_solvers,
    round_seed,
)
from ising_qubo.bench.record import (
    RunResult,
    reaches,
    target_value,
    time_to_target,
)
from ising_qubo.bench.report import BenchmarkResult, machine_info

DEFAULT_OUT_BASE = "bench-results"
"""Results go to ``./bench-results/<UTC timestamp>/`` unless ``out_dir`` / ``--out`` says."""


def default_out_dir() -> Path:
    """``./bench-results/<UTC timestamp>/`` under the current working directory (a suffix
    avoids collisions): where the user runs the command, never inside the installed package."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = Path.cwd() / DEFAULT_OUT_BASE
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
    progress: bool | None = None,
    out_dir: str | Path | None = None,
    *,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    bench_dir: str | Path | None = None,
    stop_at_best_known: bool = True,
    plot: bool = True,
    warmup: bool = True,
    command: list[str] | None = None,
    background_load: int = 0,
) -> BenchmarkResult:
    """Run every solver on every instance for every seed; write results as they come.

    ``instances``: :class:`BenchInstance` objects or specs for :func:`collect_instances`.
    ``solvers``: registered names, ``(name, sampler)`` pairs or a ``{name: sampler}`` map.
    ``params``: ``{solver: {key: value}}`` overrides of :data:`SOLVER_DEFAULTS`.
    ``out_dir``: where ``results.json``, ``table.md`` and ``trajectories.png`` go (default
    :func:`default_out_dir`). ``results.json`` is rewritten atomically after every seed of
    every instance. On KeyboardInterrupt everything gathered so far is written with
    ``"interrupted": true`` and the interrupt is re-raised.
    ``background_load``: busy processes to run beside the solvers (0 to 4 per CPU), from
    after the warm-up to the end; recorded in ``settings.background_load``.
    """
    load_processes = check_count(background_load)
    seeds = _check_seeds(seeds)
    targets = _check_targets(target_fractions)
    time_limit = _check_time_limit(time_limit)
    plans = plan_solvers(solvers, params)
    given = list(instances)
    chosen = [i for i in given if isinstance(i, BenchInstance)]
    if len(chosen) != len(given):  # some specs: collect_instances reads them all
        chosen = collect_instances(given, bench_dir)
    names = [i.name for i in chosen]
    if len(set(names)) != len(names):
        raise ValueError("instance names must be unique within a benchmark")
    if warmup:
        for plan in plans:
            _warm_up(plan)

    out = Path(out_dir) if out_dir is not None else default_out_dir()
    out.mkdir(parents=True, exist_ok=True)
    result = BenchmarkResult(
        chosen,
        plans,
        seeds,
        time_limit,
        targets,
        stop_at_best_known,
        machine=machine_info(),
        started=_now(),
        out_dir=out,
        command=command,
    )
    total_runs = len(chosen) * len(seeds) * len(plans)
    bar = _progress_bar(total_runs, progress)
    # the processes' lifetime cap: far beyond the planned solver time (a safety net only)
    with BackgroundLoad(load_processes, max_seconds=3 * total_runs * time_limit + 600) as load:
        result.background_load = load.record()
        try:
            for instance in chosen:
                for position, seed in enumerate(seeds):
                    for plan in rotated(plans, position):
                        run = RunResult(instance.name, plan.name, seed)
                        result.runs.append(run)
                        _run_one(run, instance, plan, result, bar)
                        bar.update(1)
                    result.background_load = load.record()
                    result.write(out, table=False)
                result.write(out, table=True)
        except KeyboardInterrupt:
            result.interrupted = True
            result.finished = _now()
            result.background_load = load.record()
            bar.close()
            result.write(out, table=True, plot=plot)
            raise
        result.background_load = load.record()
    bar.close()
    result.finished = _now()
    result.write(out, table=True, plot=plot)
    return result


def rotated(plans: list[SolverPlan], position: int) -> list[SolverPlan]:
    """``plans`` turned left by ``position`` places: the solver order of the seed at
    ``position`` in the run's seed list."""
    if not plans:
        return []
    shift = position % len(plans)
    return plans[shift:] + plans[:shift]


def _run_one(
    run: RunResult, instance: BenchInstance, plan: SolverPlan, result: BenchmarkResult, bar: Any
) -> None:
    goal = instance.best_known if result.stop_at_best_known else None
    last_refresh = 0.0
    previous: tuple[dict[str, Any], float] | None = None  # the last round's kwargs, seconds
    try:
        while run.elapsed < result.time_limit:
            kwargs = plan.call_params(
                run.seed, run.rounds, result.time_limit - run.elapsed, previous
            )
            start = time.perf_counter()
            sampleset = plan.sampler.sample(instance.bqm, **kwargs)
            seconds = time.perf_counter() - start
            run.elapsed += seconds
            previous = (kwargs, seconds)
            run.rounds += 1
            run.observe(sampleset, instance)
            if getattr(sampleset, "info", {}).get("interrupted"):
                # the solver kept its best state on Ctrl-C; the benchmark still stops here
                raise KeyboardInterrupt
            status = sampleset.info.get("status") if hasattr(sampleset, "info") else None
            run.status = None if status is None else str(status)
            if time.perf_counter() - last_refresh > 0.5 and run.best_objective is not None:
                last_refresh = time.perf_counter()
                bar.set_postfix_str(
                    f"{instance.name} {plan.name} seed={run.seed} best={run.best_objective:.6g}"
                )
            if plan.single_call or run.status == "OPTIMAL":
                break
            if (
                goal is not None
                and run.best_objective is not None
                and reaches(run.best_objective, goal, goal, instance.sense)
            ):
                break
    except KeyboardInterrupt:
        run.finish()
        raise
    except Exception as exc:  # one failing solver must not end the whole benchmark
        run.error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        if not any(
            r.error
            for r in result.runs
            if r is not run and (r.instance, r.solver) == (run.instance, run.solver)
        ):
            bar.write(
                f"warning: {plan.name} failed on {instance.name} (seed {run.seed}; "
                f"later failures on this instance not repeated): {run.error}",
                file=sys.stderr,
            )
    run.complete = True
    run.finish()


def _warm_up(plan: SolverPlan) -> None:
    """One untimed call on a tiny problem: imports, allocators and CUDA start-up happen here."""
    rng = np.random.default_rng(12345)
    n = 8
    rows, cols = np.triu_indices(n, 1)
    bqm = dimod.BinaryQuadraticModel.from_numpy_vectors(
        rng.standard_normal(n), (rows, cols, rng.standard_normal(len(rows))), 0.0, dimod.SPIN
    )
    kwargs = plan.call_params(0, 0, 0.2)
    try:
        plan.sampler.sample(bqm, **kwargs)
    except Exception as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        raise RuntimeError(
            f"solver {plan.name!r} failed on a warm-up problem with "
            f"parameters {plan.params}: {message}"
        ) from exc


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, text: str) -> None:
        pass

    def write(self, text: str, file: Any = None) -> None:
        print(text, file=file or sys.stderr)

    def close(self) -> None:
        pass


def _progress_bar(total: int, enabled: bool | None) -> Any:
    """The bar on stderr: ``None`` shows it only when stderr is a terminal (whatever
    stdout is) and the command's output level allows bars (not ``--quiet``), so that a
    benchmark whose output goes to a log file does not fill it with redrawn bars."""
    if enabled is None:
        enabled = sys.stderr.isatty() and bars_allowed()
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
