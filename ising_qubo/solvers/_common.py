"""Pieces every solver front end shares: input checks, timing, array views of a BQM."""

from __future__ import annotations

import math
import time
from collections.abc import Hashable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import dimod
import numpy as np


def check_bqm(bqm: Any, solver: str) -> dimod.BinaryQuadraticModel:
    if not isinstance(bqm, dimod.BinaryQuadraticModel):
        raise TypeError(f"{solver}: expected a dimod.BinaryQuadraticModel, "
                        f"got {type(bqm).__name__}")
    linear, (rows, cols, values), offset = bqm.to_numpy_vectors()
    if not np.all(np.isfinite(linear)):
        v = bqm.variables[int(np.flatnonzero(~np.isfinite(linear))[0])]
        raise ValueError(f"{solver}: linear bias of variable {v!r} is not finite")
    if not np.all(np.isfinite(values)):
        k = int(np.flatnonzero(~np.isfinite(values))[0])
        u, v = bqm.variables[int(rows[k])], bqm.variables[int(cols[k])]
        raise ValueError(f"{solver}: quadratic bias ({u!r}, {v!r}) is not finite")
    if not math.isfinite(offset):
        raise ValueError(f"{solver}: offset is not finite")
    return bqm


def positive_int(value: Any, name: str, solver: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{solver}: {name} must be a positive integer, got {value!r}")
    return int(value)


def optional_positive(value: Any, name: str, solver: str, meaning: str = "a positive number",
                      refuse_bool: bool = False) -> float | None:
    """None, or a finite number > 0; else ValueError naming the parameter and value."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if (refuse_bool and isinstance(value, bool)) or not number > 0 or not math.isfinite(number):
        raise ValueError(f"{solver}: {name} must be {meaning}, got {value!r}")
    return number


def optional_time_limit(value: Any, solver: str) -> float | None:
    return optional_positive(value, "time_limit", solver, "a positive number of seconds")


def in_unit_interval(value: Any, name: str, solver: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"{solver}: {name} must be in [0, 1], got {value!r}")
    return number


class Deadline:
    """``expired()`` after ``seconds`` (never, for None)."""

    def __init__(self, seconds: float | None) -> None:
        self.start = time.perf_counter()
        self.end = None if seconds is None else self.start + seconds

    def expired(self) -> bool:
        return self.end is not None and time.perf_counter() >= self.end

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


@contextmanager
def wall_timer(info: dict[str, Any]):
    """Adds ``info["timing"]["wall_s"]`` for the block, keeping any timing already there."""
    start = time.perf_counter()
    try:
        yield
    finally:
        info.setdefault("timing", {})["wall_s"] = time.perf_counter() - start


@dataclass(frozen=True)
class ArrayModel:
    """A BQM as arrays in one vartype: ``E = linear.x + sum data x[rows] x[cols] + offset``."""

    labels: list[Hashable]
    linear: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    data: np.ndarray
    offset: float
    vartype: dimod.Vartype

    @classmethod
    def from_bqm(cls, bqm: dimod.BinaryQuadraticModel, vartype: dimod.Vartype) -> ArrayModel:
        converted = bqm if bqm.vartype is vartype else bqm.change_vartype(vartype, inplace=False)
        labels = list(bqm.variables)
        linear, (rows, cols, data), offset = converted.to_numpy_vectors(variable_order=labels)
        return cls(labels, np.asarray(linear, float), np.asarray(rows, np.int64),
                   np.asarray(cols, np.int64), np.asarray(data, float), float(offset), vartype)

    @property
    def num_variables(self) -> int:
        return len(self.labels)

    def energies(self, states: np.ndarray) -> np.ndarray:
        """Energies of a (k, n) array of states in this model's vartype."""
        states = np.asarray(states, dtype=float)
        quadratic = (states[:, self.rows] * states[:, self.cols]) @ self.data
        return states @ self.linear + quadratic + self.offset


def sampleset_from_states(
    states: np.ndarray,
    vartype: dimod.Vartype,
    bqm: dimod.BinaryQuadraticModel,
    info: dict[str, Any],
) -> dimod.SampleSet:
    """A SampleSet in ``bqm``'s vartype whose energies dimod recomputes from ``bqm``.

    Solvers may work in either vartype internally; recomputing on the original model keeps
    reported energies exactly those of the user's problem.
    """
    states = np.asarray(states, dtype=np.int8)
    if vartype is not bqm.vartype:
        states = (2 * states - 1) if bqm.vartype is dimod.SPIN else (states + 1) // 2
    sampleset = dimod.SampleSet.from_samples_bqm((states.astype(np.int8), list(bqm.variables)),
                                                bqm, info=info)
    return sampleset
