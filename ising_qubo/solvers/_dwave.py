"""What the dwave-samplers front ends add: checks, a ``time_limit`` and wall time in ``info``."""

from __future__ import annotations

from typing import Any

import dimod

from ising_qubo.solvers._common import check_bqm, positive_int, wall_timer


class WallTimed:
    """Mixin for a dwave-samplers class: checks input and records wall time.

    dwave-samplers silently ignore keywords they do not know; these front ends follow
    dimod's convention instead (``SamplerUnknownArgWarning``, then ignored), and refuse a
    ``num_reads`` that is not a positive integer with a ValueError naming the solver.
    Type checkers cannot see the sampler this is mixed into (it comes after this class in
    the MRO), hence the ``# type: ignore  # mixin`` on what is taken from it.
    """

    solver_name = ""

    def _checked(
        self, bqm: dimod.BinaryQuadraticModel, parameters: dict[str, Any]
    ) -> dict[str, Any]:
        check_bqm(bqm, self.solver_name)
        parameters = self.remove_unknown_kwargs(**parameters)  # type: ignore[attr-defined]  # mixin
        if parameters.get("num_reads") is not None:
            positive_int(parameters["num_reads"], "num_reads", self.solver_name)
        return parameters

    def _timed_sample(self, bqm: dimod.BinaryQuadraticModel, **parameters: Any):
        parameters = self._checked(bqm, parameters)
        info: dict[str, Any] = {}
        with wall_timer(info):
            sampleset = super().sample(bqm, **parameters)  # type: ignore[misc]  # mixin
        sampleset.info.setdefault("timing", {})["wall_s"] = info["timing"]["wall_s"]
        return sampleset
