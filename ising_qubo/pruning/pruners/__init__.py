"""Pruners: training hooks that choose the units to keep and then remove the others.

One pruner per module: :mod:`.ising` (:class:`IsingPruner`, Ising-dropout by an energy and
a solver), :mod:`.importance` (:class:`ImportancePruner`, the top-k baselines, uniform and
Torch-Pruning's global) and :mod:`.tp` (:class:`IsingMetaPruner` and
:class:`IsingImportance`: the Ising solution with Torch-Pruning's conventions).
``prune_model`` (one-shot, no training) lives in :mod:`ising_qubo.pruning.prune`; it is
reachable from here too, loaded on first use because it is built on this package.
"""

from ising_qubo.pruning.pruners.importance import BASELINES, ImportancePruner
from ising_qubo.pruning.pruners.ising import IsingPruner
from ising_qubo.pruning.pruners.tp import IsingImportance, IsingMetaPruner


def __getattr__(name: str):
    if name == "prune_model":
        from ising_qubo.pruning.prune import prune_model

        return prune_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BASELINES",
    "ImportancePruner",
    "IsingImportance",
    "IsingMetaPruner",
    "IsingPruner",
    "prune_model",
]
