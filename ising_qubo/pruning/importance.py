"""Channel importance per unit group: the fields of the redundancy energy and the
baselines (keep the top-k units by importance at the same budget as the Ising solver).

``l1`` is Li et al. (2017)'s filter L1 norm; ``bn`` the BatchNorm scale |gamma|;
``taylor`` the first-order Taylor estimate |sum w * dL/dw| of Molchanov et al. (2017),
from a labelled batch; ``tp-magnitude``, ``tp-taylor`` and ``tp-bn`` are Torch-Pruning's own
group importances (``GroupMagnitudeImportance(p=2)``, ``GroupTaylorImportance()``,
``BNScaleImportance()``), used as they are so that the baselines are the library's, not ours.

:func:`global_keep_counts` is Torch-Pruning's global pruning at an exact budget: one
threshold over every unit's score, chosen so that the really pruned model meets ``keep``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch_pruning as tp
from torch import nn

from ising_qubo.pruning.groups import ModelGroups, UnitGroup, _forward, modes_kept

IMPORTANCES = ("l1", "l2", "bn", "taylor", "random", "tp-magnitude", "tp-taylor", "tp-bn")
TP_IMPORTANCES = ("tp-magnitude", "tp-taylor", "tp-bn")  # Torch-Pruning's, by our names
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


def labelled_batch(data: Any, who: str, batch: str = "a labelled batch") -> tuple[Any, Any]:
    """(inputs, targets) of ``data``; a ValueError naming ``who`` needs it otherwise.

    The one check of a labelled calibration batch, for the Taylor importances here and the
    loss saliencies of :mod:`ising_qubo.pruning.energy_inputs`.
    """
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        got = "no data" if data is None else f"a {type(data).__name__}"
        raise ValueError(
            f"{who} needs data=(inputs, targets), {batch}, got {got} "
            "(on the command line it comes from --dataset)"
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
        raise ValueError(f"{who} needs integer class labels of shape (N,) as targets, got {shown}")
    return inputs, targets


def backward_on(model: nn.Module, data: Any, kind: str = "taylor") -> None:
    """Populate gradients with the cross-entropy loss of one labelled batch."""
    inputs, targets = labelled_batch(data, f"importance {kind!r}")
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
            else:
                value = _tp_score(tp_importance(kind), group)
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


def tp_importance(kind: str) -> Any:
    """Torch-Pruning's importance object behind one of our ``tp-*`` names, with the
    library's defaults (each normalises its scores per group by their mean, which is what
    makes scores of different groups comparable in Torch-Pruning's global pruning)."""
    if kind == "tp-magnitude":
        return tp.importance.GroupMagnitudeImportance(p=2)
    if kind == "tp-taylor":
        return tp.importance.GroupTaylorImportance()
    if kind == "tp-bn":
        return tp.importance.BNScaleImportance()
    raise ValueError(
        f"unknown Torch-Pruning importance {kind!r}; choose one of {', '.join(TP_IMPORTANCES)}"
    )


def tp_group_scores(groups: ModelGroups, kind: str, data: Any = None) -> dict[str, np.ndarray]:
    """Torch-Pruning's importance of every unit, per group, exactly as its ``MetaPruner``
    ranks them: the importance object's output for the group (normalised per group).

    Groups the importance cannot score (``None``: no layer of its kinds, e.g. no
    BatchNorm for ``tp-bn``) are left out, as ``MetaPruner`` leaves them unpruned.
    """
    importance = tp_importance(kind)
    if kind in NEEDS_DATA:
        backward_on(groups.model, data, kind)
    scores = {}
    try:
        for group in groups.groups:
            with torch.no_grad():
                value = importance(group._tp_group)
            if value is not None:
                scores[group.name] = value.detach().double().cpu().numpy()
    finally:
        if kind in NEEDS_DATA:
            groups.model.zero_grad(set_to_none=True)
    return scores


def global_keep_counts(
    groups: ModelGroups,
    scores: Mapping[str, np.ndarray],
    keep: float,
    by: str = "params",
    min_keep: float = 0.0,
) -> dict[str, int]:
    """Units to keep per group under one global threshold on ``scores``, as many as the
    exact cost of the pruned model allows (Torch-Pruning's global pruning, at our budget).

    All scored units are ranked together (score descending; ties: group order, then unit
    index); the kept set is the longest prefix of that ranking, plus the best units of any
    group the prefix would leave below its floor (``max(1, ceil(min_keep * size))``), such
    that :meth:`ModelGroups.kept_fraction` ``<= keep``. The prefix length is found by
    bisection (the cost only grows with it). Groups without scores keep every unit.
    Keeping the top ``counts[g]`` of each group (:func:`top_k_masks`) gives the masks.
    """
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must be a fraction in (0, 1], got {keep}")
    if not 0.0 <= min_keep <= 1.0:
        raise ValueError(f"min_keep must be a fraction in [0, 1], got {min_keep}")
    ranked = [g for g in groups.groups if g.name in scores]
    unknown = set(scores) - {g.name for g in groups.groups}
    if unknown:
        raise ValueError(f"scores for unknown groups: {sorted(unknown)}")
    for group in ranked:
        if np.shape(scores[group.name]) != (group.size,):
            raise ValueError(
                f"group {group.name!r}: scores of shape {np.shape(scores[group.name])}, "
                f"expected ({group.size},)"
            )
        if not np.all(np.isfinite(scores[group.name])):
            raise ValueError(f"group {group.name!r}: NaN or infinite importance scores")
    sizes = np.array([g.size for g in ranked])
    floors = np.maximum(1, np.ceil(min_keep * sizes - 1e-9)).astype(int)
    values = np.concatenate([np.asarray(scores[g.name], dtype=float) for g in ranked])
    owner = np.repeat(np.arange(len(ranked)), sizes)
    unit = np.concatenate([np.arange(n) for n in sizes])
    order = np.lexsort((unit, owner, -values))  # last key first: score, group, unit
    ranked_owner = owner[order]

    def counts_at(prefix: int) -> dict[str, int]:
        taken = np.bincount(ranked_owner[:prefix], minlength=len(ranked))
        kept = np.maximum(taken, floors)
        return {g.name: int(k) for g, k in zip(ranked, kept)}

    if groups.kept_fraction(counts_at(0), by) > keep:
        floor = groups.kept_fraction(counts_at(0), by)
        raise ValueError(
            f"keep={keep} is below what the floor of {int(floors.sum())} units "
            f"(at least one per group, min_keep={min_keep}) costs: {floor:.4f} of the {by}"
        )
    lo, hi = 0, len(values)  # counts_at(lo) meets the budget; find the longest that does
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if groups.kept_fraction(counts_at(mid), by) <= keep:
            lo = mid
        else:
            hi = mid - 1
    return counts_at(lo)
