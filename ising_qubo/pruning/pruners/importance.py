"""The importance baseline: the Ising pruner's interface and budget, no Ising model.

:class:`ImportancePruner` keeps the top-k units of each group by an importance (``l1``,
``random``, ``tp-magnitude``, ``tp-taylor``, ...; see :mod:`ising_qubo.pruning.importance`),
chosen when :meth:`~ImportancePruner.step` or :meth:`~ImportancePruner.prune` is called.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from torch import nn

from ising_qubo.nets.training import TrainingHook
from ising_qubo.pruning.groups import ModelGroups, uniform_keep_counts
from ising_qubo.pruning.importance import group_importance, top_k_masks

BASELINES = ("l1", "random", "tp-magnitude", "tp-taylor")


class ImportancePruner(TrainingHook):
    """Baseline: the same budget as :class:`~ising_qubo.pruning.pruners.ising.IsingPruner`,
    units chosen by importance."""

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
    ) -> None:
        if importance not in BASELINES and importance not in ("l2", "bn", "taylor"):
            raise ValueError(
                f"unknown baseline {importance!r}; choose one of {', '.join(BASELINES)}"
            )
        self.model = model
        self.model_groups = ModelGroups(model, example_inputs, ignored_layers)
        self.keep_counts = uniform_keep_counts(self.model_groups, keep, keep_by)
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
        def choose() -> dict[str, np.ndarray]:
            scores = group_importance(
                self.model_groups,
                self.importance,
                data if data is not None else self.data,
                self.seed,
            )
            return top_k_masks(scores, self.keep_counts)

        self.masks = choose() if self.run_on_main is None else self.run_on_main(choose)
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
