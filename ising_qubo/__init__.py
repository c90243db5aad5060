"""ising-qubo: prune convolutional networks by solving an Ising energy model.

The solver is a pluggable backend: every pruning problem is a ``dimod.BinaryQuadraticModel``
and every solver is a ``dimod.Sampler`` picked by name (``get_solver("neal")``) or passed
as an instance (any third-party dimod sampler, a D-Wave QPU included).
"""

from ising_qubo.qubo import (
    budget_penalty,
    cardinality_penalty,
    from_ising_matrix,
    from_qubo_matrix,
    with_budget,
    with_cardinality,
)
from ising_qubo.solvers import get_solver, list_solvers, register_solver, solve, solver_info

__all__ = [
    "budget_penalty",
    "cardinality_penalty",
    "from_ising_matrix",
    "from_qubo_matrix",
    "get_solver",
    "list_solvers",
    "register_solver",
    "solve",
    "solver_info",
    "with_budget",
    "with_cardinality",
]

__version__ = "0.1.0"
