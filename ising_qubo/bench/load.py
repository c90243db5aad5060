"""Busy competing processes, so that a benchmark can be run on a loaded machine on purpose.

:class:`BackgroundLoad` is a context manager that starts N processes, each a plain busy
loop on one core (a bare ``python -I -S`` interpreter, a few MiB each, no imports but
``os``, ``signal``, ``sys`` and ``time``), and stops them when the block ends, however
it ends (normally, by an exception, by Ctrl-C). Solvers that are fast only on an idle
machine show it here: users run them next to training jobs, notebooks and other solvers.

The processes cannot outlive the benchmark: each one checks its parent's pid every
:data:`POLL_SECONDS` and exits when the parent is gone (killed, crashed), and exits anyway
after ``max_seconds``. They run in their own session, so Ctrl-C in a terminal (sent to
the terminal's foreground process group) reaches only the benchmark, which then stops
them itself; they also ignore a SIGINT sent to them directly.

The load average (``os.getloadavg()``: 1, 5, 15 minutes) is read before the processes
start and again before they stop, and :meth:`BackgroundLoad.record` says how many were
still running at the end (fewer than asked means the lifetime cap ended some early).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from types import TracebackType
from typing import Any

#: Busy processes allowed per CPU: more only measures the scheduler, and a typo of 1000
#: would freeze the machine.
MAX_PER_CPU = 4

#: How often a busy process checks that its parent is still there, in seconds.
POLL_SECONDS = 0.2

#: Default lifetime cap of a busy process, in seconds (a safety net only: the parent
#: stops them, and they stop when the parent dies).
DEFAULT_MAX_SECONDS = 24 * 3600.0

# argv: parent pid, lifetime in seconds, poll period in seconds. The inner loop spins on
# the clock (vDSO, no system call), so the process stays runnable all the time.
_SPIN = """\
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
parent, lifetime, poll = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + lifetime
while os.getppid() == parent and time.monotonic() < deadline:
    until = time.monotonic() + poll
    while time.monotonic() < until:
        pass
"""


def max_processes() -> int:
    """The largest accepted count: :data:`MAX_PER_CPU` per CPU."""
    return MAX_PER_CPU * (os.cpu_count() or 1)


def check_count(value: Any, name: str = "background_load") -> int:
    """``value`` as a process count in ``0..max_processes()``, else a one-line ValueError."""
    cap = max_processes()
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= cap:
        raise ValueError(
            f"{name} must be a whole number of busy processes from 0 to {cap} "
            f"({MAX_PER_CPU} per CPU), got {value!r}"
        )
    return int(value)


def load_average() -> list[float] | None:
    """``os.getloadavg()`` rounded to 0.01 (1, 5, 15 minutes), or None where it does not exist."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):  # Windows has none
        return None


class BackgroundLoad:
    """``with BackgroundLoad(2): ...`` runs the block next to two busy processes.

    ``count``: how many (0 starts none but still reads the load average).
    ``max_seconds``: the most any of them runs, even if never stopped.
    """

    def __init__(self, count: int, max_seconds: float = DEFAULT_MAX_SECONDS) -> None:
        self.count = check_count(count)
        if not (isinstance(max_seconds, (int, float)) and max_seconds > 0):
            raise ValueError(f"max_seconds must be a positive number, got {max_seconds!r}")
        self.max_seconds = float(max_seconds)
        self.processes: list[subprocess.Popen] = []
        self.load_start: list[float] | None = None
        self.load_end: list[float] | None = None
        self.alive_at_end: int | None = None
        self._stopped = False

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def __enter__(self) -> BackgroundLoad:
        self.load_start = load_average()
        try:
            for _ in range(self.count):
                self.processes.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-I",  # no user site, no PYTHON* variables
                            "-S",  # no site-packages: nothing to import, little memory
                            "-c",
                            _SPIN,
                            str(os.getpid()),
                            repr(self.max_seconds),
                            repr(POLL_SECONDS),
                        ],
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        close_fds=True,
                        start_new_session=True,  # out of reach of the terminal's Ctrl-C
                    )
                )
        except BaseException:
            self.stop()  # the ones already started do not outlive a failed start
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Read the end load average, then end every process (idempotent)."""
        if not self._stopped:
            self.record()
            self._stopped = True
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + 2.0
        for process in self.processes:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes = []

    def record(self) -> dict[str, Any]:
        """What the benchmark's results say about the load. Until :meth:`stop`, each call
        reads the end values anew (the processes still running); after it, they stay."""
        if not self._stopped:
            self.load_end = load_average()
            self.alive_at_end = sum(1 for p in self.processes if p.poll() is None)
        return {
            "processes": self.count,
            "kind": "busy loop, one python process each, started and stopped by the harness",
            "alive_at_end": self.alive_at_end,
            "max_seconds": self.max_seconds,
            "loadavg_start": self.load_start,
            "loadavg_end": self.load_end,
        }


__all__ = ["BackgroundLoad", "check_count", "load_average", "max_processes"]
