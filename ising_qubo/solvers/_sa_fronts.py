"""Plain-Python fronts of torch-sa's CPU kernels for one problem, for callers outside the
annealing loop: the fitted temperature range (:mod:`ising_qubo.solvers.schedule`) and
the torch backend's final descent (:mod:`ising_qubo.solvers._sa_torch`).

Each call runs on the ahead-of-time compiled kernel (:mod:`ising_qubo.solvers._sa_native`)
when it is installed and the problem has no low-rank terms, else on the numba kernel
(:mod:`ising_qubo.solvers._sa_cpu`, imported only then: numba's start-up and memory).
Both make the same moves, so the choice never changes a result.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from ising_qubo.solvers import _sa_native
from ising_qubo.solvers.kernel_threads import kernel_threads, threads_by_entries

# A time-bounded descent runs its sweeps in calls of about this many seconds.
_DESCENT_CALL_S = 0.1
# ... on this many states at a time.
_DESCENT_BLOCK = 16


def _front_threads(states: np.ndarray, dense, csr, lowrank, passes: int = 1) -> int:
    """Threads of a front's call (:mod:`ising_qubo.solvers.kernel_threads`), from the
    entries ``passes`` passes over a state read."""
    n = states.shape[1]
    rank = 0 if lowrank is None else len(lowrank[0])
    entries = n * n if dense is not None else len(csr[2]) + n * (2 * rank + 1)
    return threads_by_entries(len(states), entries, passes)


def _native(lowrank) -> bool:
    """Whether the compiled kernel runs this call (it has no low-rank terms)."""
    return lowrank is None and _sa_native.available()


def _layout(n: int, dense, csr, lowrank):
    if (dense is None) == (csr is None):
        raise ValueError("give exactly one of dense= or csr=")
    if lowrank is not None and dense is not None:
        raise ValueError("low-rank terms need the CSR layout, not dense")
    if lowrank is None:
        lowrank = (np.zeros((0, n)), np.zeros((0, n)))
    lr_u = np.ascontiguousarray(lowrank[0], dtype=np.float64)
    lr_v = np.ascontiguousarray(lowrank[1], dtype=np.float64)
    return lr_u, lr_v, (lr_u * lr_v).sum(axis=0)


def flip_changes(states, h, dense=None, csr=None, lowrank=None) -> np.ndarray:
    """Energy change of flipping each spin of each state, (reads, n).

    ``dense``: the symmetric couplings flattened (n * n); ``csr``: (indptr, indices
    int32, values); ``lowrank``: (u, v) of the terms sum_r (u_r.s)(v_r.s), CSR only."""
    n = states.shape[1]
    lr_u, lr_v, lr_diag = _layout(n, dense, csr, lowrank)
    threads = _front_threads(states, dense, csr, lowrank)
    if dense is not None:
        return -2.0 * states * dense_fields(states, h, dense)
    indptr, indices, data = csr
    if _native(lowrank):
        return -2.0 * states * _sa_native.fields_csr(states, h, indptr, indices, data, threads)
    from ising_qubo.solvers import _sa_cpu

    with kernel_threads(threads):
        fields, proj_u, proj_v = _sa_cpu.fields_csr(states, h, indptr, indices, data, lr_u, lr_v)
    full = fields + proj_v @ lr_u + proj_u @ lr_v  # as _delta_energy counts them
    return -2.0 * states * full + 4.0 * lr_diag


def descend(
    states, h, dense=None, csr=None, lowrank=None, max_sweeps: int = 10_000, stop=None
) -> bool:
    """Strict single-flip descent of every state, in place, in the stored variable order
    (layouts as in :func:`flip_changes`). True when every state ends a local minimum.

    ``stop`` (a :class:`ising_qubo.solvers._common.Stop`) bounds the descent in time:
    blocks of 16 states then descend one after another, in calls of sweeps sized to a
    tenth of a second (or half the time left), and once ``stop()`` is true the states
    are returned as they are, False (the blocks done are local minima). A descent from
    random states of a complete 4,096-variable model took 3 s after a 5 s limit."""
    # a descent usually ends within ten sweeps
    threads = _front_threads(states, dense, csr, lowrank, passes=10)
    if _native(lowrank):
        return _descend(states, h, dense, csr, lowrank, max_sweeps, stop, threads)
    with kernel_threads(threads):
        return _descend(states, h, dense, csr, lowrank, max_sweeps, stop, threads)


def dense_fields(states: np.ndarray, h: np.ndarray, dense: np.ndarray) -> np.ndarray:
    """F = h + J s of every state for one dense problem: one BLAS product (the compiled
    :func:`~ising_qubo.solvers._sa_cpu.fields_blocks`, written for batches of problems,
    took 1.4 s where BLAS takes 0.1 s on 128 states of 4,096 variables)."""
    n = states.shape[1]
    return np.ascontiguousarray(states @ dense.reshape(n, n) + h)


def _descend(states, h, dense, csr, lowrank, max_sweeps: int, stop, threads: int) -> bool:
    if stop is None:
        return _descend_block(states, h, dense, csr, lowrank, max_sweeps, None, threads)
    # Under a limit, blocks of states one after another: when time runs out, the first
    # blocks are whole local minima rather than every state half descended.
    for a in range(0, len(states), _DESCENT_BLOCK):
        if stop() or not _descend_block(
            states[a : a + _DESCENT_BLOCK], h, dense, csr, lowrank, max_sweeps, stop, threads
        ):
            return False
    return True


def _descend_block(states, h, dense, csr, lowrank, max_sweeps: int, stop, threads: int) -> bool:
    sweeps = _greedy_sweeps(states, h, dense, csr, lowrank, threads)
    if stop is None:
        return sweeps(max_sweeps)
    done, chunk = 0, 1
    while done < max_sweeps:
        if stop():
            return False
        started = time.perf_counter()
        chunk = min(chunk, max_sweeps - done)
        if sweeps(chunk):
            return True
        done += chunk
        took = max(time.perf_counter() - started, 1e-6)
        left = stop.deadline.remaining()
        target = _DESCENT_CALL_S if left is None else min(_DESCENT_CALL_S, left / 2)
        chunk = max(1, min(4 * chunk, int(chunk * target / took)))
    return False


def _greedy_sweeps(states, h, dense, csr, lowrank, threads: int) -> Callable[[int], bool]:
    """``sweeps(count)``: up to ``count`` greedy sweeps of ``states`` (in place), True
    when every state is then a local minimum."""
    n = states.shape[1]
    streams = np.zeros(len(states), dtype=np.uint64)  # greedy passes draw no numbers
    native = _native(lowrank)
    if dense is not None:
        fields = dense_fields(states, h, dense)
        if native:

            def native_dense(count: int) -> bool:
                greedy = np.zeros((count, 1))  # beta table of a greedy pass: betas unused
                last = _sa_native.sweeps_dense(
                    states, fields, dense, greedy, streams, True, threads=threads
                )
                return not bool(last.any())  # every state's last sweep flipped nothing

            return native_dense
        from ising_qubo.solvers import _sa_cpu

        var_start, j_start = np.array([0, n], dtype=np.int64), np.zeros(1, dtype=np.int64)

        def numba_dense(count: int) -> bool:
            greedy = np.zeros((count, 1))
            _sa_cpu.sweeps_blocks(states, fields, dense, var_start, j_start, greedy, streams, True)
            return not bool((states * fields > 0.0).any())  # no flip lowers any energy

        return numba_dense
    indptr, indices, data = csr
    if native:
        csr_fields = _sa_native.fields_csr(states, h, indptr, indices, data, threads)

        def native_csr(count: int) -> bool:
            greedy = np.zeros((count, 1))
            last = _sa_native.sweeps_csr(
                states, csr_fields, indptr, indices, data, greedy, streams, True, threads=threads
            )
            return not bool(last.any())

        return native_csr
    from ising_qubo.solvers import _sa_cpu

    lr_u, lr_v, lr_diag = _layout(n, dense, csr, lowrank)
    lr_fields, proj_u, proj_v = _sa_cpu.fields_csr(states, h, indptr, indices, data, lr_u, lr_v)
    problem_of = np.zeros(n, dtype=np.int64)

    def numba_csr(count: int) -> bool:
        last = _sa_cpu.sweeps_csr(
            states, lr_fields, proj_u, proj_v, indptr, indices, data, lr_u, lr_v, lr_diag,
            np.zeros((count, 1)), problem_of, streams, True,
        )  # fmt: skip
        return not bool(last.any())

    return numba_csr


__all__ = ["dense_fields", "descend", "flip_changes"]
