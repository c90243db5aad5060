"""``exact``: brute force over all 2^n states (dimod's ExactSolver), for small problems."""

from __future__ import annotations

from typing import Any

import dimod
import numpy as np

from ising_qubo.solvers._common import check_bqm, check_states_memory, wall_timer
from ising_qubo.solvers.capabilities import Capability

MAX_VARIABLES = 24
# dimod's peak memory per state and variable, measured (3.7 bytes: int8 states, their
# energies and counts).
_STATE_BYTES = 4


class ExactSampler(dimod.Sampler):
    """Every state of the problem, lowest energy first; refuses more than 24 variables.

    2^24 states already take about 0.5 GB as a SampleSet, so the limit is a memory guard.
    No time limit, and Ctrl-C raises KeyboardInterrupt: brute force has no best-so-far
    (dimod scores all states at once).
    """

    parameters: dict[str, list] = {}
    capabilities: frozenset[Capability] = frozenset()
    properties = {"max_variables": MAX_VARIABLES}

    def sample(self, bqm: dimod.BinaryQuadraticModel, **parameters: Any) -> dimod.SampleSet:
        check_bqm(bqm, "exact")
        parameters = self.remove_unknown_kwargs(**parameters)
        if bqm.num_variables > MAX_VARIABLES:
            raise ValueError(
                f"exact: {bqm.num_variables} variables is too many for brute force "
                f"(at most {MAX_VARIABLES}: 2^{bqm.num_variables} states); "
                "use 'cpsat' for a proven optimum or 'neal' for a heuristic answer"
            )
        n = bqm.num_variables
        check_states_memory(2**n, n, _STATE_BYTES, "exact", count_text=f"all 2^{n} states")
        info: dict[str, Any] = {"status": "OPTIMAL"}
        with wall_timer(info):
            if bqm.num_variables == 0:  # dimod returns no sample; the one empty state exists
                sampleset = dimod.SampleSet.from_samples_bqm(np.empty((1, 0), np.int8), bqm)
            else:
                sampleset = dimod.ExactSolver().sample(bqm)
        sampleset.info.update(info)
        return sampleset
