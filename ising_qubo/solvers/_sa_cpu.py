"""CPU kernel of ``torch-sa``: exact single-spin-flip Metropolis, compiled with numba.

Why not torch on the CPU: a sweep is n dependent updates, and driving them from Python
costs ~10 microseconds each, ten times what one update costs in compiled code. numba
compiles this loop (as neal's C++ does) and runs the replicas on all cores, each replica
with its own counter-based random stream so results do not depend on thread scheduling.

Model (spin form): E(s) = h.s + 1/2 s^T J s + sum_r (u_r.s)(v_r.s) + offset, J symmetric
with zero diagonal, given as CSR (indptr, indices, data) or dense; the optional low-rank
terms (u_r, v_r) let structured problems (dense blocks + rank-1 couplings between them)
run without a dense n x n matrix. Fields are updated only where a spin flips.
"""

from __future__ import annotations

import time

import numpy as np
from numba import njit, prange

from ising_qubo.solvers._threads import start_numba_pool
from ising_qubo.solvers.kernel_threads import kernel_threads, threads_by_entries

_SPLITMIX_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_TO_UNIT = 1.0 / 9007199254740992.0  # 2**-53
# exp(-40) ~ 4e-18: a move this costly is never accepted in a double-precision draw.
_MAX_EXPONENT = 40.0
# A time-bounded descent runs its sweeps in calls of about this many seconds.
_DESCENT_CALL_S = 0.1
# ... on this many states at a time.
_DESCENT_BLOCK = 16


@njit(inline="always")
def _uniform(state: np.ndarray, r: int) -> float:
    """splitmix64 step on state[r]; a double in [0, 1)."""
    state[r] += _SPLITMIX_GAMMA
    z = state[r]
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    z = z ^ (z >> np.uint64(31))
    return float(z >> np.uint64(11)) * _TO_UNIT


@njit(inline="always")
def _accept(de: float, beta: float, greedy: bool, rng_state: np.ndarray, stream: int) -> bool:
    """Metropolis at inverse temperature beta, or strict descent when greedy."""
    if greedy:
        return de < 0.0
    if de <= 0.0:
        return True
    x = beta * de
    return x < _MAX_EXPONENT and _uniform(rng_state, stream) < np.exp(-x)


@njit(inline="always")
def _try_flip(s, f, i, beta, greedy, rng_state, stream) -> float:
    """The Metropolis (or greedy) test of flipping spin i, whose local field is f[i]: on
    acceptance flips it and returns the step its neighbours' fields take per unit
    coupling (2 s_i, never 0); 0.0 when rejected."""
    if not _accept(-2.0 * s[i] * f[i], beta, greedy, rng_state, stream):
        return 0.0
    s[i] = -s[i]
    return 2.0 * s[i]


@njit(cache=True, parallel=True)
def fields_csr(spins, h, indptr, indices, data, lr_u, lr_v):
    """Local fields F = h + J s for every replica, and the low-rank projections."""
    reps, n = spins.shape
    fields = np.empty((reps, n), dtype=np.float64)
    rank = lr_u.shape[0]
    proj_u = np.zeros((reps, rank), dtype=np.float64)
    proj_v = np.zeros((reps, rank), dtype=np.float64)
    for r in prange(reps):
        for i in range(n):
            acc = h[i]
            for k in range(indptr[i], indptr[i + 1]):
                acc += data[k] * spins[r, indices[k]]
            fields[r, i] = acc
        for q in range(rank):
            a = 0.0
            b = 0.0
            for i in range(n):
                a += lr_u[q, i] * spins[r, i]
                b += lr_v[q, i] * spins[r, i]
            proj_u[r, q] = a
            proj_v[r, q] = b
    return fields, proj_u, proj_v


@njit(inline="always")
def _delta_energy(s, f, i, lr_u, lr_v, pu, pv, lr_diag):
    """Energy change of flipping spin i (see module docstring for the low-rank part)."""
    field = f[i]
    for q in range(lr_u.shape[0]):
        field += lr_u[q, i] * pv[q] + lr_v[q, i] * pu[q]
    return -2.0 * s[i] * field + 4.0 * lr_diag[i]


@njit(cache=True, parallel=True)
def sweeps_csr(
    spins,
    fields,
    proj_u,
    proj_v,
    indptr,
    indices,
    data,
    lr_u,
    lr_v,
    lr_diag,
    beta_table,
    problem_of,
    rng_state,
    greedy,
):
    """Metropolis sweeps (or, with greedy, strict descent sweeps) over all replicas.

    beta_table[t, p] is the inverse temperature of sweep t for problem p (batched
    problems anneal on their own schedules); problem_of[i] is variable i's problem.
    Returns the number of flips per replica in the last sweep.
    """
    reps, n = spins.shape
    num_sweeps = beta_table.shape[0]
    rank = lr_u.shape[0]
    last_flips = np.zeros(reps, dtype=np.int64)
    for r in prange(reps):
        s = spins[r]
        f = fields[r]
        pu = proj_u[r]
        pv = proj_v[r]
        for t in range(num_sweeps):
            flips = 0
            for i in range(n):
                de = _delta_energy(s, f, i, lr_u, lr_v, pu, pv, lr_diag)
                if _accept(de, beta_table[t, problem_of[i]], greedy, rng_state, r):
                    flips += 1
                    new = -s[i]
                    s[i] = new
                    step = 2.0 * new
                    for k in range(indptr[i], indptr[i + 1]):
                        f[indices[k]] += step * data[k]
                    for q in range(rank):
                        pu[q] += step * lr_u[q, i]
                        pv[q] += step * lr_v[q, i]
            last_flips[r] = flips
            if greedy and flips == 0:
                break
    return last_flips


@njit(cache=True, parallel=True)
def sweeps_plain(spins, fields, indptr, indices, data, beta_table, rng_state, greedy):
    """:func:`sweeps_csr` for the common case, one problem without low-rank terms: the
    same moves, random draws and results, about 10% faster (measured on Gset graphs: the
    per-spin problem lookup of the inverse temperature and the empty low-rank loop go).

    ``beta_table`` is (sweeps, 1), as :func:`sweeps_csr` takes it for one problem.
    """
    reps, n = spins.shape
    num_sweeps = beta_table.shape[0]
    last_flips = np.zeros(reps, dtype=np.int64)
    for r in prange(reps):
        s = spins[r]
        f = fields[r]
        for t in range(num_sweeps):
            beta = beta_table[t, 0]
            flips = 0
            for i in range(n):
                step = _try_flip(s, f, i, beta, greedy, rng_state, r)
                if step != 0.0:
                    flips += 1
                    for k in range(indptr[i], indptr[i + 1]):
                        f[indices[k]] += step * data[k]
            last_flips[r] = flips
            if greedy and flips == 0:
                break
    return last_flips


@njit(cache=True, parallel=True)
def fields_blocks(spins, h, jflat, var_start, j_start):
    """Fields for a batch of dense problems: problem p owns variables var_start[p]:[p+1]."""
    reps, n = spins.shape
    problems = len(var_start) - 1
    fields = np.empty((reps, n), dtype=np.float64)
    for task in prange(reps * problems):
        r = task // problems
        p = task % problems
        a = var_start[p]
        m = var_start[p + 1] - a
        for i in range(m):
            acc = h[a + i]
            base = j_start[p] + i * m
            for j in range(m):
                acc += jflat[base + j] * spins[r, a + j]
            fields[r, a + i] = acc
    return fields


@njit(cache=True, parallel=True)
def sweeps_blocks(spins, fields, jflat, var_start, j_start, beta_table, rng_state, greedy):
    """Sweeps for a batch of dense problems, one task per (replica, problem).

    ``rng_state`` has one stream per task, so results do not depend on scheduling.
    """
    reps, n = spins.shape
    problems = len(var_start) - 1
    num_sweeps = beta_table.shape[0]
    for task in prange(reps * problems):
        r = task // problems
        p = task % problems
        a = var_start[p]
        m = var_start[p + 1] - a
        s = spins[r, a : a + m]
        f = fields[r, a : a + m]
        for t in range(num_sweeps):
            beta = beta_table[t, p]
            flips = 0
            for i in range(m):
                step = _try_flip(s, f, i, beta, greedy, rng_state, task)
                if step != 0.0:
                    flips += 1
                    base = j_start[p] + i * m
                    for j in range(m):
                        f[j] += step * jflat[base + j]
            if greedy and flips == 0:
                break


# Plain-Python fronts of the kernels for one problem, for callers outside the annealing
# loop (the fitted temperature range, the torch backend's final descent).
def _front_threads(states: np.ndarray, dense, csr, lowrank, passes: int = 1) -> int:
    """Threads of a front's call (:mod:`ising_qubo.solvers.kernel_threads`), from the
    entries ``passes`` passes over a state read."""
    n = states.shape[1]
    rank = 0 if lowrank is None else len(lowrank[0])
    entries = n * n if dense is not None else len(csr[2]) + n * (2 * rank + 1)
    return threads_by_entries(len(states), entries, passes)


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
    with kernel_threads(_front_threads(states, dense, csr, lowrank)):
        if dense is not None:
            return -2.0 * states * dense_fields(states, h, dense)
        indptr, indices, data = csr
        fields, proj_u, proj_v = fields_csr(states, h, indptr, indices, data, lr_u, lr_v)
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
    with kernel_threads(_front_threads(states, dense, csr, lowrank, passes=10)):
        return _descend(states, h, dense, csr, lowrank, max_sweeps, stop)


def dense_fields(states: np.ndarray, h: np.ndarray, dense: np.ndarray) -> np.ndarray:
    """F = h + J s of every state for one dense problem: one BLAS product (the compiled
    :func:`fields_blocks`, written for batches of problems, took 1.4 s where BLAS takes
    0.1 s on 128 states of 4,096 variables)."""
    n = states.shape[1]
    return np.ascontiguousarray(states @ dense.reshape(n, n) + h)


def _descend(states, h, dense, csr, lowrank, max_sweeps: int, stop) -> bool:
    if stop is None:
        return _descend_block(states, h, dense, csr, lowrank, max_sweeps, None)
    # Under a limit, blocks of states one after another: when time runs out, the first
    # blocks are whole local minima rather than every state half descended.
    for a in range(0, len(states), _DESCENT_BLOCK):
        if stop() or not _descend_block(
            states[a : a + _DESCENT_BLOCK], h, dense, csr, lowrank, max_sweeps, stop
        ):
            return False
    return True


def _descend_block(states, h, dense, csr, lowrank, max_sweeps: int, stop) -> bool:
    n = states.shape[1]
    lr_u, lr_v, lr_diag = _layout(n, dense, csr, lowrank)
    streams = np.zeros(len(states), dtype=np.uint64)  # greedy passes draw no numbers
    if dense is not None:
        var_start, j_start = np.array([0, n], dtype=np.int64), np.zeros(1, dtype=np.int64)
        fields = dense_fields(states, h, dense)

        def sweeps(count: int) -> bool:
            greedy = np.zeros((count, 1))  # beta table of a greedy pass: betas unused
            sweeps_blocks(states, fields, dense, var_start, j_start, greedy, streams, True)
            return not bool((states * fields > 0.0).any())  # no flip lowers any energy

    else:
        indptr, indices, data = csr
        fields, proj_u, proj_v = fields_csr(states, h, indptr, indices, data, lr_u, lr_v)
        problem_of = np.zeros(n, dtype=np.int64)

        def sweeps(count: int) -> bool:
            last = sweeps_csr(
                states,
                fields,
                proj_u,
                proj_v,
                indptr,
                indices,
                data,
                lr_u,
                lr_v,
                lr_diag,
                np.zeros((count, 1)),
                problem_of,
                streams,
                True,
            )
            return not bool(last.any())  # every state's last sweep flipped nothing

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


# Before any parallel kernel runs: keeps torch's thread count as the user set it.
start_numba_pool()
