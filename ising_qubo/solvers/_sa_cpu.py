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

import numpy as np
from numba import njit, prange

from ising_qubo.solvers._threads import start_numba_pool

_SPLITMIX_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_TO_UNIT = 1.0 / 9007199254740992.0  # 2**-53
# exp(-40) ~ 4e-18: a move this costly is never accepted in a double-precision draw.
_MAX_EXPONENT = 40.0


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


# The plain-Python fronts of these kernels for one problem (the fitted temperature range,
# the torch backend's final descent) are in ising_qubo.solvers._sa_fronts.


# Before any parallel kernel runs: keeps torch's thread count as the user set it.
start_numba_pool()
