"""``neal``: D-Wave's simulated annealing (dwave-samplers), with a wall-clock limit."""

from __future__ import annotations

from typing import Any

import dimod
from dwave.samplers import SimulatedAnnealingSampler

from ising_qubo.solvers._common import Deadline, optional_time_limit
from ising_qubo.solvers._dwave import WallTimed


class NealSampler(WallTimed, SimulatedAnnealingSampler):
    """dwave-samplers' ``SimulatedAnnealingSampler`` plus ``time_limit`` (seconds).

    The time limit stops between reads (dwave-samplers checks its interrupt function after
    each read), so at least one read always completes.
    """

    solver_name = "neal"

    def __init__(self) -> None:
        super().__init__()
        self.parameters["time_limit"] = []

    def sample(self, bqm: dimod.BinaryQuadraticModel, time_limit: float | None = None,
               **parameters: Any) -> dimod.SampleSet:
        seconds = optional_time_limit(time_limit, self.solver_name)
        if seconds is not None:
            deadline = Deadline(seconds)
            user_interrupt = parameters.get("interrupt_function")
            parameters["interrupt_function"] = lambda: deadline.expired() or bool(
                user_interrupt and user_interrupt())
        return self._timed_sample(bqm, **parameters)
