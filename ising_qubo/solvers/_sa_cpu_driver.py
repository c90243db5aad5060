"""``torch-sa``'s CPU backend: lays a call's problems out for the compiled kernels and
drives them in paced calls: the ahead-of-time compiled kernel of
:mod:`ising_qubo.solvers._sa_native` for one problem without low-rank terms where it is
installed, else the numba kernels of :mod:`ising_qubo.solvers._sa_cpu` (same moves,
same seeded results).

Kept apart from the kernels: every change to them changes seeded results; this module
decides how the work is cut into kernel calls (which never changes a result, see
:mod:`ising_qubo.solvers.pacing`), when a time limit or Ctrl-C ends the run, and how the
final descent and the fitted temperature range are called. numba and ``_sa_cpu`` are
imported only when a call runs on them: importing them loads LLVM (about 90 MiB) and
starts numba's thread pool.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import numpy as np

from ising_qubo.solvers import _sa_native
from ising_qubo.solvers._common import Stop, symmetric_csr
from ising_qubo.solvers._sa_problems import SpinProblem, is_dense, lowrank_union, union
from ising_qubo.solvers.kernel_threads import ThreadChooser, kernel_threads, thread_cap
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


def native_case(problems: list[SpinProblem]) -> bool:
    """Whether the compiled kernel of :mod:`ising_qubo.solvers._sa_native` can run this
    call: one problem without low-rank terms (batches and low-rank terms run on numba)."""
    return len(problems) == 1 and problems[0].lowrank_u is None


def choose_kernel(problems: list[SpinProblem], asked: str = "auto") -> str:
    """'native' or 'numba' for ``asked`` ('auto': native where it is installed and can
    run the call); a ValueError when 'native' is asked and cannot run."""
    if asked == "numba":
        return "numba"
    runnable = native_case(problems)
    if asked == "native":
        if not _sa_native.available():
            raise ValueError(
                f"torch-sa: backend='native' needs the compiled kernel {_sa_native.EXTENSION}, "
                "which was not built with this install (no C compiler?); use backend='numba'"
            )
        if not runnable:
            raise ValueError(
                "torch-sa: backend='native' runs one problem without low-rank terms; "
                "batches and structured problems run on backend='numba'"
            )
        return "native"
    return "native" if runnable and _sa_native.available() else "numba"


class _NativeThreads:
    """The thread count of the compiled kernel's calls, set around each call as
    :func:`~ising_qubo.solvers.kernel_threads.kernel_threads` sets numba's."""

    def __init__(self) -> None:
        self.count = 1

    @contextlib.contextmanager
    def __call__(self, count: int) -> Iterator[None]:
        before, self.count = self.count, count
        try:
            yield
        finally:
            self.count = before


def run(
    problems: list[SpinProblem],
    schedule: BetaSchedule,
    seed: int | None,
    stop: Stop,
    kernel: str = "numba",
) -> tuple[np.ndarray, int]:
    """Anneal on the CPU with the compiled kernels; returns (spins, sweeps done).

    ``kernel``: 'native' (:mod:`ising_qubo.solvers._sa_native`, one problem without
    low-rank terms, see :func:`choose_kernel`) or 'numba' (:mod:`ising_qubo.solvers._sa_cpu`,
    every call); the two make the same moves and give the same seeded results.

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
    native = kernel == "native"
    if native and not native_case(problems):
        raise ValueError("the compiled kernel runs one problem without low-rank terms")
    model, problem_of = union(problems)
    n = model.num_variables
    count = len(problems)
    spins = np.ascontiguousarray(np.concatenate([p.start for p in problems], axis=1))
    reads = spins.shape[0]
    fields = np.empty_like(spins)
    h = model.linear
    offsets = np.cumsum([0] + [p.n for p in problems])
    on_threads = _NativeThreads()
    use: Callable[[int], contextlib.AbstractContextManager[None]]
    if native:
        use = on_threads
    else:
        from ising_qubo.solvers import _sa_cpu  # numba: imported only for its kernel

        use = kernel_threads
    if all(is_dense(p) for p in problems):
        blocks = [p.dense_couplings for p in problems]
        j_start = np.cumsum([0] + [len(b) for b in blocks]).astype(np.int64)
        jflat = np.concatenate(blocks)
        var_start = offsets.astype(np.int64)
        # one stream per (replica, problem) task, replica-major as the kernel counts them
        seeds = np.random.SeedSequence(seed).generate_state(reads * count, np.uint64)
        exact = exact_fields(h, jflat)

        def compute_fields(a, b):
            if native:
                fields[a:b] = _sa_native.fields_dense(
                    spins[a:b], h, jflat, threads=on_threads.count
                )
                return
            fields[a:b] = _sa_cpu.fields_blocks(spins[a:b], h, jflat, var_start, j_start)

        def sweep(a, b, table, greedy):
            if native:
                _sa_native.sweeps_dense(
                    spins[a:b],
                    fields[a:b],
                    jflat,
                    table,
                    seeds[a:b],
                    greedy,
                    threads=on_threads.count,
                )
                return
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
        plain = count == 1 and lr_u.shape[0] == 0  # the specialised kernels' case
        exact = lr_u.shape[0] == 0 and exact_fields(h, values)

        def compute_fields(a, b):
            if native:
                fields[a:b] = _sa_native.fields_csr(
                    spins[a:b], h, indptr, indices, values, threads=on_threads.count
                )
                return
            fields[a:b], proj_u[a:b], proj_v[a:b] = _sa_cpu.fields_csr(
                spins[a:b], h, indptr, indices, values, lr_u, lr_v
            )

        def sweep(a, b, table, greedy):
            if native:
                _sa_native.sweeps_csr(
                    spins[a:b], fields[a:b], indptr, indices, values, table, seeds[a:b],
                    greedy, threads=on_threads.count,
                )  # fmt: skip
                return
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
    threads = ThreadChooser(thread_cap(), apply=use)
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
