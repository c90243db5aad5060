"""Ising pruning for Torch-Pruning users: its constructor conventions, our Ising solution.

Two ways in, one per habit:

* :class:`IsingMetaPruner` replaces ``tp.pruner.MetaPruner``: the same arguments
  (``model, example_inputs, pruning_ratio, ignored_layers, round_to,
  unwrapped_parameters, customized_pruners``) plus ``keep``, ``energy``, ``solver``;
  :meth:`~IsingMetaPruner.step` solves the pruning problem of the groups Torch-Pruning
  finds and removes the units the Ising state drops::

      pruner = IsingMetaPruner(model, example_inputs, pruning_ratio=0.5,
                               ignored_layers=[model.fc], solver="torch-sa")
      pruner.step()

* :class:`IsingImportance` is a ``tp.importance.Importance``: hand it to Torch-Pruning's own
  ``MetaPruner`` with the same ``pruning_ratio`` and ``round_to``, and its top-k of each
  group is the Ising solution's kept set (Torch-Pruning does the surgery)::

      imp = IsingImportance(model, example_inputs, pruning_ratio=0.5,
                            ignored_layers=[model.fc])
      tp.pruner.MetaPruner(model, example_inputs, importance=imp, pruning_ratio=0.5,
                           ignored_layers=[model.fc]).step()

How many units each group keeps (:func:`tp_keep_counts`):

* ``pruning_ratio`` (Torch-Pruning's meaning): the fraction of each group's channels
  removed; a group of n keeps ``int(n * (1 - pruning_ratio))``, Torch-Pruning's own count,
  so the pruned shapes are those of ``MetaPruner`` at that ratio.
* ``keep`` (ours): the fraction of the model's parameters (``keep_by="macs"``: of its
  MACs) left after the surgery, met exactly on the really pruned model; every group keeps
  the same fraction of its channels, the largest that meets it.

``round_to`` makes every count a multiple of it (at least ``round_to``, at most the group):
``round_to=num_heads`` keeps ``nn.MultiheadAttention``'s embedding divisible by its heads.
``unwrapped_parameters`` ([(parameter, dim)]) declares how a bare ``nn.Parameter`` is cut
(a ViT's ``class_token`` and ``pos_embedding``, a ConvNeXt block's ``layer_scale``):
undeclared, the groups tied to it stay whole (see
:class:`~ising_qubo.pruning.groups.ModelGroups`), which is why those networks were only
partly pruned before. ``ignored_layers`` (modules, with everything inside them, or module
names) are never pruned; None protects the classifier (Torch-Pruning would prune it).

Like Torch-Pruning's pruners, :meth:`IsingMetaPruner.step` does not run the model after
the surgery: an attribute a model keeps outside its layers (torchvision's
``VisionTransformer.hidden_dim``) is the caller's to update, as with Torch-Pruning.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch_pruning as tp
from torch import nn

from ising_qubo.pruning.energies import Energy
from ising_qubo.pruning.groups import ModelGroups, UnitGroup
from ising_qubo.pruning.importance import group_importance
from ising_qubo.pruning.problem import PruningProblem, PruningSolution
from ising_qubo.pruning.pruners.ising import seeded_params
from ising_qubo.solvers.registry import resolve_sampler


def tp_keep_counts(
    groups: ModelGroups,
    pruning_ratio: float | None = None,
    keep: float | None = None,
    keep_by: str = "params",
    round_to: int | None = None,
) -> dict[str, int]:
    """Units each group keeps, from Torch-Pruning's ``pruning_ratio`` (fraction of each
    group's channels removed) or from our ``keep`` (fraction of parameters or MACs left);
    exactly one of them. See the module docstring."""
    if (pruning_ratio is None) == (keep is None):
        raise ValueError(
            f"give exactly one of pruning_ratio (fraction of channels removed per group) "
            f"and keep (fraction of {keep_by} kept), got pruning_ratio={pruning_ratio} "
            f"and keep={keep}"
        )
    step = 1 if round_to is None else int(round_to)
    if step < 1 or (round_to is not None and step != round_to):
        raise ValueError(f"round_to must be a positive integer, got {round_to!r}")
    sizes = {g.name: g.size for g in groups.groups}

    def rounded(count: int, size: int) -> int:
        count -= count % step  # Torch-Pruning rounds the kept channels down to round_to
        return int(min(size, max(count, min(step, size))))  # one round_to at least

    if pruning_ratio is not None:
        if not 0.0 <= pruning_ratio < 1.0:
            raise ValueError(f"pruning_ratio must be a fraction in [0, 1), got {pruning_ratio}")
        # Torch-Pruning's count: a group of n keeps int(n * (1 - ratio)) channels
        return {
            name: rounded(int(n * (1 - pruning_ratio)), n) if pruning_ratio > 0 else n
            for name, n in sizes.items()
        }
    assert keep is not None
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must be a fraction in (0, 1], got {keep}")

    def counts_at(ratio: float) -> dict[str, int]:
        return {name: rounded(step * int(round(ratio * n / step)), n) for name, n in sizes.items()}

    if groups.kept_fraction(counts_at(1.0), keep_by) <= keep:
        return counts_at(1.0)
    floor = groups.kept_fraction(counts_at(0.0), keep_by)
    if floor > keep:
        raise ValueError(
            f"keep={keep} is below what the smallest network allowed (one unit, or "
            f"round_to={round_to}, per group) keeps: {floor:.4f} of the {keep_by}"
        )
    lo, hi = 0.0, 1.0
    for _ in range(50):
        mid = (lo + hi) / 2
        if groups.kept_fraction(counts_at(mid), keep_by) > keep:
            hi = mid
        else:
            lo = mid
    return counts_at(lo)


def _ignored_modules(model: nn.Module, ignored_layers: Any) -> list[nn.Module] | None:
    """Torch-Pruning's reading of ``ignored_layers``: each module with all it contains
    (names are looked up); None stays None (our default: the classifier)."""
    if ignored_layers is None:
        return None
    modules = dict(model.named_modules())
    found: list[nn.Module] = []
    for layer in ignored_layers:
        if isinstance(layer, str):
            if layer not in modules:
                raise ValueError(f"ignored layer {layer!r} is not a module of the model")
            layer = modules[layer]
        if not isinstance(layer, nn.Module):
            raise ValueError(
                f"ignored_layers takes modules or module names, got a {type(layer).__name__}"
            )
        found.extend(layer.modules())
    return found


def _problem(
    model: nn.Module,
    example_inputs: Any,
    pruning_ratio: float | None,
    keep: float | None,
    keep_by: str,
    ignored_layers: Any,
    round_to: int | None,
    unwrapped_parameters: Sequence[tuple[nn.Parameter, int]] | None,
    customized_pruners: Mapping[Any, Any] | None,
    energy: str | Energy,
    data: Any,
    energy_options: dict,
) -> PruningProblem:
    """The pruning problem of the groups Torch-Pruning finds with the user's options, its
    per-group budget from :func:`tp_keep_counts`."""
    if pruning_ratio is None and keep is None:
        pruning_ratio = 0.5  # Torch-Pruning's default
    groups = ModelGroups(
        model,
        example_inputs,
        _ignored_modules(model, ignored_layers),
        unwrapped_parameters=unwrapped_parameters,
        customized_pruners=customized_pruners,
    )
    counts = tp_keep_counts(groups, pruning_ratio, keep, keep_by, round_to)
    data = example_inputs if data is None else data
    problem = PruningProblem(
        groups, energy=energy, keep=None, keep_by=keep_by, data=data, **energy_options
    )
    # the budget is per-group counts of our own (Torch-Pruning's ratio, round_to), not a
    # keep fraction: they constrain the solve; the energy was built above without reference
    # counts (as for keep=None), so nothing needs rebuilding
    problem.keep = keep
    problem.keep_counts = counts
    return problem


def _solve(problem: PruningProblem, solver: Any, solver_params: dict | None) -> PruningSolution:
    sampler = resolve_sampler(solver)
    params = seeded_params(sampler, solver_params or {}, problem.seed, solve_index=0)
    return problem.solve(sampler, **params)


class IsingMetaPruner:
    """``tp.pruner.MetaPruner``'s constructor and :meth:`step`, the units chosen by the
    Ising solution (see the module docstring).

    ``energy``, ``solver``, ``solver_params``: as in
    :func:`~ising_qubo.pruning.prune.prune_model`. ``data``: the calibration batch the
    energy is built from (the example inputs when None; ``(inputs, targets)`` for Taylor
    fields). ``energy_options``: ``importance``, ``similarity``, ``redundancy_weight``,
    ``seed`` (:meth:`~ising_qubo.pruning.problem.PruningProblem.from_model`).
    """

    def __init__(
        self,
        model: nn.Module,
        example_inputs: Any,
        pruning_ratio: float | None = None,
        keep: float | None = None,
        ignored_layers: Any = None,
        round_to: int | None = None,
        unwrapped_parameters: Sequence[tuple[nn.Parameter, int]] | None = None,
        customized_pruners: Mapping[Any, Any] | None = None,
        energy: str | Energy = "redundancy",
        solver: Any = "torch-sa",
        solver_params: dict | None = None,
        keep_by: str = "params",
        data: Any = None,
        **energy_options: Any,
    ) -> None:
        self.model = model
        self.problem = _problem(
            model,
            example_inputs,
            pruning_ratio,
            keep,
            keep_by,
            ignored_layers,
            round_to,
            unwrapped_parameters,
            customized_pruners,
            energy,
            data,
            energy_options,
        )
        self.solver = solver
        self.solver_params = dict(solver_params or {})
        self.solution: PruningSolution | None = None
        self.pruned = False

    @property
    def model_groups(self) -> ModelGroups:
        return self.problem.model_groups

    @property
    def keep_counts(self) -> dict[str, int]:
        assert self.problem.keep_counts is not None  # set by _problem
        return dict(self.problem.keep_counts)

    @property
    def masks(self) -> dict[str, np.ndarray] | None:
        return None if self.solution is None else self.solution.masks

    def solve(self) -> PruningSolution:
        """Solve the pruning problem (done by :meth:`step` when not yet done)."""
        self.solution = _solve(self.problem, self.solver, self.solver_params)
        return self.solution

    def step(self, interactive: bool = False) -> Iterator[Any] | None:
        """Remove the units the Ising solution drops, as ``MetaPruner.step`` does.

        ``interactive=True``: return Torch-Pruning's pruning groups (one per group with
        dropped units) for the caller to ``.prune()``, as Torch-Pruning does. The pruner
        prunes once; a second step warns and does nothing (Torch-Pruning's behaviour past
        its last iterative step).
        """
        if self.pruned:
            warnings.warn("the model is already pruned; step() does nothing", stacklevel=2)
            return iter(()) if interactive else None
        if self.solution is None:
            self.solve()
        self.pruned = True
        pending = self._pruning_groups()
        if interactive:
            return pending
        for group in pending:
            group.prune()
        return None

    def _pruning_groups(self) -> Iterator[Any]:
        masks = self.masks
        assert masks is not None
        graph = self.model_groups.graph
        for group in self.model_groups.groups:
            dropped = np.flatnonzero(~masks[group.name]).tolist()
            if dropped:
                dep = group._items[0][0]
                yield graph.get_pruning_group(dep.target.module, dep.handler, idxs=dropped)

    def pruning_history(self) -> list:
        """Torch-Pruning's record of the surgery (``tp.DependencyGraph.pruning_history``)."""
        return self.model_groups.graph.pruning_history()


class IsingImportance(tp.importance.Importance):
    """A Torch-Pruning importance whose top-k units of each group are the Ising
    solution's kept set, for ``tp.pruner.MetaPruner``.

    Build it with the arguments given to ``MetaPruner`` (``pruning_ratio`` or ``keep``,
    ``ignored_layers``, ``round_to``, ``unwrapped_parameters``, ``customized_pruners``)
    and the Ising ones (:class:`IsingMetaPruner`). The problem is solved on the first
    call, on the unpruned model. Scores: ``1 + r`` for a kept unit, ``r`` for a dropped
    one, with ``r`` in [0, 0.5) the unit's L1-norm rank in its group (a tie-break).
    With the same ``pruning_ratio`` and ``round_to`` (local pruning), ``MetaPruner``
    removes exactly the dropped units; with ``global_pruning=True`` it does so when its
    global count of removed channels equals the solution's. Groups the solution does not
    cover score ``None`` (left whole, as ``MetaPruner`` does with unscored groups).
    """

    def __init__(
        self,
        model: nn.Module,
        example_inputs: Any,
        pruning_ratio: float | None = None,
        keep: float | None = None,
        ignored_layers: Any = None,
        round_to: int | None = None,
        unwrapped_parameters: Sequence[tuple[nn.Parameter, int]] | None = None,
        customized_pruners: Mapping[Any, Any] | None = None,
        energy: str | Energy = "redundancy",
        solver: Any = "torch-sa",
        solver_params: dict | None = None,
        keep_by: str = "params",
        data: Any = None,
        **energy_options: Any,
    ) -> None:
        self.problem = _problem(
            model,
            example_inputs,
            pruning_ratio,
            keep,
            keep_by,
            ignored_layers,
            round_to,
            unwrapped_parameters,
            customized_pruners,
            energy,
            data,
            energy_options,
        )
        self.solver = solver
        self.solver_params = dict(solver_params or {})
        self.solution: PruningSolution | None = None
        self._scores: dict[str, torch.Tensor] = {}
        self._by_root: dict[int, UnitGroup] = {
            id(g._items[0][0].target.module): g for g in self.problem.groups
        }

    def solve(self) -> PruningSolution:
        """Solve the pruning problem and fix the scores (done on the first call)."""
        self.solution = _solve(self.problem, self.solver, self.solver_params)
        tie_break = group_importance(self.problem.model_groups, "l1")
        self._scores = {}
        for group in self.problem.groups:
            rank = np.empty(group.size)
            rank[np.argsort(tie_break[group.name], kind="stable")] = np.arange(group.size)
            kept = self.solution.masks[group.name].astype(float)
            self._scores[group.name] = torch.as_tensor(kept + 0.5 * rank / group.size)
        return self.solution

    def __call__(self, group: Any) -> torch.Tensor | None:
        if self.solution is None:
            self.solve()
        ours = self._by_root.get(id(group[0].dep.target.module))
        graph = self.problem.model_groups.graph
        if ours is None or not graph.is_out_channel_pruning_fn(group[0].dep.handler):
            return None
        if len(group[0].idxs) != ours.size:
            raise ValueError(
                f"group {ours.name!r} has {len(group[0].idxs)} channels, the solved "
                f"problem {ours.size}: IsingImportance scores the model it was built "
                f"on, once (use iterative_steps=1)"
            )
        return self._scores[ours.name][torch.as_tensor(list(group[0].idxs))]
