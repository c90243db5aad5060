"""Solvers: every one a ``dimod.Sampler``, chosen by name or passed as an instance.

The built-in ones are registered here, each with the optional modules it needs and the
extra of ``ising-qubo`` that installs them (the core install has neal, tabu, greedy, exact
and de).
"""

from ising_qubo._extras import install_command, is_installed
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


def _torch_sa_status() -> str:
    """torch-sa's availability line: its CPU kernel needs numba only; torch (for CUDA) is
    asked about only when installed."""
    if not is_installed("torch"):
        return f"yes (CPU; CUDA needs torch: {install_command('torch')})"
    from ising_qubo.solvers._torch_common import cuda_status

    return cuda_status()


# (name, factory, description, availability, needs: {optional module: extra})
_BUILTINS = [
    (
        "neal",
        "ising_qubo.solvers.neal:NealSampler",
        "simulated annealing (dwave-samplers), CPU",
        None,
        None,
    ),
    (
        "tabu",
        "ising_qubo.solvers.tabu:TabuSolver",
        "multistart tabu search (dwave-samplers), CPU",
        None,
        None,
    ),
    (
        "greedy",
        "ising_qubo.solvers.greedy:GreedySolver",
        "steepest descent to a local minimum (dwave-samplers), CPU",
        None,
        None,
    ),
    (
        "exact",
        "ising_qubo.solvers.exact:ExactSampler",
        "brute force over all states (dimod), at most 24 variables",
        None,
        None,
    ),
    (
        "cpsat",
        "ising_qubo.solvers.cpsat:CPSATSampler",
        "OR-Tools CP-SAT: proven optimum, hard cardinality/budget constraints",
        None,
        {"ortools": "cpsat"},
    ),
    (
        "de",
        "ising_qubo.solvers.de:DifferentialEvolutionSampler",
        "the paper's binary differential evolution (numpy, vectorised)",
        None,
        None,
    ),
    (
        "torch-sa",
        "ising_qubo.solvers.torch_sa:TorchSASampler",
        "simulated annealing, replicas in parallel: compiled kernel on CPU, PyTorch on CUDA",
        "ising_qubo.solvers:_torch_sa_status",
        {"numba": "anneal"},  # torch only for CUDA or backend="torch"
    ),
    (
        "torch-sb",
        "ising_qubo.solvers.torch_sb:TorchSBSampler",
        "simulated bifurcation (ballistic/discrete) in PyTorch, batched agents, CPU or CUDA",
        "ising_qubo.solvers._torch_common:cuda_status",
        {"torch": "torch"},
    ),
    (
        "sb-ref",
        "ising_qubo.solvers.sb_ref:SBReferenceSampler",
        "the PyPI package simulated-bifurcation (optional extra 'bench')",
        "ising_qubo.solvers.sb_ref:package_status",
        {"torch": "torch"},  # simulated-bifurcation itself: checked when sampling
    ),
    (
        "openjij",
        "ising_qubo.solvers.openjij_sa:OpenJijSASampler",
        "OpenJij's simulated annealing, one read per call (optional extra 'bench'), CPU",
        None,
        {"openjij": "bench"},
    ),
]

for _name, _factory, _description, _availability, _needs in _BUILTINS:
    register_solver(
        _name, _factory, description=_description, availability=_availability, needs=_needs
    )

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
