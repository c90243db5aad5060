"""``greedy``: dwave-samplers' steepest descent from random (or given) states."""

from __future__ import annotations

from typing import Any

import dimod
from dwave.samplers import SteepestDescentSolver

from ising_qubo.solvers._dwave import WallTimed
from ising_qubo.solvers.capabilities import Capability as C


class GreedySolver(WallTimed, SteepestDescentSolver):
    """dwave-samplers' ``SteepestDescentSolver``: every sample is a local minimum.

    No time limit: all reads run in one C++ call that does not look at Python signals,
    so Ctrl-C takes effect when the call returns and raises KeyboardInterrupt (there is no
    partial result to return). Each read is one descent, so this is rarely long.
    """

    solver_name = "greedy"
    capabilities = frozenset({C.INITIAL_STATES})

    def sample(  # type: ignore[override]  # dwave's named keywords pass via **parameters
        self, bqm: dimod.BinaryQuadraticModel, **parameters: Any
    ) -> dimod.SampleSet:
        return self._timed_sample(bqm, **parameters)
