"""How many threads one call of a compiled (numba) kernel runs on, chosen from its work.

Why not always all of them: every parallel call opens an OpenMP section, and its start
and closing barrier cost 1-2 us on an idle machine but 8-20 ms when other processes
keep the cores busy (the waiting thread is descheduled). Measured on the 2-core VM with
other busy processes (load average 3), a resnet56 whole-network descent with one replica
took 32-52 ms on two threads and 2.5 ms on one; with eight replicas 48 ms against 19 ms.
A call with one task (replica) gains nothing from a second thread anyway.

The rule: a call runs on one thread unless it has at least two tasks (replicas, or
(replica, problem) pairs) and its estimated one-thread time is at least
:data:`PARALLEL_MIN_SECONDS`, long enough that a section's start is a small part of it
even under load; then on ``min(tasks, cap)`` threads, the cap being numba's thread
count when the solver started (``NUMBA_NUM_THREADS`` or the user's
``numba.set_num_threads``). An unknown estimate (the first call of a run) is one thread:
that call then measures the one-thread cost for the next.

Changing the thread count never changes a seeded result: every replica has its own
random stream.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator

#: Estimated one-thread seconds from which a call with several tasks runs in parallel.
PARALLEL_MIN_SECONDS = 0.05


def threads_for(tasks: int, seconds: float | None, cap: int) -> int:
    """Threads for a call of ``tasks`` independent tasks estimated at ``seconds`` on one
    thread (None: unknown), at most ``cap``."""
    if tasks < 2 or cap < 2 or seconds is None or seconds < PARALLEL_MIN_SECONDS:
        return 1
    return min(int(tasks), int(cap))


#: Seconds per coupling entry a kernel reads, roughly: a one-thread estimate for calls
#: that have no measured cost (fronts outside an annealing loop).
SECONDS_PER_ENTRY = 1e-9


def threads_by_entries(tasks: int, entries: float, passes: float = 1) -> int:
    """:func:`threads_for` a call whose tasks each read ``entries`` coupling entries
    ``passes`` times."""
    return threads_for(tasks, SECONDS_PER_ENTRY * entries * tasks * passes, thread_cap())


def thread_cap() -> int:
    """The most threads a call may use: numba's thread count now once numba is imported,
    else the count numba would start with (``NUMBA_NUM_THREADS``, or every core), so that
    the compiled kernel of :mod:`ising_qubo.solvers._sa_native` needs no numba for it."""
    if "numba" in sys.modules:
        import numba

        from ising_qubo.solvers._threads import start_numba_pool

        start_numba_pool()  # asking numba starts its pool: the way that keeps torch's count
        return int(numba.get_num_threads())
    configured = os.environ.get("NUMBA_NUM_THREADS", "").strip()
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    return os.cpu_count() or 1


@contextlib.contextmanager
def kernel_threads(count: int) -> Iterator[None]:
    """Run the enclosed kernel calls on ``count`` threads, then restore numba's count
    (a per-thread setting in numba, so other threads' solves are not affected)."""
    import numba

    from ising_qubo.solvers._threads import start_numba_pool

    # setting the count starts numba's pool: started first the way that keeps torch's
    start_numba_pool()
    before = numba.get_num_threads()
    numba.set_num_threads(max(1, min(int(count), before)))
    try:
        yield
    finally:
        numba.set_num_threads(before)


class ThreadChooser:
    """Picks each call's threads from the one-thread cost of a task-sweep measured by the
    calls before it (:meth:`record`)."""

    def __init__(
        self,
        cap: int | None = None,
        apply: Callable[[int], contextlib.AbstractContextManager[None]] = kernel_threads,
    ) -> None:
        self.cap = thread_cap() if cap is None else max(1, int(cap))
        self.apply = apply  # sets the chosen count around a call (numba's, by default)
        self.cost: float | None = None  # one-thread seconds per task-sweep
        self.used = 1  # threads of the last call

    def threads(self, tasks: int, sweeps: float) -> int:
        """Threads for a call of ``tasks`` tasks of ``sweeps`` sweeps each."""
        seconds = None if self.cost is None else self.cost * tasks * sweeps
        self.used = threads_for(tasks, seconds, self.cap)
        return self.used

    def call(self, tasks: int, sweeps: float) -> contextlib.AbstractContextManager[None]:
        """The context of a call of ``tasks`` tasks of ``sweeps`` sweeps."""
        return self.apply(self.threads(tasks, sweeps))

    def record(self, task_sweeps: int, seconds: float) -> None:
        """The last call ran ``task_sweeps`` task-sweeps in ``seconds`` (on ``used``
        threads: its one-thread cost is taken as ``used`` times that, an over-estimate
        when the threads did not all run, which only keeps a long call parallel)."""
        self.cost = max(seconds, 1e-9) * self.used / max(task_sweeps, 1)


__all__ = [
    "PARALLEL_MIN_SECONDS",
    "ThreadChooser",
    "kernel_threads",
    "thread_cap",
    "threads_by_entries",
    "threads_for",
]
