"""What the dwave-samplers front ends add: a ``time_limit`` and wall time in ``info``."""

from __future__ import annotations

from typing import Any

import dimod

from ising_qubo.solvers._common import check_bqm, wall_timer


class WallTimed:
    """Mixin for a dwave-samplers class: checks input and records wall time."""

    solver_name = ""

    def _timed_sample(self, bqm: dimod.BinaryQuadraticModel, **parameters: Any):
        check_bqm(bqm, self.solver_name)
        info: dict[str, Any] = {}
        with wall_timer(info):
            sampleset = super().sample(bqm, **parameters)
        sampleset.info.setdefault("timing", {})["wall_s"] = info["timing"]["wall_s"]
        return sampleset
