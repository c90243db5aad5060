"""``torch-sa``'s CPU backend: lays a call's problems out for the compiled kernels of
:mod:`ising_qubo.solvers._sa_cpu` and drives them in paced calls.

Kept apart from ``_sa_cpu``: that module is compiled code whose every change changes
seeded results; this one decides how the work is cut into kernel calls (which never
changes a result, see :mod:`ising_qubo.solvers.pacing`), when a time limit or Ctrl-C
ends the run, and how the final descent and the fitted temperature range are called.
numba and ``_sa_cpu`` are imported on first use, not with this module: importing them
starts numba's thread pool.
"""

from __future__ import annotations

import time

import numpy as np

from ising_qubo.solvers._common import Stop, symmetric_csr
from ising_qubo.solvers._sa_problems import SpinProblem, is_dense, lowrank_union, union
from ising_qubo.solvers.kernel_threads import ThreadChooser
from ising_qubo.solvers.pacing import Pacer
from ising_qubo.solvers.schedule import BetaSchedule, fitted_beta_range

# The kernel recomputes the local fields every this many sweeps (bounds the rounding
# drift of the incremental updates); results depend on it, so it is fixed. Problems whose
# fields are exact in float64 (integer biases, :func:`exact_fields`) have no drift and
# skip the recomputation: the same results, 5% less time on Gset graphs.
REFRESH_SWEEPS = 100
# Multiples of 2**-_EXACT_SCALE_BITS up to 2**53 of them add exactly in float64 (a QUBO
# of integers becomes an Ising problem of quarters).
_EXACT_SCALE_BITS = 10
_EXACT_INTEGERS = float(1 << 53)
# Sweeps of the final greedy descent at most (it ends as soon as no flip lowers a state).
_DESCENT_SWEEPS = 10_000
# What the thread choice assumes the final descent costs, in sweeps (it usually ends in a
# few; a long one is long enough to run in parallel whichever is assumed).
_DESCENT_SWEEPS_GUESS = 10


def fitted_range(problem: SpinProblem) -> tuple[float, float]:
    """:func:`~ising_qubo.solvers.schedule.fitted_beta_range` of ``problem``, from the
    layout the anneal will use (built once, cached on the problem)."""
    layout = {"dense": problem.dense_couplings} if is_dense(problem) else {"csr": problem.csr}
    return fitted_beta_range(
        problem.h, problem.rows, problem.cols, problem.data, lowrank=problem.lowrank, **layout
    )


def exact_fields(h: np.ndarray, *couplings: np.ndarray) -> bool:
    """Whether every local field, and every value an incremental update passes through,
    is a multiple of 2**-10 with fewer than 2**53 such units, so float64 holds it
    exactly and sums it in any order without rounding: ``h`` and couplings on that grid
    (each array of couplings lists every entry of a row once per side, as the kernels'
    layouts do) whose absolute sum is under that bound."""
    scale = float(1 << _EXACT_SCALE_BITS)
    total = float(np.abs(h).sum()) + sum(float(np.abs(c).sum()) for c in couplings)
    if not total * scale < _EXACT_INTEGERS:  # also False for inf and nan
        return False
    return all(bool(np.all(np.floor(a * scale) == a * scale)) for a in (h, *couplings))


def run(
    problems: list[SpinProblem], schedule: BetaSchedule, seed: int | None, stop: Stop
) -> tuple[np.ndarray, int]:
    """Anneal on the CPU with the compiled kernels; returns (spins, sweeps done).

    The kernels work in float64 whatever ``dtype`` says: mixing float32 couplings into
    float64 fields measured 3x slower (the conversion blocks vectorisation), and float64
    costs nothing extra at CPU problem sizes.

    Two layouts: every problem dense (one task per replica and problem, rows read
    contiguously), or CSR with optional low-rank terms for everything else.

    Each replica has its own random stream and its fields are recomputed every
    ``REFRESH_SWEEPS`` sweeps, so how the work is cut into kernel calls (blocks of
    replicas, runs of sweeps) does not change the result; a :class:`Pacer` cuts it into
    calls of about 2% of the time limit (0.25 s at most), between which ``stop`` is
    checked and Ctrl-C is noticed.
    """
    import numba

    from ising_qubo.solvers import _sa_cpu

    model, problem_of = union(problems)
    n = model.num_variables
    count = len(problems)
    spins = np.ascontiguousarray(np.concatenate([p.start for p in problems], axis=1))
    reads = spins.shape[0]
    fields = np.empty_like(spins)
    h = model.linear
    offsets = np.cumsum([0] + [p.n for p in problems])
    if all(is_dense(p) for p in problems):
        blocks = [p.dense_couplings for p in problems]
        j_start = np.cumsum([0] + [len(b) for b in blocks]).astype(np.int64)
        jflat = np.concatenate(blocks)
        var_start = offsets.astype(np.int64)
        # one stream per (replica, problem) task, replica-major as the kernel counts them
        seeds = np.random.SeedSequence(seed).generate_state(reads * count, np.uint64)
        exact = exact_fields(h, jflat)

        def compute_fields(a, b):
            fields[a:b] = _sa_cpu.fields_blocks(spins[a:b], h, jflat, var_start, j_start)

        def sweep(a, b, table, greedy):
            _sa_cpu.sweeps_blocks(
                spins[a:b],
                fields[a:b],
                jflat,
                var_start,
                j_start,
                table,
                seeds[a * count : b * count],
                greedy,
            )
    else:
        lr_u, lr_v = lowrank_union(problems)
        lr_diag = (lr_u * lr_v).sum(axis=0)
        proj_u = np.zeros((reads, lr_u.shape[0]))
        proj_v = np.zeros((reads, lr_u.shape[0]))
        indptr, indices, values = (
            problems[0].csr if count == 1 else symmetric_csr(n, model.rows, model.cols, model.data)
        )
        seeds = np.random.SeedSequence(seed).generate_state(reads, np.uint64)
        plain = count == 1 and lr_u.shape[0] == 0  # the specialised kernel's case
        exact = lr_u.shape[0] == 0 and exact_fields(h, values)

        def compute_fields(a, b):
            fields[a:b], proj_u[a:b], proj_v[a:b] = _sa_cpu.fields_csr(
                spins[a:b], h, indptr, indices, values, lr_u, lr_v
            )

        def sweep(a, b, table, greedy):
            if plain:
                _sa_cpu.sweeps_plain(
                    spins[a:b], fields[a:b], indptr, indices, values, table, seeds[a:b], greedy
                )
                return
            _sa_cpu.sweeps_csr(
                spins[a:b],
                fields[a:b],
                proj_u[a:b],
                proj_v[a:b],
                indptr,
                indices,
                values,
                lr_u,
                lr_v,
                lr_diag,
                table,
                problem_of,
                seeds[a:b],
                greedy,
            )

    fresh = np.zeros(reads, dtype=bool)  # replicas whose fields were ever computed

    def refresh(a: int, b: int) -> None:
        """Recompute the fields of replicas a:b, unless exact fields are already there."""
        if exact and fresh[a:b].all():
            return
        compute_fields(a, b)
        fresh[a:b] = True

    limit = None if stop.deadline.end is None else stop.deadline.end - stop.deadline.start
    # threads per call from its work (ising_qubo.solvers.kernel_threads): a task is a
    # replica, or a (replica, problem) pair in the dense layout
    threads = ThreadChooser(numba.get_num_threads())
    tasks = count if all(is_dense(p) for p in problems) else 1
    pacer = Pacer(limit, threads.cap)
    swept = np.zeros(reads, dtype=np.int64)  # sweeps done, per replica

    def anneal_all() -> None:
        """Segments of REFRESH_SWEEPS sweeps; in each, blocks of replicas in order."""
        first = True
        for begin in range(0, len(schedule), REFRESH_SWEEPS):
            table = schedule.table(begin, begin + REFRESH_SWEEPS)
            a = 0
            while a < reads:
                width, step = pacer.block(reads - a, len(table))
                b = a + width
                with threads.call(width * tasks, 1):  # a refresh costs about a sweep
                    refresh(a, b)
                done = 0
                while done < len(table):
                    if not first and stop():
                        return
                    first = False
                    chunk = table[done : done + step]
                    with threads.call(width * tasks, len(chunk)):
                        started = time.perf_counter()
                        sweep(a, b, chunk, False)
                        seconds = time.perf_counter() - started
                    pacer.record(width * len(chunk), seconds)
                    threads.record(width * tasks * len(chunk), seconds)
                    swept[a:b] += len(chunk)
                    done += len(chunk)
                    step = pacer.sweeps(width, len(table) - done)
                a = b

    try:
        anneal_all()
    except KeyboardInterrupt:
        if not stop.interrupt():
            raise
    # Replicas never reached (the run stopped in its first segment) are left out: they
    # would only be random states, and descending them all could overrun the limit.
    kept = int(np.count_nonzero(swept)) if swept[-1] == 0 else reads
    with threads.call(kept * tasks, _DESCENT_SWEEPS_GUESS):
        refresh(0, kept)
        sweep(0, kept, np.zeros((_DESCENT_SWEEPS, count)), True)
    return spins[:kept], int(swept[:kept].min())
