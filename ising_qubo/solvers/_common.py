"""Pieces every solver front end shares: input checks, timing, array views of a BQM."""

from __future__ import annotations

import functools
import math
import os
import re
import signal
import threading
import time
from collections.abc import Hashable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dimod
import numpy as np


def check_bqm(bqm: Any, solver: str) -> dimod.BinaryQuadraticModel:
    if not isinstance(bqm, dimod.BinaryQuadraticModel):
        raise TypeError(
            f"{solver}: expected a dimod.BinaryQuadraticModel, got {type(bqm).__name__}"
        )
    vectors = bqm.to_numpy_vectors()
    linear, (rows, cols, values), offset = vectors.linear_biases, vectors.quadratic, vectors.offset
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


# One seed range for every solver, refused up front with the solver's name: dwave's
# simulated annealing takes seeds below 2^31 (dimod's initial states, below 2^32).
SEED_LIMIT = 2**31


def check_seed(value: Any, solver: str) -> int | None:
    """None, or an integer in [0, 2^31 - 1]; else a one-line ValueError."""
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or not (0 <= value < SEED_LIMIT)
    ):
        raise ValueError(
            f"{solver}: seed must be None or an integer in [0, 2^31 - 1], got {value!r}"
        )
    return int(value)


INITIAL_STATES_GENERATORS = ("none", "tile", "random")


def check_initial_states_generator(value: Any, solver: str) -> str:
    if not isinstance(value, str) or value not in INITIAL_STATES_GENERATORS:
        raise ValueError(
            f"{solver}: initial_states_generator must be 'none', 'tile' or 'random', got {value!r}"
        )
    return value


def optional_positive(
    value: Any,
    name: str,
    solver: str,
    meaning: str = "a positive number",
    refuse_bool: bool = False,
) -> float | None:
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


# --- Memory guard: a solver's states are estimated and refused before they are allocated.

MEMORY_LIMIT_VARIABLE = "ISING_QUBO_MAX_STATE_BYTES"
# When the machine's memory cannot be read (no sysconf, e.g. Windows).
_FALLBACK_LIMIT = 8 * 2**30
# Per sample, whatever its length: its energy and occurrence count in the SampleSet.
_PER_READ_BYTES = 16
# Scoring states (ArrayModel.energies): gathered pairs per block on sparse models; a dense
# matrix and one BLAS product from this fraction of the pairs coupled and this size on.
_ENERGY_BLOCK_ELEMENTS = 1 << 22
_DENSE_ENERGY_FRACTION = 0.25
_DENSE_ENERGY_MIN = 256
# sampleset_from_states scores with numpy rather than dimod from this much work
# (states x (variables + interactions)): dimod's loop is exact and fast enough below.
_FAST_ENERGY_WORK = 1 << 26
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40, "P": 2**50}
_BYTES_TEXT = re.compile(r"\s*(\d+(?:\.\d*)?(?:e\d+)?)\s*([KMGTP]?)(?:i?B)?\s*", re.IGNORECASE)


def check_states_memory(
    count: int,
    num_variables: int,
    bytes_per_entry: int,
    solver: str,
    *,
    count_text: str | None = None,
    fixed_bytes: int = 0,
    fixed_for: str = "",
) -> None:
    """Refuses, before anything is allocated, a run whose states would not fit in memory.

    The estimate is ``count x (num_variables x bytes_per_entry + 16) + fixed_bytes``:
    ``count`` states (reads, replicas, agents) of ``num_variables`` entries, each costing
    the solver's measured peak ``bytes_per_entry`` (its copies of the states: dimod draws
    them as int64, kernels keep float64 spins, the SampleSet int8), plus each sample's
    energy and count; ``fixed_bytes`` is what the solver needs whatever ``count`` (e.g. a
    dense matrix, named by ``fixed_for``). The limit is :func:`state_memory_limit`. A
    one-line ValueError names the solver, the sizes, the estimate and the limit.
    """
    needed = count * (max(num_variables, 1) * bytes_per_entry + _PER_READ_BYTES) + fixed_bytes
    limit, source = state_memory_limit()
    if needed <= limit:
        return
    what = count_text if count_text is not None else f"num_reads={count}"
    extra = f", {format_bytes(fixed_bytes)} of it for {fixed_for}" if fixed_bytes else ""
    raise ValueError(
        f"{solver}: {what} x {num_variables} variables needs about {format_bytes(needed)} "
        f"of memory (estimated{extra}); the limit is {format_bytes(limit)} ({source})"
    )


def state_memory_limit() -> tuple[int, str]:
    """(bytes a solver may allocate for its states, where that number comes from).

    ``ISING_QUBO_MAX_STATE_BYTES`` when set (bytes, or with a K/M/G/T suffix in powers of
    1024: ``8G``); else half of the memory this process can have: the machine's physical
    memory, or the cgroup (container) limit when lower. Half, because the problem, the
    interpreter and the results need room too. 8 GiB where neither can be read.
    """
    text = os.environ.get(MEMORY_LIMIT_VARIABLE, "").strip()
    if text:
        return _parse_bytes(text), f"{MEMORY_LIMIT_VARIABLE}={text}"
    total, whose = _available_memory()
    if total is None:
        return _FALLBACK_LIMIT, f"the machine's memory is unknown; {MEMORY_LIMIT_VARIABLE} sets it"
    return total // 2, f"half of {whose} {format_bytes(total)}; {MEMORY_LIMIT_VARIABLE} sets it"


def _parse_bytes(text: str) -> int:
    match = _BYTES_TEXT.fullmatch(text)
    number = float(match.group(1)) * _UNITS[match.group(2).upper()] if match else 0.0
    if not 1 <= number < 2**63:
        raise ValueError(
            f"{MEMORY_LIMIT_VARIABLE}={text!r}: expected a positive number of bytes "
            "(e.g. 8000000000 or 8G)"
        )
    return int(number)


@functools.cache
def _available_memory() -> tuple[int | None, str]:
    """(bytes, whose), the smaller of physical memory and a cgroup v2/v1 limit."""
    try:
        physical: int | None = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows) or no such name
        physical = None
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            limit = int(Path(path).read_text().strip())  # "max" (no limit) fails here
        except (OSError, ValueError):
            continue
        if physical is None or limit < physical:
            return limit, "the container's memory limit,"
    return physical, "this machine's memory,"


def format_bytes(count: float) -> str:
    """``12582912`` -> ``"12.0 MiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if count < 1024 or unit == "PiB":
            if unit == "B":
                return f"{count:.0f} B"
            return f"{count:.1f} {unit}" if count < 1000 or unit != "PiB" else f"{count:.3g} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


class Deadline:
    """``expired()`` after ``seconds`` (never, for None)."""

    def __init__(self, seconds: float | None) -> None:
        self.start = time.perf_counter()
        self.end = None if seconds is None else self.start + seconds

    def expired(self) -> bool:
        return self.end is not None and time.perf_counter() >= self.end

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def remaining(self) -> float | None:
        """Seconds left (may be negative), or None without a limit."""
        return None if self.end is None else self.end - time.perf_counter()


class Stop:
    """When a solver's loop should stop: its time limit passed, or Ctrl-C was pressed.

    ``stop()`` is true once either happened. The clock starts at construction, so set-up
    counts against the time limit. Inside ``with stop:`` in the main thread, while
    Python's default SIGINT handler is installed, a first Ctrl-C only sets
    ``interrupted``: the loop ends at its next check and the solver returns the best it
    has, with ``info["interrupted"] = True``; a second Ctrl-C raises KeyboardInterrupt as
    usual. Elsewhere (another thread, a custom handler) Ctrl-C raises KeyboardInterrupt;
    loops catch it between steps and call :meth:`interrupt`, re-raising a second one. So
    Ctrl-C once stops the solve with its best so far, twice aborts it.

    A caller that loops over solves sees the first Ctrl-C only as
    ``info["interrupted"]`` and should stop on it.
    """

    def __init__(self, seconds: float | None) -> None:
        self.deadline = Deadline(seconds)
        self.interrupted = False
        self._previous_handler: Any = None

    def __call__(self) -> bool:
        return self.interrupted or self.deadline.expired()

    def interrupt(self) -> bool:
        """Records a Ctrl-C caught as KeyboardInterrupt; False when one had come already
        (the caller then re-raises: a second Ctrl-C aborts)."""
        first = not self.interrupted
        self.interrupted = True
        return first

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self.interrupted:
            raise KeyboardInterrupt
        self.interrupted = True

    def __enter__(self) -> Stop:
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            self._previous_handler = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._previous_handler is not None:
            signal.signal(signal.SIGINT, self._previous_handler)
            self._previous_handler = None

    def report(self, info: dict[str, Any]) -> None:
        """Marks ``info`` as an interrupted run's, if it was one."""
        if self.interrupted:
            info["interrupted"] = True

    def limit_only(self, reserve: float = 0.0) -> Stop | None:
        """A stop true only once ``reserve`` seconds are left of the time limit (None
        without a limit): for the work that finishes what a Ctrl-C ended (a final
        descent makes the states returned local minima), ``reserve`` kept for what comes
        after it."""
        return None if self.deadline.end is None else _LimitOnly(self, reserve)


class _LimitOnly(Stop):
    """:meth:`Stop.limit_only`: the parent's deadline less ``reserve``, blind to Ctrl-C."""

    def __init__(self, parent: Stop, reserve: float) -> None:
        super().__init__(None)
        assert parent.deadline.end is not None, "limit_only needs a time limit"
        self.deadline.end = parent.deadline.end - reserve

    def __call__(self) -> bool:
        return self.deadline.expired()

    def __enter__(self) -> Stop:
        return self


def parse_initial_states(
    sampler: dimod.Initialized, bqm: dimod.BinaryQuadraticModel, **arguments: Any
) -> np.ndarray:
    """``sampler.parse_initial_states(bqm, ...)``'s states, without their energies.

    dimod scores every initial state on ``bqm`` (num_reads x interactions operations:
    seconds for thousands of reads of a dense problem, all before the time limit can be
    checked); parsing against a model with the same variables and no biases gives the
    same states at the cost of the linear terms. Columns are in ``bqm.variables`` order
    (dimod keeps the order of labelled initial states).
    """
    if (
        arguments.get("initial_states") is None
        and arguments.get("initial_states_generator", "random") == "random"
        and isinstance(arguments.get("num_reads"), (int, np.integer, type(None)))
        and (arguments.get("num_reads") or 1) >= 1
    ):
        # Random starts only: dimod's own generator, called directly, the same states.
        # Parsing builds and labels a SampleSet: 0.93 ms against 0.11 ms on Gset's G1,
        # 5% of a 1000-sweep anneal of it.
        return random_initial_states(bqm, arguments.get("num_reads") or 1, arguments.get("seed"))
    labels = list(bqm.variables)
    blank = dimod.BinaryQuadraticModel.from_numpy_vectors(
        np.zeros(len(labels)), ([], [], []), 0.0, bqm.vartype, variable_order=labels
    )
    states = sampler.parse_initial_states(blank, **arguments).initial_states
    columns = [states.variables.index(v) for v in labels]
    return np.ascontiguousarray(states.record.sample[:, columns])


def random_initial_states(
    bqm: dimod.BinaryQuadraticModel, num_reads: int, seed: int | None
) -> np.ndarray:
    """The states ``dimod.Initialized.parse_initial_states`` draws for ``num_reads``
    random starts (its "random" generator: ``RandomState(seed).choice`` over the sorted
    vartype values), in ``bqm.variables`` order, without building a SampleSet."""
    values = np.asarray(sorted(bqm.vartype.value), dtype=np.int8)
    states = np.random.RandomState(seed).choice(values, size=(num_reads, bqm.num_variables))
    return np.ascontiguousarray(states)


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
        """The BQM's arrays, in ``vartype``. The change of vartype is done on the arrays:
        dimod's ``change_vartype`` copies the model first (0.6-1.2 s for 8.4 million
        interactions, inside a solver's time limit)."""
        labels = list(bqm.variables)
        vectors = bqm.to_numpy_vectors(variable_order=labels)
        rows, cols, data = vectors.quadratic
        linear = np.asarray(vectors.linear_biases, float)
        rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
        data, offset = np.asarray(data, float), float(vectors.offset)
        n = len(labels)
        if bqm.vartype is not vartype and vartype is dimod.SPIN:  # x = (s + 1) / 2
            touching = np.bincount(rows, data, n) + np.bincount(cols, data, n)
            offset += linear.sum() / 2 + data.sum() / 4
            linear = linear / 2 + touching / 4
            data = data / 4
        elif bqm.vartype is not vartype:  # s = 2 x - 1
            touching = np.bincount(rows, data, n) + np.bincount(cols, data, n)
            offset += data.sum() - linear.sum()
            linear = 2 * linear - 2 * touching
            data = 4 * data
        return cls(labels, linear, rows, cols, data, offset, vartype)

    @property
    def num_variables(self) -> int:
        return len(self.labels)

    def energies(self, states: np.ndarray) -> np.ndarray:
        """Energies of a (k, n) array of states in this model's vartype.

        Dense models go through one BLAS product with :attr:`dense_couplings`; sparse ones
        gather the coupled pairs a block of states at a time, so the temporaries stay
        below ``_ENERGY_BLOCK_ELEMENTS`` numbers (128 states of a complete 4,096-variable
        model gathered at once took 8.6 GB).
        """
        states = np.asarray(states, dtype=float)
        couplings = self.dense_couplings
        if couplings is not None:
            quadratic = np.einsum("ij,ij->i", states @ couplings, states)
        else:
            quadratic = np.empty(len(states))
            block = max(1, _ENERGY_BLOCK_ELEMENTS // max(1, len(self.data)))
            for a in range(0, len(states), block):
                part = states[a : a + block]
                quadratic[a : a + block] = (part[:, self.rows] * part[:, self.cols]) @ self.data
        return states @ self.linear + quadratic + self.offset

    @functools.cached_property
    def dense_couplings(self) -> np.ndarray | None:
        """The couplings as an n x n matrix (each pair once), or None where that does not
        pay: fewer than ``_DENSE_ENERGY_FRACTION`` of the pairs coupled, tiny models, or a
        matrix over a quarter of :func:`state_memory_limit`."""
        n = self.num_variables
        pairs = n * (n - 1) // 2
        if n < _DENSE_ENERGY_MIN or len(self.data) < _DENSE_ENERGY_FRACTION * pairs:
            return None
        if 8 * n * n > state_memory_limit()[0] // 4:
            return None
        return np.bincount(self.rows * n + self.cols, self.data, n * n).reshape(n, n)

    @property
    def energy_work(self) -> int:
        """Numbers touched to score one state: what decides whether scoring is costly."""
        return self.num_variables + len(self.data)


def corner_bqm(bqm: dimod.BinaryQuadraticModel, side: float) -> dimod.BinaryQuadraticModel:
    """The sub-model spanned by ``bqm``'s first ``side`` share of variables (so about
    ``side``^2 of its couplings), labelled 0..m-1: solvers time a fixed per-call cost on
    it and scale by the entries, instead of paying that cost on the whole model."""
    m = max(2, int(bqm.num_variables * side))
    vectors = bqm.to_numpy_vectors()
    rows, cols, data = vectors[1]
    inside = (rows < m) & (cols < m)
    return dimod.BinaryQuadraticModel.from_numpy_vectors(
        vectors[0][:m], (rows[inside], cols[inside], data[inside]), float(vectors[2]), bqm.vartype
    )


def symmetric_dense(n: int, rows: np.ndarray, cols: np.ndarray, data: np.ndarray) -> np.ndarray:
    """The symmetric coupling matrix J (J[i, j] = J[j, i] = coupling of i and j, duplicates
    added), flattened row-major: the dense layout of the compiled kernels."""
    flat = np.bincount(np.asarray(rows, np.int64) * n + cols, data, n * n).reshape(n, n)
    return np.ascontiguousarray(flat + flat.T).ravel()


def symmetric_csr(
    n: int, rows: np.ndarray, cols: np.ndarray, data: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The same matrix as CSR (indptr int64, indices int32, values float64): the sparse
    layout of the compiled kernels (int32 indices halve the memory sweeps stream)."""
    from ising_qubo.lowrank import csr_from_coo

    indptr, indices, values = csr_from_coo(
        n, np.concatenate([rows, cols]), np.concatenate([cols, rows]), np.concatenate([data, data])
    )
    return indptr, indices.astype(np.int32), values


def sampleset_from_states(
    states: np.ndarray,
    vartype: dimod.Vartype,
    bqm: dimod.BinaryQuadraticModel,
    info: dict[str, Any],
    model: ArrayModel | None = None,
    energies: np.ndarray | None = None,
) -> dimod.SampleSet:
    """A SampleSet in ``bqm``'s vartype whose energies are recomputed from the problem.

    Solvers may work in either vartype internally; recomputing on the original model keeps
    reported energies exactly those of the user's problem. dimod recomputes them, one
    interaction at a time; when the solver passes its ``model`` (in ``vartype``, the
    vartype of ``states``) and scoring is large (``_FAST_ENERGY_WORK`` numbers or more),
    :meth:`ArrayModel.energies` does it instead: equal up to rounding, and 128 states of
    a complete 4,096-variable model take 0.2 s instead of dimod's 2-4 s, which came after
    a time limit had stopped the solver. A solver that has the energies already (from
    its own float64 fields) passes them as ``energies``.
    """
    states = np.asarray(states, dtype=np.int8)
    if (
        energies is None
        and model is not None
        and model.vartype is vartype
        and len(states) * model.energy_work >= _FAST_ENERGY_WORK
    ):
        energies = model.energies(states)
    if vartype is not bqm.vartype:
        states = (2 * states - 1) if bqm.vartype is dimod.SPIN else (states + 1) // 2
    samples = (states.astype(np.int8), list(bqm.variables))
    if energies is None:
        return dimod.SampleSet.from_samples_bqm(samples, bqm, info=info)
    return dimod.SampleSet.from_samples(samples, bqm.vartype, energies, info=info)
