"""What a solver can do, declared by the solver and read in one place.

Every sampler of this package declares a class attribute ``capabilities`` (a frozenset of
:class:`Capability`); callers (the pruning problem, the benchmark harness, the CLI) ask
:func:`supports` instead of guessing from ``parameters``, ``hasattr`` or signatures.

A third-party ``dimod.Sampler`` that declares nothing is read from what dimod itself makes
it declare: its ``parameters`` (``initial_states``, ``time_limit``). Composites that only
add defaults (:class:`~ising_qubo.solvers.registry.ParameterDefaults`) answer for their
child.
"""

from __future__ import annotations

from enum import Enum
from typing import Any


class Capability(str, Enum):
    """One thing a sampler may accept beyond ``sample(bqm)``."""

    #: ``sample(bqm, cardinality=k, cardinality_sense="==" | "<=" | ">=")``: a hard count of
    #: the variables set (x = 1): exactly (the default), at most or at least k
    CARDINALITY = "cardinality"
    #: ``sample(bqm, cardinalities=[(labels, k), ...])``: one hard count per group
    CARDINALITIES = "cardinalities"
    #: ``sample(bqm, budget_costs=..., budget=...)``: a hard linear budget
    BUDGET = "budget"
    #: ``sample(bqm, count_budget={...})``: a hard budget on a quadratic function of the
    #: numbers of selected variables per group (the exact parameter count of a pruned
    #: network): cost = constant + sum_g a_g k_g + sum_(g,h) b_gh k_g k_h <= limit, with
    #: optional floors k_g >= f_g; see CPSATSampler for the exact form
    COUNT_BUDGET = "count_budget"
    #: ``sample_batch([bqm, ...])``: many independent problems in one call
    BATCH = "batch"
    #: ``sample_structured(LowRankIsing)``: dense blocks + low-rank terms, no n x n matrix
    STRUCTURED = "structured"
    #: ``sample_structured(..., cardinalities=[(labels, k), ...])``: swap moves keep the counts
    STRUCTURED_CARDINALITIES = "structured_cardinalities"
    #: ``initial_states=`` warm starts
    INITIAL_STATES = "initial_states"
    #: ``time_limit=`` seconds, kept by the solver itself
    TIME_LIMIT = "time_limit"
    #: Ctrl-C returns the best state so far with ``info["interrupted"] = True``
    INTERRUPT = "interrupt"


# what dimod's declared ``parameters`` reveal of a sampler that declares no capabilities
_FROM_PARAMETERS = {
    "initial_states": Capability.INITIAL_STATES,
    "time_limit": Capability.TIME_LIMIT,
}


def capabilities(sampler: Any) -> frozenset[Capability]:
    """The capabilities ``sampler`` declares (see the module docstring for the rules)."""
    child = getattr(sampler, "capability_source", None)
    if child is not None:  # a wrapper that only binds defaults answers for its child
        return capabilities(child)
    declared = getattr(sampler, "capabilities", None)
    if declared is not None:
        return frozenset(Capability(c) for c in declared)
    parameters = getattr(sampler, "parameters", None) or {}
    return frozenset(cap for key, cap in _FROM_PARAMETERS.items() if key in parameters)


def supports(sampler: Any, capability: Capability | str) -> bool:
    """Whether ``sampler`` declares ``capability``."""
    return Capability(capability) in capabilities(sampler)


__all__ = ["Capability", "capabilities", "supports"]
