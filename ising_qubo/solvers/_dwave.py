"""What the dwave-samplers front ends add: checks, a ``time_limit`` and wall time in ``info``."""

from __future__ import annotations

import math
from typing import Any

import dimod
import numpy as np

from ising_qubo.solvers._common import (
    check_bqm,
    check_initial_states_generator,
    check_seed,
    check_states_memory,
    positive_int,
    wall_timer,
)

# Peak memory of a dwave-samplers call per read and variable, measured (neal, tabu and
# greedy alike: 9 bytes): dimod draws the initial states as int64, the C++ code and the
# SampleSet keep int8 copies.
STATE_BYTES = 10


# dwave-samplers converts these parameters to C integers (int64): larger ones raise
# OverflowError.
_C_LIMIT = 2**63


def _is_int(value: Any) -> bool:
    return (
        not isinstance(value, bool)
        and isinstance(value, (int, np.integer))
        and (abs(value) < _C_LIMIT)
    )


def _is_number(value: Any) -> bool:
    """A finite int or float that fits a C integer."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return False
    return math.isfinite(value) and abs(value) < _C_LIMIT


def _is_pair(value: Any) -> bool:
    return (
        isinstance(value, (list, tuple, np.ndarray))
        and len(value) == 2
        and all(_is_number(v) for v in value)
    )


# Types of the parameters dwave-samplers checks only in compiled code, which raises
# TypeError or OverflowError (a traceback on the command line) for e.g. ``--param
# tenure={}`` or ``timeout=Infinity``, or takes any value as a truth value. Their ranges
# are left to dwave-samplers (ValueError).
_TYPES: dict[str, tuple[Any, str]] = {
    "num_sweeps_per_beta": (_is_int, "an integer below 2^63"),
    "tenure": (_is_int, "an integer below 2^63"),
    "timeout": (_is_int, "an integer (milliseconds) below 2^63"),  # tabu slices by it
    # dwave-samplers takes these as numbers (1.0 works), so they are checked as numbers
    **dict.fromkeys(
        (
            "num_restarts",
            "coefficient_z_first",
            "coefficient_z_restart",
            "lower_bound_z",
            "energy_threshold",
        ),
        (_is_number, "a number below 2^63 in size"),
    ),
    "beta_range": (_is_pair, "two numbers [hot, cold]"),
    "beta_schedule_type": (lambda v: isinstance(v, str), "a string"),
    "proposal_acceptance_criteria": (lambda v: isinstance(v, str), "a string"),
    "randomize_order": (lambda v: isinstance(v, (bool, np.bool_)), "true or false"),
    "large_sparse_opt": (lambda v: isinstance(v, (bool, np.bool_)), "true or false"),
}


class WallTimed:
    """Mixin for a dwave-samplers class: checks input and records wall time.

    dwave-samplers silently ignore keywords they do not know; these front ends follow
    dimod's convention instead (``SamplerUnknownArgWarning``, then ignored), and refuse a
    ``num_reads`` that is not a positive integer, a ``seed`` outside [0, 2^31 - 1], a
    scalar parameter of the wrong type and a ``num_reads`` whose states would not fit in
    memory (:func:`~ising_qubo.solvers._common.check_states_memory`) with a ValueError
    naming the solver.
    Type checkers cannot see the sampler this is mixed into (it comes after this class in
    the MRO), hence the ``# type: ignore  # mixin`` on what is taken from it.
    """

    solver_name = ""

    def _checked(
        self,
        bqm: dimod.BinaryQuadraticModel,
        parameters: dict[str, Any],
        bytes_per_entry: int = STATE_BYTES,
    ) -> dict[str, Any]:
        """``bytes_per_entry``: the call's peak memory per read and variable."""
        check_bqm(bqm, self.solver_name)
        parameters = self.remove_unknown_kwargs(**parameters)  # type: ignore[attr-defined]  # mixin
        check_seed(parameters.get("seed"), self.solver_name)
        if parameters.get("initial_states_generator") is not None:
            check_initial_states_generator(parameters["initial_states_generator"], self.solver_name)
        for name, value in parameters.items():
            if name in _TYPES and value is not None and not _TYPES[name][0](value):
                raise ValueError(
                    f"{self.solver_name}: {name} must be {_TYPES[name][1]}, got {value!r}"
                )
        if parameters.get("num_reads") is not None:
            reads = positive_int(parameters["num_reads"], "num_reads", self.solver_name)
            check_states_memory(reads, bqm.num_variables, bytes_per_entry, self.solver_name)
        return parameters

    def _timed_sample(self, bqm: dimod.BinaryQuadraticModel, **parameters: Any):
        parameters = self._checked(bqm, parameters)
        info: dict[str, Any] = {}
        with wall_timer(info):
            sampleset = super().sample(bqm, **parameters)  # type: ignore[misc]  # mixin
        sampleset.info.setdefault("timing", {})["wall_s"] = info["timing"]["wall_s"]
        return sampleset


def descent_fallback(
    bqm: dimod.BinaryQuadraticModel,
    start: np.ndarray | None,
    seed: int | None,
    reason: str,
    left: float | None = None,
) -> dimod.SampleSet:
    """A steepest descent (dwave's ``SteepestDescentSolver``) from ``start`` (one state
    in ``bqm``'s vartype and variable order), or from a random state drawn from ``seed``,
    with ``info["fallback"] = reason``: what a solver returns when its own set-up or one
    read of it cannot fit in the time left (tabu, sb-ref, openjij). When the descent
    itself would not fit in ``left`` seconds (it builds adjacency lists and descends from
    scratch: 1.3 s quiet, 2.5 s beside two busy processes, on 8.4 million interactions),
    the start state comes back as it is, and the reason says so."""
    from dwave.samplers import SteepestDescentSolver

    if start is None:
        values = (-1, 1) if bqm.vartype is dimod.SPIN else (0, 1)
        rng = np.random.default_rng(seed)
        start = rng.choice(values, size=bqm.num_variables)
    states = np.asarray(start, dtype=np.int8).reshape(1, bqm.num_variables)
    samples = (states, list(bqm.variables))
    needed = _DESCENT_SECONDS_PER_ENTRY * (bqm.num_variables + bqm.num_interactions)
    if left is not None and needed > left:
        sampleset = dimod.SampleSet.from_samples_bqm(samples, bqm)
        reason = f"{reason}; no time left for the descent either: the start state as it is"
    else:
        sampleset = SteepestDescentSolver().sample(bqm, initial_states=samples)
    sampleset.info["fallback"] = reason
    return sampleset


# A steepest descent's seconds per variable and interaction (building its adjacency and
# descending from a random state), measured beside two busy processes on 4,096 dense
# variables.
_DESCENT_SECONDS_PER_ENTRY = 3e-7
