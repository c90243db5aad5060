"""The model side of an energy's inputs: weights, feature maps and importances as numpy.

:class:`ModelInputs` implements :class:`~ising_qubo.pruning.energies.base.EnergyInputs`
over a network's :class:`~ising_qubo.pruning.groups.ModelGroups`, so that the energies
themselves never touch torch. The pruning problem makes one per energy build.

:func:`loss_saliency` measures, on a labelled calibration batch, what removing each unit
would do to the loss to first order (Taylor) or its per-example second moment (Fisher),
in the loss's own unit for every layer: the linear term of the ``taylor`` energy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ising_qubo.pruning.groups import (
    LayerChannels,
    ModelGroups,
    UnitGroup,
    _forward,
    _is_output_handler,
    forward_with_hooks,
    modes_kept,
)
from ising_qubo.pruning.importance import NEEDS_DATA, group_importance
from ising_qubo.pruning.importance import labelled_batch as checked_labelled_batch


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

    def loss_saliency(
        self, kind: str = "taylor", loss: Callable[..., torch.Tensor] | None = None
    ) -> dict[str, np.ndarray]:
        return loss_saliency(self.model_groups, self.data, kind, loss)


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


#: what :func:`loss_saliency` measures per unit: |E[s]| (first-order Taylor) or E[s^2] (Fisher)
SALIENCIES = ("taylor", "fisher")

#: (parameter, its output-channel indices, the group unit of each index)
UnitSlices = list[tuple[nn.Parameter, list[int], list[int]]]


def unit_parameter_slices(group: UnitGroup) -> UnitSlices:
    """The parameters each unit of ``group`` owns: the output-channel rows of every
    ``weight`` and ``bias`` the surgery removes with it (its conv / linear filters and
    biases, of every tied layer, and its BatchNorm scale and shift), each entry once.

    The same slices as :meth:`UnitGroup.dropped_slices`, without the running statistics
    (buffers, not parameters: the loss has no gradient with respect to them)."""
    seen: set[tuple[int, int]] = set()
    slices: UnitSlices = []
    for dep, idxs, roots in group._items:
        module = dep.target.module
        if not _is_output_handler(dep) or not isinstance(module, nn.Module):
            continue
        for name in ("weight", "bias"):
            param = getattr(module, name, None)
            if not isinstance(param, nn.Parameter) or param.dim() < 1:
                continue
            pairs = [(i, r) for i, r in zip(idxs, roots) if (id(param), i) not in seen]
            seen.update((id(param), i) for i, _ in pairs)
            if pairs:
                slices.append((param, [i for i, _ in pairs], [r for _, r in pairs]))
    return slices


def labelled_batch(data: Any, kind: str) -> tuple[Any, torch.Tensor]:
    """(inputs, targets) of ``data`` for the ``kind`` saliency (see importance.labelled_batch)."""
    return checked_labelled_batch(data, f"the {kind} score", "a labelled calibration batch")


def loss_saliency(
    groups: ModelGroups,
    data: Any,
    kind: str = "taylor",
    loss: Callable[..., torch.Tensor] | None = None,
) -> dict[str, np.ndarray]:
    """Per unit, by group name: how much the loss of the labelled batch ``data`` depends
    on the unit, in the loss's unit (the same for every layer), float64, >= 0.

    With s_n(u) = sum over the unit's parameters p (:func:`unit_parameter_slices`) of
    w_p * dL_n/dw_p, the first-order change of example n's loss L_n when the unit is
    removed (its parameters set to 0) is -s_n(u):

    * ``"taylor"``: |mean_n s_n(u)|, one backward pass of the batch's mean loss
      (Molchanov et al. 2017, summed over all of a unit's tied parameters);
    * ``"fisher"``: mean_n s_n(u)^2, one backward pass per example (Molchanov et al.
      2019; Theis et al. 2018), in squared loss units.

    ``loss(outputs, targets)`` is the batch's mean loss (cross-entropy by default). The
    model is evaluated in eval mode (BatchNorm statistics fixed); ``torch.autograd.grad``
    is used, so the parameters' ``.grad`` stay as they were.
    """
    if kind not in SALIENCIES:
        raise ValueError(f"unknown saliency {kind!r}; choose one of {', '.join(SALIENCIES)}")
    inputs, targets = labelled_batch(data, kind)
    loss_of = nn.functional.cross_entropy if loss is None else loss
    slices = {group.name: unit_parameter_slices(group) for group in groups.groups}
    params = list({id(p): p for items in slices.values() for p, _, _ in items}.values())
    model = groups.model
    with modes_kept(model), _gradients_on(params), torch.enable_grad():
        model.eval()  # BatchNorm statistics must not move while we only measure
        if kind == "taylor":
            sums = _unit_sums(model, params, slices, groups, inputs, targets, loss_of, kind)
            return {name: np.abs(value) for name, value in sums.items()}
        count = len(targets)
        if count == 0:
            raise ValueError(f"the {kind} score needs a non-empty labelled batch")
        second = {group.name: np.zeros(group.size) for group in groups.groups}
        for n in range(count):
            example = _example(inputs, n, count)
            sums = _unit_sums(
                model, params, slices, groups, example, targets[n : n + 1], loss_of, kind
            )
            for name, value in sums.items():
                second[name] += value * value
        return {name: value / count for name, value in second.items()}


def _unit_sums(
    model: nn.Module,
    params: list[nn.Parameter],
    slices: Mapping[str, UnitSlices],
    groups: ModelGroups,
    inputs: Any,
    targets: torch.Tensor,
    loss_of: Callable[..., torch.Tensor],
    kind: str,
) -> dict[str, np.ndarray]:
    """sum over each unit's parameters of w * dL/dw, L the mean loss of this batch."""
    try:
        value = loss_of(_forward(model, inputs), targets)
    except (RuntimeError, IndexError, ValueError) as error:
        detail = " ".join(str(error).split())
        raise ValueError(
            f"the {kind} score: the loss of the labelled batch cannot be computed "
            f"({type(error).__name__}: {detail}); targets must be one class index in "
            f"[0, outputs) per input"
        ) from error
    if not (torch.is_tensor(value) and value.numel() == 1):
        raise ValueError(f"the {kind} score: the loss must return one number (a 0-d tensor)")
    grads = torch.autograd.grad(value.reshape(()), params, allow_unused=True)
    grad_of = {id(p): g for p, g in zip(params, grads)}
    sums = {}
    for group in groups.groups:
        total = np.zeros(group.size)
        for param, idxs, roots in slices[group.name]:
            grad = grad_of[id(param)]
            if grad is None:  # the parameter does not reach the loss: no effect on it
                continue
            index = torch.tensor(idxs, dtype=torch.long, device=param.device)
            product = (param.detach()[index].double() * grad.detach()[index].double()).reshape(
                len(idxs), -1
            )
            np.add.at(total, roots, product.sum(dim=1).cpu().numpy())
        sums[group.name] = total
    return sums


def _example(inputs: Any, n: int, count: int) -> Any:
    """Example ``n`` of a batch (every tensor with ``count`` rows sliced to row n)."""
    if torch.is_tensor(inputs):
        return inputs[n : n + 1] if inputs.dim() and len(inputs) == count else inputs
    if isinstance(inputs, Mapping):
        return {key: _example(value, n, count) for key, value in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(_example(value, n, count) for value in inputs)
    return inputs


@contextmanager
def _gradients_on(params: Sequence[nn.Parameter]) -> Iterator[None]:
    """Let autograd differentiate ``params`` even if the user froze some of them."""
    frozen = [p for p in params if not p.requires_grad]
    for p in frozen:
        p.requires_grad_(True)
    try:
        yield
    finally:
        for p in frozen:
            p.requires_grad_(False)
