"""Solvers: every one a ``dimod.Sampler``, chosen by name or passed as an instance."""

from ising_qubo.solvers.registry import (
    ENTRY_POINT_GROUP,
    ParameterDefaults,
    get_solver,
    list_solvers,
    register_solver,
    resolve_sampler,
    solve,
    solver_info,
    unregister_solver,
)

_BUILTINS = [
    (
        "neal",
        "ising_qubo.solvers.neal:NealSampler",
        "simulated annealing (dwave-samplers), CPU",
        None,
    ),
    (
        "tabu",
        "ising_qubo.solvers.tabu:TabuSolver",
        "multistart tabu search (dwave-samplers), CPU",
        None,
    ),
    (
        "greedy",
        "ising_qubo.solvers.greedy:GreedySolver",
        "steepest descent to a local minimum (dwave-samplers), CPU",
        None,
    ),
    (
        "exact",
        "ising_qubo.solvers.exact:ExactSampler",
        "brute force over all states (dimod), at most 24 variables",
        None,
    ),
    (
        "cpsat",
        "ising_qubo.solvers.cpsat:CPSATSampler",
        "OR-Tools CP-SAT: proven optimum, hard cardinality/budget constraints",
        None,
    ),
    (
        "de",
        "ising_qubo.solvers.de:DifferentialEvolutionSampler",
        "the paper's binary differential evolution (numpy, vectorised)",
        None,
    ),
    (
        "torch-sa",
        "ising_qubo.solvers.torch_sa:TorchSASampler",
        "simulated annealing, replicas in parallel: compiled kernel on CPU, PyTorch on CUDA",
        "ising_qubo.solvers._torch_common:cuda_status",
    ),
    (
        "torch-sb",
        "ising_qubo.solvers.torch_sb:TorchSBSampler",
        "simulated bifurcation (ballistic/discrete) in PyTorch, batched agents, CPU or CUDA",
        "ising_qubo.solvers._torch_common:cuda_status",
    ),
    (
        "sb-ref",
        "ising_qubo.solvers.sb_ref:SBReferenceSampler",
        "the PyPI package simulated-bifurcation (optional extra 'bench')",
        "ising_qubo.solvers.sb_ref:package_status",
    ),
]

for _name, _factory, _description, _availability in _BUILTINS:
    register_solver(_name, _factory, description=_description, availability=_availability)

__all__ = [
    "ENTRY_POINT_GROUP",
    "ParameterDefaults",
    "get_solver",
    "list_solvers",
    "register_solver",
    "resolve_sampler",
    "solve",
    "solver_info",
    "unregister_solver",
]
