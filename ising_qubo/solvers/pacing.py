"""How the CPU annealers cut their work into compiled-kernel calls under a time limit.

A compiled (numba) call cannot be stopped from Python, so a time limit or Ctrl-C is only
noticed between calls. The rule, shared by ``torch-sa``'s CPU backend and the swap search
of :mod:`ising_qubo.solvers.budgeted`: each call should take about 2% of the time limit
(at least 2 ms, at most 0.25 s; 0.25 s without a limit), its size estimated from the cost
of the calls before it; the first call, whose cost is unknown, is one sweep.

How the work is cut never changes a seeded result (each replica has its own random
stream), only how soon a stop is noticed.
"""

from __future__ import annotations

#: Longest kernel call (seconds): bounds how late Ctrl-C is noticed without a time limit.
MAX_CALL_SECONDS = 0.25
#: Shortest kernel call (seconds): below this the per-call overhead dominates.
MIN_CALL_SECONDS = 0.002
#: Fraction of the time limit one call may take: how far a run may overshoot its limit.
LIMIT_FRACTION = 0.02


def call_seconds(limit: float | None) -> float:
    """Target length of one kernel call for a time limit of ``limit`` seconds (or none)."""
    if limit is None:
        return MAX_CALL_SECONDS
    return min(MAX_CALL_SECONDS, max(MIN_CALL_SECONDS, LIMIT_FRACTION * limit))


class Pacer:
    """Sizes kernel calls to about :func:`call_seconds` of ``limit`` from the measured cost.

    A call runs ``width`` replicas (at least one per thread, when there are that many)
    for some sweeps; the cost of a replica-sweep is re-measured after every call
    (:meth:`record`), and the first call (cost unknown) is one sweep.
    """

    def __init__(self, limit: float | None, threads: int = 1) -> None:
        self.target = call_seconds(limit)
        self.threads = max(1, threads)
        self.cost: float | None = None  # seconds per replica-sweep

    def block(self, replicas: int, sweeps: int) -> tuple[int, int]:
        """(replicas, sweeps) of the next call, out of ``replicas`` and ``sweeps`` left."""
        width = min(replicas, self.threads)
        if self.cost is None:
            return width, 1
        budget = self.target / self.cost  # replica-sweeps in one call
        if budget >= width * sweeps:
            return min(replicas, max(width, int(budget // sweeps))), sweeps
        return width, self.sweeps(width, sweeps)

    def sweeps(self, width: int, sweeps: int) -> int:
        """Sweeps of the next call of ``width`` replicas, out of ``sweeps`` left (>= 1)."""
        if self.cost is None:
            return 1
        budget = self.target / self.cost
        return max(1, min(sweeps, int(budget // width)))

    def record(self, replica_sweeps: int, seconds: float) -> None:
        """The last call ran ``replica_sweeps`` replica-sweeps in ``seconds``."""
        self.cost = max(seconds, 1e-9) / max(replica_sweeps, 1)


__all__ = ["Pacer", "call_seconds"]
