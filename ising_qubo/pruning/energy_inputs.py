"""The model side of an energy's inputs: weights, feature maps and importances as numpy.

:class:`ModelInputs` implements :class:`~ising_qubo.pruning.energies.base.EnergyInputs`
over a network's :class:`~ising_qubo.pruning.groups.ModelGroups`, so that the energies
themselves never touch torch. The pruning problem makes one per energy build.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ising_qubo.pruning.groups import LayerChannels, ModelGroups, UnitGroup, forward_with_hooks
from ising_qubo.pruning.importance import NEEDS_DATA, group_importance


@dataclass
class ModelInputs:
    """One network's groups, the problem's variable layout and options, and ``data``:
    the batch that feature maps and data-driven importances come from (None: the
    example inputs give the feature maps)."""

    model_groups: ModelGroups
    data: Any
    offsets: Mapping[str, int]
    labels: Sequence[str]
    keep_counts: Mapping[str, int] | None
    importance: str = "l1"
    similarity: str = "cosine"
    redundancy_weight: float = 1.0
    seed: int = 0

    @property
    def groups(self) -> list[UnitGroup]:
        return self.model_groups.groups

    @property
    def order(self) -> list[str]:
        return self.model_groups.order

    @property
    def num_variables(self) -> int:
        return len(self.labels)

    @property
    def importance_needs_data(self) -> bool:
        return self.importance in NEEDS_DATA

    def keep_count(self, group: UnitGroup) -> int | None:
        return None if self.keep_counts is None else self.keep_counts[group.name]

    def weight(self, layer: LayerChannels) -> np.ndarray:
        return module_weight(layer.module, layer.name)[layer.channels]

    def feature_maps(self, layers: Sequence[LayerChannels]) -> dict[str, np.ndarray]:
        data = self.data if self.data is not None else self.model_groups.example_inputs
        maps = mean_feature_maps(self.model_groups.model, [layer.module for layer in layers], data)
        # each full map is let go as soon as its channels are taken
        return {layer.name: maps.pop(id(layer.module))[layer.channels] for layer in layers}

    def importance_scores(self) -> dict[str, np.ndarray]:
        return group_importance(self.model_groups, self.importance, self.data, self.seed)


def module_weight(module: nn.Module, name: str) -> np.ndarray:
    """``module.weight`` as float64 numpy; a ValueError naming the layer if not finite."""
    tensor = module.weight
    assert isinstance(tensor, torch.Tensor)  # a conv / linear layer (LayerChannels)
    weight = tensor.detach().float().cpu().numpy().astype(np.float64)
    finite = np.isfinite(weight)
    if not finite.all():
        bad = int((~finite).sum())
        channel = int(np.argwhere(~finite)[0][0])
        raise ValueError(
            f"layer {name!r} ({type(module).__name__}, weight shape "
            f"{tuple(weight.shape)}) has {bad} NaN or infinite weight(s), the "
            f"first in output channel {channel}: the energy cannot be built "
            f"(did training diverge? lower the learning rate or restart from a "
            f"finite checkpoint)"
        )
    return weight


def mean_feature_maps(model: nn.Module, modules: list[nn.Module], data: Any) -> dict:
    """Batch-averaged outputs (C, ...) of ``modules`` on one batch of ``data``, by id."""
    inputs = (
        data[0]
        if isinstance(data, (tuple, list))
        and len(data) == 2
        and torch.is_tensor(data[1])
        and data[1].dtype in (torch.int64, torch.int32)
        else data
    )
    maps: dict[int, np.ndarray] = {}

    def hook(module, _inputs, output):
        maps[id(module)] = output.detach().float().mean(dim=0).cpu().numpy()

    forward_with_hooks(model, modules, hook, inputs)
    return maps
