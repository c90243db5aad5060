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

_LAZY = {
    # the network side imports torch and Torch-Pruning: load it on first use only, so that
    # solving a QUBO file stays quick to start
    "PruningProblem": "ising_qubo.pruning.problem",
    "PruningSolution": "ising_qubo.pruning.problem",
    "IsingPruner": "ising_qubo.pruning.pruners.ising",
    "ImportancePruner": "ising_qubo.pruning.pruners.importance",
    "prune_model": "ising_qubo.pruning.prune",
    "load_pruned": "ising_qubo.nets.persist",
    "save_pruned": "ising_qubo.nets.persist",
}


# submodules reachable as attributes (``iq.models.build(...)``), imported on first use:
# ``import ising_qubo`` itself never imports torch
_SUBMODULES = {
    "io": "ising_qubo.io",
    "solvers": "ising_qubo.solvers",
    "bench": "ising_qubo.bench",
    "lowrank": "ising_qubo.lowrank",
    "scaling": "ising_qubo.scaling",
    "qubo": "ising_qubo.qubo",
    "nets": "ising_qubo.nets",
    "models": "ising_qubo.nets.models",
    "pruning": "ising_qubo.pruning",
}


# what the network side needs, as one extra: torch, torchvision, Torch-Pruning, ...
_PRUNE_EXTRA = {*_LAZY, "nets", "models", "pruning"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(_import(_LAZY[name], name), name)
    if name in _SUBMODULES:
        module = _import(_SUBMODULES[name], name)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'ising_qubo' has no attribute {name!r}")


def _import(module: str, name: str):
    """``module``, imported; an optional dependency it lacks is a one-line ImportError
    naming the extra to install (``ising_qubo.prune_model needs torch: pip install
    'ising-qubo[prune]'``)."""
    import importlib

    from ising_qubo._extras import as_missing_extra

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        extra = "prune" if name in _PRUNE_EXTRA else None
        missing = as_missing_extra(exc, f"ising_qubo.{name}", extra)
        if missing is None:
            raise
        raise missing from exc


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *_SUBMODULES})


__all__ = [
    "ImportancePruner",
    "IsingPruner",
    "PruningProblem",
    "PruningSolution",
    "budget_penalty",
    "cardinality_penalty",
    "from_ising_matrix",
    "from_qubo_matrix",
    "get_solver",
    "list_solvers",
    "load_pruned",
    "prune_model",
    "register_solver",
    "save_pruned",
    "solve",
    "solver_info",
    "with_budget",
    "with_cardinality",
]


def _version() -> str:
    """The installed distribution's version; in a source tree that was never installed,
    the one in ``pyproject.toml`` (the only place the version is written)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ising-qubo")
    except PackageNotFoundError:
        import re
        from pathlib import Path

        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        found = pyproject.is_file() and re.search(
            r'^version\s*=\s*"([^"]+)"', pyproject.read_text(encoding="utf-8"), re.MULTILINE
        )
        return found.group(1) if found else "0+unknown"


__version__ = _version()
