"""``tabu``: dwave-samplers' multistart tabu search, with a total wall-clock limit."""

from __future__ import annotations

from typing import Any

import dimod
from dwave.samplers import TabuSampler

from ising_qubo.solvers._common import optional_time_limit, positive_int
from ising_qubo.solvers._dwave import WallTimed


class TabuSolver(WallTimed, TabuSampler):
    """dwave-samplers' ``TabuSampler``; ``time_limit`` (seconds) is shared by all reads.

    dwave's own ``timeout`` is in milliseconds per read; ``time_limit`` sets it to
    ``time_limit / num_reads`` so the whole call respects the limit.
    """

    solver_name = "tabu"

    def __init__(self) -> None:
        super().__init__()
        self.parameters["time_limit"] = []

    def sample(self, bqm: dimod.BinaryQuadraticModel, time_limit: float | None = None,
               **parameters: Any) -> dimod.SampleSet:
        seconds = optional_time_limit(time_limit, self.solver_name)
        if seconds is not None:
            reads = positive_int(parameters.get("num_reads") or 1, "num_reads", "tabu")
            parameters["timeout"] = max(1, int(1000 * seconds / reads))
        return self._timed_sample(bqm, **parameters)
