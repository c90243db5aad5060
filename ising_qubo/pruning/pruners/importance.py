"""The importance baseline: the Ising pruner's interface and budget, no Ising model.

:class:`ImportancePruner` keeps the top-k units of each group by an importance (``l1``,
``random``, ``tp-magnitude``, ``tp-taylor``, ...; see :mod:`ising_qubo.pruning.importance`),
chosen when :meth:`~ImportancePruner.step` or :meth:`~ImportancePruner.prune` is called.

Two allocations of the same exact budget (``keep`` of the pruned model's parameters or
MACs): uniform (every group keeps the same fraction of its units,
:func:`~ising_qubo.pruning.groups.uniform_keep_counts`) and, for the ``tp-global-*``
methods, Torch-Pruning's global pruning (one threshold over Torch-Pruning's per-group
normalised importances of all units, :func:`~ising_qubo.pruning.importance.global_keep_counts`),
so each layer keeps what its scores earn.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from torch import nn

from ising_qubo.nets.training import TrainingHook
from ising_qubo.pruning.groups import ModelGroups, uniform_keep_counts
from ising_qubo.pruning.importance import (
    global_keep_counts,
    group_importance,
    top_k_masks,
    tp_group_scores,
)

# Torch-Pruning's global pruning (``global_pruning=True``) by importance, at the exact budget
GLOBAL_BASELINES = {
    "tp-global-magnitude": "tp-magnitude",
    "tp-global-taylor": "tp-taylor",
    "tp-global-bn": "tp-bn",
}
BASELINES = ("l1", "random", "tp-magnitude", "tp-taylor", *GLOBAL_BASELINES)


class ImportancePruner(TrainingHook):
    """Baseline: the same budget as :class:`~ising_qubo.pruning.pruners.ising.IsingPruner`,
    units chosen by importance.

    ``importance="tp-global-..."``: the units to keep per group are chosen too, when
    :meth:`step` scores them (``keep_counts`` is the uniform allocation until then);
    ``min_keep`` is the floor of that allocation, a fraction of each group (at least 1).
    """

    def __init__(
        self,
        model: nn.Module,
        example_inputs: Any,
        keep: float = 0.5,
        importance: str = "l1",
        data: Any = None,
        keep_by: str = "params",
        ignored_layers: Any = None,
        seed: int = 0,
        run_on_main: Callable[[Callable[[], Any]], Any] | None = None,
        min_keep: float = 0.0,
    ) -> None:
        if importance not in BASELINES and importance not in ("l2", "bn", "taylor", "tp-bn"):
            raise ValueError(
                f"unknown baseline {importance!r}; choose one of {', '.join(BASELINES)}"
            )
        self.model = model
        self.model_groups = ModelGroups(model, example_inputs, ignored_layers)
        self.keep_counts = uniform_keep_counts(self.model_groups, keep, keep_by)
        self.keep = keep
        self.keep_by = keep_by
        self.min_keep = min_keep
        self.importance = importance
        self.data = data
        self.seed = seed
        self.run_on_main = run_on_main  # as in IsingPruner: chosen on the main process
        self.masks: dict[str, np.ndarray] | None = None
        self.energy_history: list[dict] = []

    @property
    def groups(self):
        return self.model_groups.groups

    def step(self, data: Any = None) -> dict[str, np.ndarray]:
        batch = data if data is not None else self.data

        def choose() -> dict[str, np.ndarray]:
            if self.importance in GLOBAL_BASELINES:
                scores = tp_group_scores(
                    self.model_groups, GLOBAL_BASELINES[self.importance], batch
                )
                counts = global_keep_counts(
                    self.model_groups, scores, self.keep, self.keep_by, self.min_keep
                )
                # groups Torch-Pruning cannot score stay whole, as in its MetaPruner
                return top_k_masks(scores, counts)
            scores = group_importance(self.model_groups, self.importance, batch, self.seed)
            return top_k_masks(scores, self.keep_counts)

        self.masks = choose() if self.run_on_main is None else self.run_on_main(choose)
        self.keep_counts = {name: int(mask.sum()) for name, mask in self.masks.items()}
        return self.masks

    def prune(self) -> list[tuple[str, list[int]]]:
        masks = self.masks if self.masks is not None else self.step()
        return self.model_groups.prune(masks)

    def state_dict(self) -> dict:
        return {
            "masks": None
            if self.masks is None
            else {k: v.astype(bool).tolist() for k, v in self.masks.items()}
        }

    def load_state_dict(self, state: dict) -> None:
        masks = state.get("masks")
        self.masks = (
            None if masks is None else {k: np.asarray(v, dtype=bool) for k, v in masks.items()}
        )
