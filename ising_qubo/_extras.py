"""Optional dependencies: which extra of ``ising-qubo`` installs a module, and the one-line
error when one is missing.

The core (``pip install ising-qubo``) reads, writes and solves QUBO files with the dimod
solvers; torch, numba, OR-Tools, matplotlib and the pruning stack come with extras
(``pyproject.toml``). A missing one is a :class:`MissingExtraError` (an ImportError) whose
message names what needed it and the command that installs it, e.g.
``torch-sa needs numba: pip install 'ising-qubo[anneal]'``.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

#: The extra that installs each optional top-level module.
EXTRA_OF = {
    "numba": "anneal",
    "ortools": "cpsat",
    "matplotlib": "plot",
    "torch": "torch",
    "networkx": "torch",
    "torchvision": "prune",
    "torch_pruning": "prune",
    "safetensors": "prune",
    "PIL": "prune",
    "simulated_bifurcation": "bench",
    "openjij": "bench",
}

#: How a message names a module whose distribution is called differently on PyPI.
_DISTRIBUTION = {
    "torch_pruning": "torch-pruning",
    "PIL": "pillow",
    "simulated_bifurcation": "simulated-bifurcation",
}


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message says which extra installs it."""

    def __init__(self, module: str, extra: str, what: str) -> None:
        self.module, self.extra, self.what = module, extra, what
        super().__init__(missing_message(module, extra, what), name=module)


def install_command(extra: str) -> str:
    return f"pip install 'ising-qubo[{extra}]'"


def missing_message(module: str, extra: str, what: str) -> str:
    """``"{what} needs {module}: pip install 'ising-qubo[{extra}]'"``."""
    return f"{what} needs {_DISTRIBUTION.get(module, module)}: {install_command(extra)}"


def is_installed(module: str) -> bool:
    """Whether ``module`` can be found, without importing it (torch alone takes seconds)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a broken __spec__
        return False


def require(module: str, extra: str, what: str) -> ModuleType:
    """``module``, imported; a :class:`MissingExtraError` naming ``extra`` when it (or a
    package it is part of) is not installed."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if not _same_package(exc.name, module):
            raise  # the module is there but something it imports is not: a real error
        raise MissingExtraError(module.partition(".")[0], extra, what) from None


def as_missing_extra(
    exc: BaseException, what: str, extra: str | None = None
) -> MissingExtraError | None:
    """``exc`` as a :class:`MissingExtraError` when it is a ModuleNotFoundError for an
    optional dependency (``extra`` overrides the module's own extra, e.g. ``prune`` for a
    command that needs the whole pruning stack); None for any other error."""
    if isinstance(exc, MissingExtraError):
        return exc
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    top = exc.name.partition(".")[0]
    if top not in EXTRA_OF:
        return None
    return MissingExtraError(top, extra or EXTRA_OF[top], what)


def _same_package(missing: str | None, wanted: str) -> bool:
    """Whether the module that was not found is ``wanted`` or one of its parents."""
    return bool(missing) and (wanted == missing or wanted.startswith(f"{missing}."))


__all__ = [
    "EXTRA_OF",
    "MissingExtraError",
    "as_missing_extra",
    "install_command",
    "is_installed",
    "missing_message",
    "require",
]
