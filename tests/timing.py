"""Wall-clock bounds that hold on a loaded machine (imported as ``from timing import timed``).

A time limit is kept by the wall clock, but what runs after it passes (the unit of work in
flight, a final descent, building the result, the interpreter getting the CPU back) is CPU
work, and on a machine with more runnable processes than cores it takes as many times
longer as this process's share of a core is smaller. So a test states its claim (``1.1 *
limit``) and an allowance for that work as measured on an idle machine, and the allowance
is multiplied by the slowdown measured just before and just after the timed block: the
wall time of a fixed busy window over this thread's CPU time in it (1 on an idle machine;
4-18 measured on 2 cores with four busy loops beside other work, load average 8). On an
idle machine the bound is the claim plus the allowance; a solver that ignores its limit
(minutes of work) fails at any load, since the slowdown counted is at most
``MAX_SLOWDOWN``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

#: Length of one calibration window (s): many scheduler time slices, so one slice won or
#: lost barely moves the ratio, and short enough to run around every timed call.
CALIBRATION_SECONDS = 0.1
#: The largest slowdown an allowance is stretched by: beyond it the machine is too busy for
#: a timing claim, and the bounds stay short of the work a limit exists to cut off.
MAX_SLOWDOWN = 20.0


def slowdown(window: float = CALIBRATION_SECONDS) -> float:
    """How many times longer than its CPU time a CPU-bound step of this thread takes now:
    wall time / ``time.thread_time()`` over ``window`` seconds of a busy loop (>= 1; other
    threads of this process, idle or spinning, are not counted)."""
    start_wall, start_cpu = time.perf_counter(), time.thread_time()
    while time.perf_counter() - start_wall < window:
        pass
    wall = time.perf_counter() - start_wall
    cpu = time.thread_time() - start_cpu
    return min(MAX_SLOWDOWN, max(1.0, wall / max(cpu, 1e-9)))


@dataclass
class Timed:
    """The wall time of a ``with timed()`` block and the machine's slowdown around it."""

    seconds: float = float("nan")
    slowdown: float = 1.0

    def bound(self, claim: float, allowance: float) -> float:
        """``claim`` (seconds, what the code promises) plus ``allowance`` (seconds of work
        after it on an idle machine) stretched by the measured slowdown."""
        return claim + allowance * self.slowdown

    def assert_within(self, claim: float, allowance: float, what: str = "") -> None:
        bound = self.bound(claim, allowance)
        assert self.seconds <= bound, (
            f"{what}: {self.seconds:.3f} s > {bound:.3f} s = {claim:g} s + {allowance:g} s"
            f" x slowdown {self.slowdown:.2f} (wall / CPU time of a busy loop around it)"
        )


@contextmanager
def timed() -> Iterator[Timed]:
    """Times the block by the wall clock; ``slowdown`` is the larger of the two measured
    before and after it (the load seen by the block is not known better than that)."""
    before = slowdown()
    result = Timed()
    started = time.perf_counter()
    yield result
    result.seconds = time.perf_counter() - started
    result.slowdown = max(before, slowdown())


@contextmanager
def cpu_timed() -> Iterator[Timed]:
    """Times the block by this process's CPU time (all threads, user and system): for
    claims about work done (a refusal that reads nothing, a check that visits each
    container once), which neighbours on the machine cannot stretch. ``slowdown`` stays 1."""
    result = Timed()
    started = time.process_time()
    yield result
    result.seconds = time.process_time() - started
