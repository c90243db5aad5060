"""What each solver runs in a benchmark: per-round defaults, ``--param`` overrides, and the
keyword arguments of every ``sample`` call (see :mod:`ising_qubo.bench.runner` for how the
rounds are timed)."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ising_qubo.solvers import get_solver
from ising_qubo.solvers.capabilities import Capability, supports
from ising_qubo.solvers.kernel_threads import PARALLEL_MIN_SECONDS


@dataclass(frozen=True)
class SolverSettings:
    """Per-round parameters of one solver in a benchmark (before ``--param`` overrides).

    ``single_call``: one ``sample`` call with ``time_limit`` = the whole budget instead of
    rounds. Parameters the solver does not declare are dropped, so the table can name
    parameters of solvers that are still being written. ``grow``: ``(parameter, factor,
    cap)``, the parameter's value is multiplied by ``factor`` each round up to ``cap``
    (restarts with growing anneals: short early rounds reach loose targets quickly, long
    later rounds reach tight ones). ``widen``: ``(parameter, wide, seconds)``, the
    parameter (replicas) keeps its value while a round of that value is predicted to
    last under ``seconds`` and becomes ``wide`` from the first round predicted to last
    longer (the prediction: the previous round's time per replica-sweep).
    """

    params: dict[str, Any] = field(default_factory=dict)
    single_call: bool = False
    about: str = ""
    grow: tuple[str, float, int] | None = None
    widen: tuple[str, int, float] | None = None


# Annealers run restarts whose length grows 1.5x per round from 1000 sweeps to 32,000.
_ANNEAL_GROWTH = ("num_sweeps", 1.5, 32_000)


#: Per-round work of each solver, sized for a 10 s budget on Gset-sized problems on a CPU.
SOLVER_DEFAULTS: dict[str, SolverSettings] = {
    "neal": SolverSettings(
        {"num_reads": 1, "num_sweeps": 1000},
        grow=_ANNEAL_GROWTH,
        about="one anneal per round (neal is single-threaded), 1000 "
        "sweeps growing 1.5x per round to 32,000",
    ),
    "openjij": SolverSettings(
        {"num_reads": 1, "num_sweeps": 1000},
        grow=_ANNEAL_GROWTH,
        about="one anneal per round (openjij is single-threaded), 1000 "
        "sweeps growing 1.5x per round to 32,000, as neal",
    ),
    # Replicas as the kernel's thread rule runs them (ising_qubo.solvers.kernel_threads):
    # a round shorter than PARALLEL_MIN_SECONDS runs on one thread, so a second replica
    # there only doubles the round's time; once rounds are long, one replica per core.
    "torch-sa": SolverSettings(
        {"num_reads": 1, "num_sweeps": 1000},
        grow=_ANNEAL_GROWTH,
        widen=("num_reads", os.cpu_count() or 1, PARALLEL_MIN_SECONDS),
        about=f"one replica per round while a round lasts under {PARALLEL_MIN_SECONDS:g} s "
        "(the kernel runs it on one thread), then one per CPU core; 1000 sweeps "
        "growing 1.5x per round to 32,000; raise num_reads on CUDA",
    ),
    "torch-sb": SolverSettings(
        {"num_reads": 64, "num_steps": 1000},
        about="64 agents x 1000 steps per round; raise num_reads on CUDA",
    ),
    "sb-ref": SolverSettings(
        {"num_reads": 64, "num_steps": 1000}, about="reference SB, 64 replicas per round"
    ),
    "tabu": SolverSettings(
        {"num_reads": 1, "time_limit": 0.2}, about="one 0.2 s tabu search per round"
    ),
    "greedy": SolverSettings({"num_reads": 100}, about="100 random descents per round"),
    "de": SolverSettings(
        {"num_reads": 1, "num_generations": 500}, about="one population, 500 generations per round"
    ),
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
    widen: tuple[str, int, float] | None = None

    @property
    def accepted(self) -> set[str]:
        return set(getattr(self.sampler, "parameters", {}) or {})

    def call_params(
        self,
        seed: int,
        round_index: int,
        remaining: float,
        previous: tuple[Mapping[str, Any], float] | None = None,
    ) -> dict[str, Any]:
        """Keyword arguments of one ``sample`` call; ``previous``: the keyword arguments
        and solver seconds of the run's previous round (for ``widen``)."""
        kwargs = dict(self.params)
        accepted = self.accepted
        if self.grow is not None and self.grow[0] in kwargs:
            key, factor, cap = self.grow
            kwargs[key] = int(min(cap, round(kwargs[key] * factor**round_index)))
        if self.widen is not None and self.widen[0] in kwargs and previous is not None:
            key, wide, seconds = self.widen
            if _predicted_seconds(kwargs, previous, key) >= seconds:
                kwargs[key] = wide
        if supports(self.sampler, Capability.TIME_LIMIT):
            own = kwargs.get("time_limit")
            kwargs["time_limit"] = (
                remaining if self.single_call or own is None else min(float(own), remaining)
            )
        if "seed" in accepted:
            kwargs["seed"] = round_seed(seed, round_index)
        return kwargs

    def describe(self) -> dict[str, Any]:
        return {
            "params": dict(self.params),
            "mode": "single call" if self.single_call else "rounds",
            "grow": self.grow,
            "widen": self.widen,
            "about": self.about,
        }


def _predicted_seconds(
    kwargs: Mapping[str, Any], previous: tuple[Mapping[str, Any], float], key: str
) -> float:
    """Seconds a round of ``kwargs`` would take, from the previous round's time per unit
    of work (replicas ``key`` x sweeps or steps where the solver has them)."""
    last, seconds = previous

    def work(params: Mapping[str, Any]) -> float:
        length = params.get("num_sweeps", params.get("num_steps", 1))
        return float(params.get(key, 1)) * float(length)

    return seconds / max(work(last), 1.0) * work(kwargs)


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
        grow, about, widen = settings.grow, settings.about, settings.widen
        for key, value in overrides.pop(name, {}).items():
            if key == "single_call":
                single = _as_bool(value, name)
            elif key == "grow":
                grow, about = _grow_override(value, settings, name)
            elif key == "seed":
                raise ValueError(
                    f"solver {name!r}: seeds are set by the harness (--seeds), not by --param"
                )
            elif key not in accepted:
                raise ValueError(
                    f"solver {name!r} has no parameter {key!r}; its parameters: "
                    f"{', '.join(sorted(accepted)) or 'none'}"
                )
            else:
                params[key] = value
                if widen is not None and key == widen[0]:
                    widen = None  # the user's value holds in every round
                    about = f"{key}={value} per round (--param); " + about.split("; ", 1)[-1]
        plans.append(SolverPlan(name, sampler, params, single, about, grow, widen))
    if not plans:
        raise ValueError("no solvers given")
    if overrides:
        raise ValueError(f"--param for solver(s) not in the run: {', '.join(sorted(overrides))}")
    return plans


def _grow_override(
    value: Any, settings: SolverSettings, solver: str
) -> tuple[tuple[str, float, int] | None, str]:
    """``--param SOLVER:grow=F``: the growing parameter's factor per round (1: every round
    the same length); the notes column of the report says what was run."""
    try:
        factor = float(value)
    except (TypeError, ValueError):
        factor = math.nan
    if not factor >= 1.0 or not math.isfinite(factor):
        raise ValueError(
            f"solver {solver!r}: grow must be a factor >= 1 (1: fixed-length rounds), got {value!r}"
        )
    if settings.grow is None:
        raise ValueError(
            f"solver {solver!r}: its rounds do not grow; grow applies to "
            f"{', '.join(n for n, s in SOLVER_DEFAULTS.items() if s.grow)}"
        )
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


__all__ = [
    "HARNESS_KEYS",
    "SOLVER_DEFAULTS",
    "SolverPlan",
    "SolverSettings",
    "plan_solvers",
    "round_seed",
]
