"""``tabu``: dwave-samplers' multistart tabu search, with a total wall-clock limit."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import dimod
import numpy as np
from dwave.samplers import TabuSampler
from dwave.samplers.tabu.tabu_search import TabuSearch

from ising_qubo.solvers._common import (
    Stop,
    check_states_memory,
    optional_time_limit,
    parse_initial_states,
    wall_timer,
)
from ising_qubo.solvers._dwave import STATE_BYTES, WallTimed, descent_fallback
from ising_qubo.solvers.capabilities import Capability as C

# Reads run in batches of about this many milliseconds of tabu search (by ``timeout``),
# between which the time limit and Ctrl-C are checked.
_BATCH_MS = 250
# dwave's tabu works on a dense n x n float64 matrix: the one built here, and the C++
# search's own copy of it.
_MATRIX_COPIES = 2
# From this many variables on, a read's set-up (copies of the dense matrix) is timed before
# the first read under a time limit (:func:`read_setup_seconds`), on a corner this large.
_LARGE = 1500
_CALIBRATION_SIZE = 1000
# The first read's set-up may take at most this fraction of the time left (the rest is
# for the search itself).
_READ_SHARE = 0.5
# Floor of a read's set-up per matrix entry: 2.0 s for 8,000 variables (64 M entries) on
# the idle 2-core VM is 3.1e-8 s; with margin.
_SECONDS_PER_ENTRY = 5e-8


class TabuSolver(WallTimed, TabuSampler):
    """dwave-samplers' ``TabuSampler``; ``time_limit`` (seconds) is shared by all reads.

    dwave's own ``timeout`` is in milliseconds per read; ``time_limit`` sets it so that
    the whole call respects the limit: before each batch of reads, to the time left over
    the reads left, less what each read was measured to overrun its ``timeout`` (tens of
    ms on a dense 300-variable problem), and at least 1 ms. The reads run in batches
    (seeds drawn from ``seed``); between batches the time limit is checked (reads that do
    not fit are not run) and Ctrl-C stops the run: the reads done come back with
    ``info["interrupted"] = True``. One read (a C++ call) cannot be interrupted.

    dwave's tabu search needs the problem as a dense n x n matrix, also for a sparse
    problem: 3.2 GB for 20,000 variables, plus the C++ search's own copy. The matrix is
    built once per call (dwave builds it, in three temporary copies, at every batch: a
    20,000-variable call took 75 s and 15 GB under a 5 s limit), its size is checked
    against the memory limit before anything is allocated, and the time spent building it
    counts in ``time_limit``.
    """

    solver_name = "tabu"
    capabilities = frozenset({C.TIME_LIMIT, C.INTERRUPT, C.INITIAL_STATES})

    def __init__(self) -> None:
        super().__init__()
        self.parameters["time_limit"] = []  # type: ignore[index]  # dwave declares it None

    def sample(  # type: ignore[override]  # dwave's named keywords pass via **parameters
        self, bqm: dimod.BinaryQuadraticModel, time_limit: float | None = None, **parameters: Any
    ) -> dimod.SampleSet:
        seconds = optional_time_limit(time_limit, self.solver_name)
        stop = Stop(seconds)
        parameters = self._checked(bqm, parameters)
        n = bqm.num_variables
        reads_asked = parameters.get("num_reads") or 1
        check_states_memory(
            reads_asked,
            n,
            STATE_BYTES,
            self.solver_name,
            fixed_bytes=_MATRIX_COPIES * 8 * n * n,
            fixed_for=f"the dense {n} x {n} matrix of dwave's tabu search",
        )
        if not bqm.num_variables:
            return self._timed_sample(bqm, **parameters)
        seed = parameters.pop("seed", None)
        states = parse_initial_states(
            self,
            bqm.binary,
            initial_states=parameters.pop("initial_states", None),
            initial_states_generator=parameters.pop("initial_states_generator", "random"),
            num_reads=parameters.pop("num_reads", None),
            seed=seed,
        )
        reads = len(states)
        rng = np.random.default_rng(seed)
        labels = list(bqm.variables)
        info: dict[str, Any] = {}
        parts: list[dimod.SampleSet] = []
        overrun = 0.0  # seconds a read took beyond its timeout, last measured
        start = 0
        binary = bqm.binary  # dimod caches the view: dwave's sample() gets this same object
        with stop, wall_timer(info):
            if seconds is not None and n >= _LARGE:
                # before the n x n matrix exists: 3.2 GB and seconds for 20,000 variables
                overrun = read_setup_seconds(n)  # until a read is measured
                left = stop.deadline.remaining() or 0.0
                if overrun > _READ_SHARE * left:
                    info["fallback"] = (
                        f"one tabu read of {n} variables needs about {overrun:.1f} s of "
                        f"set-up (a dense matrix, copied), more than the "
                        f"{max(left, 0.0):.1f} s left of time_limit: returned a steepest descent "
                        f"from the first initial state instead"
                    )
                    parts.append(
                        descent_fallback(
                            bqm, states[0], None, info["fallback"], stop.deadline.remaining()
                        )
                    )
                    start = reads
            with self._matrix_of(binary) if start < reads else contextlib.nullcontext():
                while start < reads:
                    if parts and stop():
                        break
                    remaining = stop.deadline.remaining()  # None exactly when seconds is None
                    if remaining is not None:
                        share = remaining / (reads - start) - overrun
                        parameters["timeout"] = max(1, int(1000 * share))
                    timeout = parameters.get("timeout", 20)
                    positive = timeout is not None and timeout > 0
                    size = max(1, _BATCH_MS // timeout) if positive else 1
                    if seconds is not None:  # a batch is at most about 2% of the limit
                        size = max(1, min(size, int(20 * seconds / timeout)))
                    batch = states[start : start + size]
                    began = time.perf_counter()
                    try:
                        parts.append(
                            super(WallTimed, self).sample(
                                bqm,
                                initial_states=(batch, labels),
                                seed=int(rng.integers(2**32)),
                                **parameters,
                            )
                        )
                    except KeyboardInterrupt:
                        if not stop.interrupt() or not parts:
                            raise
                        break
                    if seconds is not None:
                        took = (time.perf_counter() - began) / len(batch)
                        overrun = max(0.0, took - timeout / 1000)
                    start += len(batch)
        sampleset = parts[0] if len(parts) == 1 else dimod.concatenate(parts)
        sampleset.info["timing"] = {"wall_s": info["timing"]["wall_s"]}
        if "fallback" in info:  # the descent's own words, which may add to it
            sampleset.info["fallback"] = parts[0].info.get("fallback", info["fallback"])
        stop.report(sampleset.info)
        return sampleset

    # ----- the dense matrix, built once per call -------------------------------------
    _local = threading.local()  # one sampler may serve several threads

    def _matrix_of(self, binary: dimod.BinaryQuadraticModel) -> _PreparedMatrix:
        return _PreparedMatrix(self._local, binary)

    def _bqm_to_tabu_qubo(self, bqm: dimod.BinaryQuadraticModel):  # type: ignore[override]
        """dwave's hook (a staticmethod there): the matrix prepared for this call when
        ``bqm`` is the model it was prepared for, else dwave's own construction."""
        prepared = getattr(self._local, "prepared", None)
        if prepared is not None and prepared[0] is bqm:
            return prepared[1], prepared[2]
        return TabuSampler._bqm_to_tabu_qubo(bqm)


class _PreparedMatrix:
    """Context that holds dwave's tabu matrix of one model for the length of one call."""

    def __init__(self, local: threading.local, binary: dimod.BinaryQuadraticModel) -> None:
        self.local, self.binary = local, binary

    def __enter__(self) -> np.ndarray:
        matrix, order = tabu_matrix(self.binary)
        self.local.prepared = (self.binary, matrix, order)
        return matrix

    def __exit__(self, *exc: object) -> None:
        self.local.prepared = None


def read_setup_seconds(n: int) -> float:
    """Estimated fixed cost of one dwave tabu read on ``matrix`` (seconds), at the
    machine's current speed.

    Each read copies the dense matrix element by element into C++ vectors, twice more by
    value, and allocates and fills another n x n table after its first search: 10 s for
    8,000 variables on a busy 2-core machine (2 s idle, half of it system time), whatever
    ``timeout`` says; once 17 s beside a test suite with no CPU shortage. Timed here on a
    zero matrix of ``_CALIBRATION_SIZE`` variables (the copies do not depend on the values)
    with a zero timeout and scaled by n^2, with 50% added because a large matrix misses the
    caches more; building the matrix itself costs less than one of its copies.
    """
    size = min(n, _CALIBRATION_SIZE)
    corner = np.zeros((size, size))
    began = time.perf_counter()
    TabuSearch(corner, np.zeros(size, dtype=np.intc), min(20, size // 4), 0, 0, 0)
    scaled = 1.5 * (time.perf_counter() - began) * (n / size) ** 2
    # A large matrix's copies are fresh memory: page faults (system time) that a corner
    # reusing the allocator's memory does not pay. Never estimate below what an idle
    # machine measured per entry, page faults included.
    return max(scaled, _SECONDS_PER_ENTRY * n * n)


def tabu_matrix(binary: dimod.BinaryQuadraticModel) -> tuple[np.ndarray, list[Any]]:
    """The symmetric matrix dwave's ``TabuSampler._bqm_to_tabu_qubo`` returns (linear
    biases on the diagonal, half of each quadratic bias on both sides), built in one
    n x n array instead of three."""
    order = list(binary.variables)
    vectors = binary.to_numpy_vectors(order)
    ldata, (irow, icol, qdata) = vectors[0], vectors[1]
    n = len(ldata)
    matrix = np.zeros((n, n), dtype=np.double)
    matrix[np.arange(n), np.arange(n)] = ldata
    half = 0.5 * np.asarray(qdata, dtype=np.double)
    matrix[irow, icol] += half
    matrix[icol, irow] += half
    return matrix, order
