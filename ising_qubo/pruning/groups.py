"""From a network to prunable unit groups, and from keep masks back to the network.

Torch-Pruning's dependency graph finds which channels are tied together (a residual add
ties the output channels of every conv feeding it; a depthwise conv ties its input and
output channels); we never trace the graph by hand. One :class:`UnitGroup` is one such
set of tied channels: one binary variable per channel index of the group's root layer.

This module knows torch and Torch-Pruning; the energies only see plain arrays from it,
and the solvers never see it at all.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch_pruning as tp
from torch import nn

PRUNABLE_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


class UnknownGroupError(KeyError, ValueError):
    """A group name the model does not have (a KeyError for lookups, a ValueError for the
    command line's one-line errors)."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


def describe_inputs(example_inputs: Any) -> str:
    """Shapes of the example inputs, for error messages."""
    if torch.is_tensor(example_inputs):
        return f"a {example_inputs.dtype} tensor of shape {tuple(example_inputs.shape)}"
    if isinstance(example_inputs, Mapping):
        return (
            "{" + ", ".join(f"{k!r}: {describe_inputs(v)}" for k, v in example_inputs.items()) + "}"
        )
    if isinstance(example_inputs, (tuple, list)):
        return "(" + ", ".join(describe_inputs(v) for v in example_inputs) + ")"
    return type(example_inputs).__name__


@dataclass
class LayerChannels:
    """The output channels of one conv/linear layer that belong to a group.

    ``channels[k]`` of ``module`` is variable ``units[k]`` of the group.
    """

    name: str
    module: nn.Module
    channels: np.ndarray
    units: np.ndarray


@dataclass
class UnitGroup:
    """Channels that are kept or removed together: one binary variable per unit."""

    name: str  # module path of the root layer, e.g. "layer2.0.conv1"
    size: int
    layers: list[LayerChannels]  # producing layers (conv / linear outputs), root first
    params_per_unit: np.ndarray  # parameters removed with each unit (neighbours intact)
    macs_per_unit: np.ndarray  # multiply-accumulates removed with each unit
    _items: list[tuple[Any, list[int], list[int]]] = field(repr=False, default_factory=list)
    root: str = ""  # the layer Torch-Pruning roots the group at (for surgery)
    _tp_group: Any = field(repr=False, default=None)  # for Torch-Pruning's importances

    @property
    def labels(self) -> list[str]:
        return [f"{self.name}:{i}" for i in range(self.size)]

    def dropped_slices(self, keep: np.ndarray) -> list[tuple[torch.Tensor, int, torch.Tensor]]:
        """(parameter, dim, indices) of every weight entry owned by the dropped units.

        Output-channel slices only: a unit whose filter, bias and BatchNorm scale and shift
        are zero outputs zeros, so its consumers' input weights see nothing either.
        """
        keep = _check_mask(keep, self)
        slices = []
        for dep, idxs, root_idxs in self._items:
            module = dep.target.module
            if not _is_output_handler(dep) or not isinstance(module, nn.Module):
                continue
            dropped = [i for i, r in zip(idxs, root_idxs) if not keep[r]]
            if not dropped:
                continue
            index = torch.tensor(sorted(set(dropped)), dtype=torch.long)
            # running statistics too: a dropped unit sees zeros, and its BatchNorm
            # statistics would drift towards them while it is out
            for name in ("weight", "bias", "running_mean", "running_var"):
                tensor = getattr(module, name, None)
                if isinstance(tensor, torch.Tensor) and tensor.dim() >= 1:
                    slices.append((tensor, 0, index.to(tensor.device)))
        return slices


def _is_output_handler(dep: Any) -> bool:
    name = getattr(dep.handler, "__name__", "")
    return "out_channels" in name


def _check_mask(keep: Any, group: UnitGroup) -> np.ndarray:
    keep = np.asarray(keep)
    if keep.shape != (group.size,):
        raise ValueError(
            f"group {group.name!r}: mask has shape {keep.shape}, expected ({group.size},)"
        )
    return keep.astype(bool)


@contextlib.contextmanager
def modes_kept(model: nn.Module) -> Iterator[None]:
    """Give every module its own train/eval mode back afterwards (``model.train(flag)``
    would also flip a deliberately frozen submodule, e.g. BatchNorm kept in eval)."""
    modes = [(module, module.training) for module in model.modules()]
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def _module_names(model: nn.Module) -> dict[nn.Module, str]:
    return {module: name for name, module in model.named_modules()}


def execution_order(
    model: nn.Module, example_inputs: Any, types: tuple[type, ...] = PRUNABLE_TYPES
) -> tuple[list[str], dict]:
    """Names of the ``types`` modules in the order the forward pass calls them, and the
    spatial size (elements per channel) of each one's output."""
    names = _module_names(model)
    order: list[str] = []
    out_size: dict[str, int] = {}

    def hook(module, _inputs, output):
        name = names[module]
        if name not in out_size:
            order.append(name)
            out_size[name] = int(output[0, 0].numel()) if output.dim() > 2 else 1

    watched = [m for m in model.modules() if isinstance(m, types)]
    forward_with_hooks(model, watched, hook, example_inputs)
    return order, out_size


def forward_with_hooks(
    model: nn.Module, modules: Sequence[nn.Module], hook: Any, inputs: Any
) -> None:
    """One eval-mode, no-grad forward pass with ``hook`` on ``modules``; every module's
    train/eval mode and the hooks are put back whatever happens."""
    handles = [m.register_forward_hook(hook) for m in modules]
    try:
        with modes_kept(model), torch.no_grad():
            model.eval()
            _forward(model, inputs)
    finally:
        for handle in handles:
            handle.remove()


def _forward(model: nn.Module, example_inputs: Any) -> Any:
    if isinstance(example_inputs, Mapping):
        return model(**example_inputs)
    if isinstance(example_inputs, (tuple, list)):
        return model(*example_inputs)
    return model(example_inputs)


class ModelGroups:
    """The unit groups of a network, found once with Torch-Pruning's dependency graph.

    ``ignored_layers`` are never pruned (their outputs stay whole); by default that is the
    classifier, found as the last conv/linear layer the forward pass calls.
    ``unwrapped_parameters`` ([(parameter, pruning dim)]) and ``customized_pruners``
    ({module type or instance: pruner}) go to Torch-Pruning's dependency graph as in its
    own pruners; a parameter declared there is pruned along the dimension given.
    """

    def __init__(
        self,
        model: nn.Module,
        example_inputs: Any,
        ignored_layers: Sequence[nn.Module | str] | None = None,
        unwrapped_parameters: Sequence[tuple[nn.Parameter, int]] | None = None,
        customized_pruners: Mapping[Any, Any] | None = None,
    ) -> None:
        self.model = model
        self.example_inputs = example_inputs
        names = _module_names(model)
        modules = dict(model.named_modules())
        try:
            self.order, self._out_size = execution_order(model, example_inputs)
        except Exception as error:  # the user's model or inputs are wrong: say so plainly
            detail = " ".join(str(error).split())
            raise ValueError(
                f"the model's forward pass failed on the example inputs "
                f"({describe_inputs(example_inputs)}): {type(error).__name__}: "
                f"{detail}; pass inputs shaped like one real batch"
            ) from error
        if not self.order:
            raise ValueError("the model has no Conv or Linear layer to prune")
        if ignored_layers is None:
            ignored = [modules[self.order[-1]]]
        else:
            ignored = []
            for layer in ignored_layers:
                if isinstance(layer, str):
                    if layer not in modules:
                        raise ValueError(f"ignored layer {layer!r} is not a module of the model")
                    layer = modules[layer]
                ignored.append(layer)
        self.ignored = [names[m] for m in ignored]
        # Torch-Pruning's tracing leaves the model in eval mode: give each module its mode
        # back, or a training loop built around this would train with frozen BatchNorm
        with modes_kept(model), warnings.catch_warnings():
            # said below, once, with the module path and what it means for pruning
            warnings.filterwarnings("ignore", message="Unwrapped parameters detected")
            self.graph = tp.DependencyGraph().build_dependency(
                model,
                example_inputs=example_inputs,
                unwrapped_parameters=list(unwrapped_parameters or []),
                customized_pruners=dict(customized_pruners or {}),
            )
        # Parameters of modules Torch-Pruning has no pruner for (a custom layer with its
        # own weight), unless declared: it would guess their channel dimension (the last
        # non-singleton one) and can silently cut the wrong one, so groups tied to them
        # are left whole.
        declared = {id(p): int(dim) for p, dim in unwrapped_parameters or []}
        self._declared = declared
        self._unwrapped = {
            id(p): name
            for name, p in model.named_parameters()
            if id(p) not in declared and any(p is q for q, _ in self.graph.unwrapped_parameters)
        }
        self._untouchable: dict[str, list[str]] = {}
        self.groups: list[UnitGroup] = []
        rank = self._rank = {name: i for i, name in enumerate(self.order)}
        found = []
        for tp_group in self.graph.get_all_groups(
            ignored_layers=ignored, root_module_types=PRUNABLE_TYPES
        ):
            group = self._unit_group(tp_group, names)
            if group is not None:
                found.append(group)
        found.sort(key=lambda g: rank.get(g.name, len(rank)))
        self.groups = found
        for param, roots in self._untouchable.items():
            owner = param.rsplit(".", 1)[0] if "." in param else ""
            kind = type(modules[owner]).__name__
            warnings.warn(
                f"parameter {param!r} of module {owner!r} ({kind}) is not part of a "
                f"layer Torch-Pruning can prune, so its channel dimension is "
                f"unknown: the channel group(s) {', '.join(map(repr, roots))} tied "
                f"to it stay whole (use standard layers, e.g. nn.Conv2d, to prune "
                f"them)",
                stacklevel=2,
            )
        if not self.groups:
            raise ValueError(
                "no prunable channel group found (every layer is ignored, tied "
                "to an ignored layer or to a custom layer's parameter, or has a "
                "single output channel)"
            )
        self._build_cost_model(names)

    def _unit_group(self, tp_group: Any, names: dict) -> UnitGroup | None:
        root_dep, root_idxs = tp_group[0].dep, tp_group[0].idxs
        root = root_dep.target.module
        size = len(root_idxs)
        if size < 2:
            return None
        params = np.zeros(size)
        macs = np.zeros(size)
        layers = []
        items = []
        for item in tp_group:
            dep, idxs = item.dep, list(item.idxs)
            root_of = list(getattr(item, "root_idxs", idxs))
            if any(r is None for r in root_of):
                return None  # an index mapping Torch-Pruning cannot trace back to the root
            items.append((dep, idxs, root_of))
            module = dep.target.module
            if id(module) in self._unwrapped:
                root_name = names.get(root, "?")
                self._untouchable.setdefault(self._unwrapped[id(module)], []).append(root_name)
                return None
            if module not in names:
                continue  # Torch-Pruning's own op nodes (adds, concats) own no weights
            per_param, per_mac = _cost_per_index(module, dep, self._out_size.get(names[module]))
            np.add.at(params, root_of, per_param)
            np.add.at(macs, root_of, per_mac)
            if _is_output_handler(dep) and isinstance(module, PRUNABLE_TYPES):
                layers.append(
                    LayerChannels(names[module], module, np.asarray(idxs), np.asarray(root_of))
                )
        if not layers or layers[0].module is not root:  # root first, as Torch-Pruning builds it
            return None
        rank = self._rank
        layers.sort(key=lambda layer: rank.get(layer.name, len(rank)))
        group = UnitGroup(layers[0].name, size, layers, params, macs, items)
        group.root = names[root]
        group._tp_group = tp_group
        return group

    def _build_cost_model(self, names: dict) -> None:
        """Per weight tensor: its size (and MACs), and the groups that shrink its first
        (output) and second (input) dimension, so that sizes after pruning are exact
        products of kept fractions without pruning a copy."""
        out_group: dict[nn.Module, int] = {}
        in_group: dict[nn.Module, int] = {}
        param_group: dict[int, int] = {}  # declared unwrapped parameters: cut along one dim
        for g, group in enumerate(self.groups):
            for dep, _idxs, _roots in group._items:
                module = dep.target.module
                if isinstance(module, nn.Parameter):
                    param_group[id(module)] = g
                    continue
                if module not in names:
                    continue
                (out_group if _is_output_handler(dep) else in_group)[module] = g
        # Torch-Pruning cuts an attention layer's embedding everywhere at once: both
        # dimensions of in_proj_weight and of out_proj's weight, one of everything else
        attention: dict[nn.Module, int] = {}
        for module, g in out_group.items():
            if isinstance(module, nn.MultiheadAttention):
                attention[module] = attention[module.out_proj] = g
        rows = []
        for name, module in self.model.named_modules():
            spatial = self._out_size.get(name, 1)
            depthwise = (
                isinstance(module, nn.modules.conv._ConvNd)
                and module.groups == module.in_channels == module.out_channels
            )
            for pname, param in module.named_parameters(recurse=False):
                o = out_group.get(module, -1)
                i = -1 if (depthwise or param.dim() < 2) else in_group.get(module, -1)
                if id(param) in self._declared:
                    o, i = param_group.get(id(param), -1), -1
                elif module in attention:
                    o = attention[module]
                    i = o if pname in ("in_proj_weight", "weight") else -1
                is_mac = isinstance(module, PRUNABLE_TYPES) and pname == "weight"
                rows.append((param.numel(), param.numel() * spatial if is_mac else 0, o, i))
        self._costs = np.array([(p, m) for p, m, _, _ in rows], dtype=float).reshape(-1, 2)
        self._cost_groups = np.array([(o, i) for _, _, o, i in rows], dtype=np.int64).reshape(-1, 2)

    def kept_fraction(self, counts: Mapping[str, int], by: str = "params") -> float:
        """Fraction of parameters (or MACs of conv/linear layers) left when group ``g``
        keeps ``counts[g]`` units (groups not named keep all)."""
        _check_counted(by)
        frac = np.array([counts.get(g.name, g.size) / g.size for g in self.groups] + [1.0])
        scale = frac[self._cost_groups[:, 0]] * frac[self._cost_groups[:, 1]]
        column = 0 if by == "params" else 1
        total = self._costs[:, column].sum()
        return float((self._costs[:, column] * scale).sum() / total) if total else 1.0

    def cost_table(self, by: str = "params") -> tuple[np.ndarray, np.ndarray]:
        """The cost model behind :meth:`kept_fraction`, one row per parameter tensor:
        its cost (entries, or MACs of a conv/linear weight) and the indices of the groups
        that shrink its output and its input dimension (-1: none), so that with group g
        keeping k_g of n_g units the tensor costs cost * (k_o / n_o) * (k_i / n_i)."""
        _check_counted(by)
        column = 0 if by == "params" else 1
        return self._costs[:, column].copy(), self._cost_groups.copy()

    def output_channels(self) -> list[tuple[int, nn.Module, list[int]]]:
        """(group index, module, output channel indices) of every module whose output
        channels a group's surgery removes (its convs, linears, norms): where each group's
        units live in the network's feature maps."""
        names = _module_names(self.model)
        found = []
        for g, group in enumerate(self.groups):
            for dep, idxs, _roots in group._items:
                module = dep.target.module
                if _is_output_handler(dep) and isinstance(module, nn.Module) and module in names:
                    found.append((g, module, list(idxs)))
        return found

    def by_name(self, name: str) -> UnitGroup:
        for group in self.groups:
            if group.name == name:
                return group
        raise UnknownGroupError(
            f"no group named {name!r}; groups: {', '.join(g.name for g in self.groups)}"
        )

    def dropped_slices(self, masks: Mapping[str, np.ndarray]):
        slices = []
        for group in self.groups:
            if group.name in masks:
                slices.extend(group.dropped_slices(masks[group.name]))
        return slices

    def prune(self, masks: Mapping[str, np.ndarray]) -> list[tuple[str, list[int]]]:
        """Remove the dropped channels from ``self.model`` in place (Torch-Pruning surgery).

        Returns the pruning history [(root module, removed channel indices)], which
        :func:`ising_qubo.nets.persist.save_pruned` records.
        """
        unknown = set(masks) - {g.name for g in self.groups}
        if unknown:
            raise UnknownGroupError(
                f"masks for unknown groups: {sorted(unknown)}; groups: "
                f"{', '.join(g.name for g in self.groups)}"
            )
        checked = {}
        for group in self.groups:  # every mask is checked before the model changes
            if group.name not in masks:
                continue
            keep = checked[group.name] = _check_mask(masks[group.name], group)
            if not keep.any():
                raise ValueError(
                    f"group {group.name!r}: the mask keeps no unit; at least one "
                    f"must stay for the network to compute anything"
                )
        history = []
        for group in self.groups:
            if group.name not in checked:
                continue
            dropped = np.flatnonzero(~checked[group.name]).tolist()
            if not dropped:
                continue
            root = group._items[0][0].target.module
            handler = group._items[0][0].handler
            tp_group = self.graph.get_pruning_group(root, handler, idxs=dropped)
            tp_group.prune()
            history.append((group.name, dropped))
        if history:
            self._check_pruned()
        return history

    def _check_pruned(self) -> None:
        """One forward pass on the example inputs: surgery that broke the network (a layer
        Torch-Pruning followed wrongly) is reported here, not as a shape error later."""
        try:
            with modes_kept(self.model), torch.no_grad():
                self.model.eval()
                _forward(self.model, self.example_inputs)
        except Exception as error:
            detail = " ".join(str(error).split())
            raise ValueError(
                f"the pruned model's forward pass fails ({type(error).__name__}: "
                f"{detail}): a layer of this model is not one Torch-Pruning "
                f"can prune correctly; pass it in ignored_layers"
            ) from error


def _check_counted(by: str) -> None:
    """``by`` must be a cost this table counts (latency is measured, by the global budget)."""
    if by == "latency":
        raise ValueError("keep_by='latency' needs budget='global'")
    if by not in ("params", "macs"):
        raise ValueError(f"keep_by must be 'params' or 'macs', got {by!r}")


def _cost_per_index(module: nn.Module, dep: Any, out_size: int | None) -> tuple[float, float]:
    """Parameters and MACs that one pruned index of this dependency removes."""
    spatial = out_size or 1
    out = _is_output_handler(dep)
    if isinstance(module, nn.modules.conv._ConvNd):
        weight = module.weight
        if out or module.groups == module.in_channels == module.out_channels:
            per = weight[0].numel()
            bias = 1 if module.bias is not None else 0
            return float(per + bias), float(per * spatial)
        per = weight[:, 0].numel() * (1 if module.groups == 1 else 1)
        return float(per), float(per * spatial)
    if isinstance(module, nn.Linear):
        if out:
            return float(module.in_features + (module.bias is not None)), float(module.in_features)
        return float(module.out_features), float(module.out_features)
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return (2.0 if module.affine else 0.0), 0.0
    if isinstance(module, (nn.GroupNorm, nn.LayerNorm)):
        return (2.0 if getattr(module, "weight", None) is not None else 0.0), 0.0
    if isinstance(module, nn.PReLU):
        return (1.0 if module.num_parameters > 1 else 0.0), 0.0
    return 0.0, 0.0


def count_params(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def count_macs(model: nn.Module, example_inputs: Any) -> int:
    """Multiply-accumulates of one forward pass (Torch-Pruning's counter)."""
    macs, _ = tp.utils.count_ops_and_params(model, example_inputs)
    return int(macs)


def uniform_keep_counts(groups: ModelGroups, keep: float, by: str = "params") -> dict[str, int]:
    """Units to keep per group so that the pruned model keeps a fraction ``keep`` of its
    parameters (or MACs) when every group keeps the same fraction of its channels.

    Parameters of a pruned network are bilinear in the kept counts of neighbouring groups,
    so the channel fraction is found by bisection on :meth:`ModelGroups.kept_fraction`.
    """
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must be a fraction in (0, 1], got {keep}")
    sizes = {g.name: g.size for g in groups.groups}

    def counts_at(ratio: float) -> dict[str, int]:
        return {name: max(1, min(n, int(round(ratio * n)))) for name, n in sizes.items()}

    if keep >= 1.0:
        return dict(sizes)
    lo, hi = 0.0, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        if groups.kept_fraction(counts_at(mid), by) > keep:
            hi = mid
        else:
            lo = mid
    return counts_at(lo)
