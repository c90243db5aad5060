"""Channel importance per unit group: the fields of the redundancy energy and the
baselines (keep the top-k units by importance at the same budget as the Ising solver).

``l1`` is Li et al. (2017)'s filter L1 norm; ``bn`` the BatchNorm scale |gamma|;
``taylor`` the first-order Taylor estimate |sum w * dL/dw| of Molchanov et al. (2017),
from a labelled batch; ``tp-magnitude`` and ``tp-taylor`` are Torch-Pruning's own group
importances, used as they are so that the baselines are the library's, not ours.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch_pruning as tp
from torch import nn

from ising_qubo.pruning.groups import ModelGroups, UnitGroup, _forward, modes_kept

IMPORTANCES = ("l1", "l2", "bn", "taylor", "random", "tp-magnitude", "tp-taylor")
NEEDS_DATA = ("taylor", "tp-taylor")


def _per_layer(group: UnitGroup, values_of) -> np.ndarray:
    """Sum over the group's layers of a per-channel score, each layer scaled to mean 1 so
    that a wide conv and a narrow one count alike."""
    total = np.zeros(group.size)
    for layer in group.layers:
        values = values_of(layer.module)
        if values is None:
            continue
        values = values[layer.channels]
        mean = values.mean()
        with np.errstate(invalid="ignore"):  # inf weights: NaN here, reported by the caller
            np.add.at(total, layer.units, values / mean if mean > 0 else values)
    return total


def _weight_norm(p: int):
    def values(module: nn.Module) -> np.ndarray:
        weight = module.weight
        assert isinstance(weight, torch.Tensor)  # a conv / linear layer (LayerChannels)
        weight = weight.detach().float().cpu()
        return weight.reshape(weight.shape[0], -1).norm(p=p, dim=1).numpy().astype(float)

    return values


def _bn_scale(group: UnitGroup) -> np.ndarray | None:
    total = np.zeros(group.size)
    found = False
    for dep, idxs, roots in group._items:
        module = dep.target.module
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.affine:
            gamma = module.weight.detach().abs().float().cpu().numpy()
            np.add.at(total, roots, gamma[idxs])
            found = True
    return total if found else None


def _taylor(group: UnitGroup) -> np.ndarray:
    def values(module: nn.Module) -> np.ndarray:
        weight = module.weight
        assert isinstance(weight, torch.Tensor)  # a conv / linear layer (LayerChannels)
        grad = weight.grad
        if grad is None:
            raise ValueError(
                f"no gradient for {group.name}: Taylor importance needs a "
                f"labelled batch that reaches every layer"
            )
        product = (weight.detach() * grad.detach()).float()
        return product.reshape(product.shape[0], -1).sum(dim=1).abs().cpu().numpy()

    return _per_layer(group, values)


def backward_on(model: nn.Module, data: Any, kind: str = "taylor") -> None:
    """Populate gradients with the cross-entropy loss of one labelled batch."""
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        got = "no data" if data is None else f"a {type(data).__name__}"
        raise ValueError(
            f"importance {kind!r} needs data=(inputs, targets), a labelled "
            f"batch, got {got} (on the command line it comes from --dataset)"
        )
    inputs, targets = data
    if not (
        torch.is_tensor(targets)
        and targets.dim() == 1
        and not targets.dtype.is_floating_point
        and targets.dtype != torch.bool
    ):
        shown = (
            f"a {targets.dtype} tensor of shape {tuple(targets.shape)}"
            if torch.is_tensor(targets)
            else f"a {type(targets).__name__}"
        )
        raise ValueError(
            f"importance {kind!r} needs integer class labels of shape (N,) as targets, got {shown}"
        )
    model.zero_grad(set_to_none=True)
    with modes_kept(model):
        model.eval()  # BatchNorm statistics must not move while we only measure
        try:
            loss = nn.functional.cross_entropy(_forward(model, inputs), targets)
        except (RuntimeError, IndexError, ValueError) as error:
            detail = " ".join(str(error).split())
            raise ValueError(
                f"importance {kind!r}: the loss of the labelled batch cannot be "
                f"computed ({type(error).__name__}: {detail}); targets must be "
                f"one class index in [0, outputs) per input"
            ) from error
        loss.backward()


def group_importance(
    groups: ModelGroups, kind: str = "l1", data: Any = None, seed: int = 0
) -> dict[str, np.ndarray]:
    """Importance of every unit, per group (larger = more worth keeping)."""
    if kind not in IMPORTANCES:
        raise ValueError(f"unknown importance {kind!r}; choose one of {', '.join(IMPORTANCES)}")
    if kind in NEEDS_DATA:
        backward_on(groups.model, data, kind)
    rng = np.random.default_rng(seed)
    scores = {}
    try:
        for group in groups.groups:
            if kind == "l1":
                value = _per_layer(group, _weight_norm(1))
            elif kind == "l2":
                value = _per_layer(group, _weight_norm(2))
            elif kind == "bn":
                bn_scale = _bn_scale(group)
                # no BatchNorm in this group: fall back to the filter norm
                value = bn_scale if bn_scale is not None else _per_layer(group, _weight_norm(1))
            elif kind == "taylor":
                value = _taylor(group)
            elif kind == "random":
                value = rng.random(group.size)
            elif kind == "tp-magnitude":
                value = _tp_score(tp.importance.GroupMagnitudeImportance(p=2), group)
            else:
                value = _tp_score(tp.importance.GroupTaylorImportance(), group)
            scores[group.name] = np.asarray(value, dtype=float)
    finally:
        if kind in NEEDS_DATA:
            groups.model.zero_grad(set_to_none=True)
    return scores


def _tp_score(importance: Any, group: UnitGroup) -> np.ndarray:
    with torch.no_grad():
        value = importance(group._tp_group)
    if value is None:
        return np.zeros(group.size)
    return value.detach().float().cpu().numpy().astype(float)


def top_k_masks(
    scores: Mapping[str, np.ndarray], counts: Mapping[str, int]
) -> dict[str, np.ndarray]:
    """Keep the ``counts[g]`` highest-scoring units of each group (ties: lower index)."""
    masks = {}
    for name, score in scores.items():
        k = counts.get(name, len(score))
        order = np.argsort(-score, kind="stable")
        mask = np.zeros(len(score), dtype=bool)
        mask[order[:k]] = True
        masks[name] = mask
    return masks
