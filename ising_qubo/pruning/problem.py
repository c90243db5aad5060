"""A network's pruning problem: variables, energy, QUBO export, solving, masks.

(One object on purpose, hence a long file: the variables, both budgets, the exports and
the solve paths all index one variable layout, and splitting them would spread that
layout over modules.)

One binary variable per unit of every :class:`~ising_qubo.pruning.groups.UnitGroup`, labelled
``"<module path>:<channel>"``; x = 1 keeps the unit. The energy is an
:class:`~ising_qubo.pruning.energies.Energy` object, given by its registered name or as an
instance, of one of two shapes (see :mod:`ising_qubo.pruning.energies.base`):

* per group, such as ``"redundancy"`` (ours: importance fields plus redundancy
  couplings): independent coefficients per group, each group solved as its own BQM;
* whole network, such as ``"ipruning"`` (the paper's): one structured model (dense
  per-layer blocks plus rank-1 terms) over every variable, solved as one.

The budget ``keep`` is a fraction of the model's parameters (or MACs), of one of two kinds:

* ``budget="uniform"`` (the default): every group keeps the same fraction of its units,
  found so that the really pruned model meets it (see
  :func:`ising_qubo.pruning.groups.uniform_keep_counts`). Solvers with a hard cardinality
  constraint (CP-SAT) get it as a constraint; every other solver gets a penalty whose
  strength provably makes every single-flip local minimum satisfy it.
* ``budget="global"``: one constraint over the whole network on the exact cost of the
  really pruned model (:class:`~ising_qubo.pruning.budget.GlobalBudget`), with a floor of
  ``max(1, ceil(min_keep * n_g))`` units per group; the solver decides how many units each
  group keeps. The problem is solved as one whole-network model (a per-group energy's
  groups are its independent blocks): a solver that takes a count budget (CP-SAT) gets it
  as a hard constraint; any other gets the Lagrangian E(x) + lam * cost(x) / dense cost,
  lam found by a short bisection (at most :data:`LAGRANGE_SOLVES` solves; a
  ``time_limit`` is shared among them). Either way the state is then repaired onto the
  budget exactly and descended by budget-keeping moves
  (:mod:`ising_qubo.pruning.global_search`), so the result always meets it. The files
  of :meth:`PruningProblem.save` then hold the energy alone; ``manifest.json`` holds the
  budget (its cost terms, limit and floors). ``keep_by="latency"`` (global only) makes
  the cost the latency measured on the model's device, a fitted model of it
  (:mod:`ising_qubo.pruning.latency`); the energy's reference counts are then the
  uniform ones under that model (:meth:`GlobalBudget.uniform_counts`).
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dimod
import numpy as np
from torch import nn

from ising_qubo import io
from ising_qubo.io._atomic import atomic_write
from ising_qubo.lowrank import DENSE_BQM_LIMIT, LowRankIsing
from ising_qubo.pruning.budget import GlobalBudget, check_budget_mode, check_min_keep
from ising_qubo.pruning.energies import SIMILARITIES, Energy, LayerTerms, PaperEnergy, get_energy
from ising_qubo.pruning.energy_inputs import ModelInputs
from ising_qubo.pruning.global_search import meet_and_descend, multiplier_estimate
from ising_qubo.pruning.groups import ModelGroups, UnitGroup, uniform_keep_counts
from ising_qubo.pruning.importance import IMPORTANCES
from ising_qubo.solvers.budgeted import budgeted_descent
from ising_qubo.solvers.capabilities import Capability, supports
from ising_qubo.solvers.registry import resolve_sampler

MANIFEST = "manifest.json"

#: the most solves a global budget's Lagrangian search makes: the multiplier starts at the
#: previous solve's or at :func:`~ising_qubo.pruning.global_search.multiplier_estimate`;
#: over the limit it is multiplied by 4, under it the energy alone (lam = 0) is tried and
#: then a quarter of the least multiplier that met it, until the limit is bracketed, then
#: bisected geometrically; the search stops early once a solution's cost is within
#: LAGRANGE_BAND of the dense cost from the limit, or lam = 0 meets it (the repair and
#: descent do the rest)
LAGRANGE_SOLVES = 6
LAGRANGE_BAND = 0.02
#: the default work of one whole-network anneal: reads x sweeps x the entries one sweep
#: reads (variables + dense block entries + variables x low-rank terms); see
#: :func:`anneal_defaults`
ANNEAL_WORK = 100_000_000
#: reads of a whole-network anneal by default: ceil(ANNEAL_READ_SCALE / variables), within
#: ANNEAL_READS (fewer, longer anneals on large networks)
ANNEAL_READ_SCALE = 4000
ANNEAL_READS = (1, 10)
#: sweeps of a whole-network anneal by default: what is left of ANNEAL_WORK, within these
ANNEAL_SWEEPS = (20, 1000)
#: how many of the solver's states (those nearest the limit) a global budget polishes;
#: networks of more than POLISHED_ONE_ABOVE variables polish the nearest one only (each
#: polish of ResNet-101, 20,160 variables, takes about 6 s on one core)
POLISHED = 3
POLISHED_ONE_ABOVE = 10_000
#: a per-group energy's groups of more units than this are solved on their structured
#: block by swap annealing (:func:`~ising_qubo.solvers.budgeted.budgeted_anneal`, the
#: budget met by every move), whatever the solver: their dense BQM with the budget
#: penalty couples every pair (4,096 units: 8.4 M couplings, minutes to build and anneal
#: on one core, and past what CP-SAT can model), and single flips must cross the
#: penalty's barrier (the polish then does most of the work). On torchvision's resnet18
#: (groups of 64 to 512) swaps reach the same energy as the dense path in a quarter of
#: the time. None: every group as a dense BQM
STRUCTURED_GROUP_ABOVE = 256
#: one large group's swap anneal by default (the solver's own num_reads and num_sweeps
#: when it is torch-sa and they are given): a sweep proposes n swaps; the descent after
#: it (and the problem's polish) finishes the job. About 1 s for 3,072 units on one core
STRUCTURED_GROUP_READS = 2
STRUCTURED_GROUP_SWEEPS = 30
#: an exact solver (CP-SAT: ``properties["exact"]``) gets a time limit per group unless
#: the caller gives ``time_limit``: EXACT_SECONDS shared evenly by the groups it solves,
#: at least EXACT_GROUP_MIN_SECONDS each (:func:`exact_group_seconds`; resnet18: 9
#: groups of 3.3 s, densenet121: 119 of 0.5 s). Building CP-SAT's model counts in it;
#: when the time ends first, the group's budget-meeting hint is its answer. The
#: solution's ``groups`` says per group whether optimality was proven (``status``), and
#: :attr:`PruningSolution.optimal` for all of them
EXACT_SECONDS = 30.0
EXACT_GROUP_MIN_SECONDS = 0.5


def exact_group_seconds(groups: int) -> float:
    """The default time limit of an exact solver on each of ``groups`` groups."""
    return max(EXACT_GROUP_MIN_SECONDS, EXACT_SECONDS / max(int(groups), 1))


def anneal_defaults(
    num_variables: int, sweep_entries: int, num_reads: int | None = None
) -> dict[str, int]:
    """``num_reads`` and ``num_sweeps`` of one whole-network anneal by default, chosen so
    that its work, reads x sweeps x ``sweep_entries`` (what one sweep reads:
    :func:`sweep_entries`), stays near ANNEAL_WORK whatever the network's size:
    reads = ceil(ANNEAL_READ_SCALE / variables) within ANNEAL_READS (unless ``num_reads``
    is given), sweeps = ANNEAL_WORK / (reads x entries) within ANNEAL_SWEEPS. CIFAR
    ResNet-20 (448 variables, 31 k entries): 9 x 359; ResNet-56 (1,120; 116 k): 4 x 215;
    ResNet-101 (20,160; 12.4 M): 1 x 20."""
    n = max(1, int(num_variables))
    if num_reads is None:
        low, high = ANNEAL_READS
        num_reads = min(high, max(low, math.ceil(ANNEAL_READ_SCALE / n)))
    low, high = ANNEAL_SWEEPS
    sweeps = min(high, max(low, ANNEAL_WORK // (num_reads * max(1, int(sweep_entries)))))
    return {"num_reads": int(num_reads), "num_sweeps": int(sweeps)}


def sweep_entries(model: LowRankIsing) -> int:
    """What one sweep of ``model`` reads: its variables, dense block entries and
    variables x low-rank terms."""
    n = model.num_variables
    dense = sum(len(index) ** 2 for index, _ in model.blocks)
    return n + dense + n * model.lowrank_u.shape[0]


@dataclass
class PruningSolution:
    """What :meth:`PruningProblem.solve` returns: a keep mask per group and its energy."""

    masks: dict[str, np.ndarray]
    energy: float
    solver: str
    seconds: float
    repair_flips: int = 0  # single flips that made the solver's state meet the budget
    swaps: int = 0  # improving in-group swaps after that (see ising_qubo.solvers.budgeted)
    samplesets: list[dimod.SampleSet] = field(default_factory=list, repr=False)
    #: the budget asked for and met: mode, by, asked, met (fractions of the dense model);
    #: a global budget adds its cost, limit, dense cost, floors' min_keep, cross-group
    #: moves and the Lagrange multipliers tried. Empty without a budget.
    budget: dict = field(default_factory=dict)
    #: per group of a per-group energy: how it was solved ("path": "dense" BQM or
    #: "structured" swap anneal), its solver status where the solver reports one
    #: (CP-SAT: "OPTIMAL" when proven, else "FEASIBLE", "UNKNOWN" when its hint was the
    #: answer; "HEURISTIC" for a large group an exact solver left to the swap anneal),
    #: the time limit it had and its seconds where it was solved alone. Empty for a
    #: whole-network solve.
    groups: dict[str, dict] = field(default_factory=dict)

    @property
    def optimal(self) -> bool | None:
        """Whether every group's state was proven optimal by an exact solver (before the
        polish, which cannot worsen it); None when no group reports a status."""
        statuses = [report.get("status") for report in self.groups.values()]
        if not any(status is not None for status in statuses):
            return None
        return all(status == "OPTIMAL" for status in statuses)

    @property
    def kept(self) -> dict[str, int]:
        return {name: int(mask.sum()) for name, mask in self.masks.items()}

    def state(self, problem: PruningProblem) -> np.ndarray:
        return problem.state_from_masks(self.masks)


class PruningProblem:
    """The Ising pruning problem of one network.

    Build it with :meth:`from_model`; :meth:`refresh` recomputes the energy from the
    current weights (and a new batch) during Ising-dropout training.
    """

    def __init__(
        self,
        groups: ModelGroups,
        energy: str | Energy = "redundancy",
        keep: float | None = None,
        keep_by: str = "params",
        importance: str = "l1",
        similarity: str = "cosine",
        redundancy_weight: float = 1.0,
        data: Any = None,
        seed: int = 0,
        budget: str = "uniform",
        min_keep: float = 0.1,
    ) -> None:
        self.energy_definition = get_energy(energy)
        self.budget_mode = check_budget_mode(budget)
        self.min_keep = check_min_keep(min_keep)
        if importance not in IMPORTANCES:
            raise ValueError(
                f"unknown importance {importance!r}; choose one of {', '.join(IMPORTANCES)}"
            )
        if similarity not in SIMILARITIES:
            raise ValueError(
                f"unknown similarity {similarity!r}; choose one of {', '.join(SIMILARITIES)}"
            )
        self.model_groups = groups
        self.groups: list[UnitGroup] = groups.groups
        self.keep = keep
        self.keep_by = keep_by
        self.importance = importance
        self.similarity = similarity
        self.redundancy_weight = float(redundancy_weight)
        self.seed = seed
        #: a global budget over the whole network (None: uniform or no budget)
        self.global_budget: GlobalBudget | None = None
        if keep_by == "latency" and self.budget_mode != "global":
            raise ValueError("keep_by='latency' needs budget='global'")
        measured = keep_by == "latency"  # a cost only the global budget knows
        uniform = None
        if keep is not None and not measured:
            uniform = uniform_keep_counts(groups, keep, keep_by)
        if self.budget_mode == "global":
            if keep is None:
                raise ValueError("budget='global' needs keep, the fraction to keep")
            self.global_budget = GlobalBudget.from_groups(groups, keep, keep_by, self.min_keep)
            if measured:
                uniform = self.global_budget.uniform_counts()
        #: units kept per group under a uniform budget (None: global or no budget)
        self.keep_counts: dict[str, int] | None = uniform if self.budget_mode == "uniform" else None
        #: the counts an energy scales its terms by (a global budget's energy is the one
        #: of the uniform budget at the same keep: only the constraint differs)
        self.reference_counts = uniform
        self._multiplier: float | None = None  # the global budget's last Lagrange multiplier
        self._cost_cache: LowRankIsing | None = None  # its cost over the unit variables
        self.offsets: dict[str, int] = {}
        offset = 0
        for group in self.groups:
            self.offsets[group.name] = offset
            offset += group.size
        self.num_variables = offset
        self.labels = [label for group in self.groups for label in group.labels]
        #: groups of more units than this are solved structured (see STRUCTURED_GROUP_ABOVE)
        self.structured_group_above: int | None = STRUCTURED_GROUP_ABOVE
        self.refresh(data)

    @property
    def energy_name(self) -> str:
        return self.energy_definition.name

    @property
    def per_group(self) -> bool:
        """Whether the energy is independent per group (else one whole-network model)."""
        return self.energy_definition.per_group

    @classmethod
    def from_model(
        cls,
        model: nn.Module,
        example_inputs: Any,
        energy: str | Energy = "redundancy",
        keep: float | None = None,
        data: Any = None,
        keep_by: str = "params",
        ignored_layers: Any = None,
        budget: str = "uniform",
        min_keep: float = 0.1,
        unwrapped_parameters: Any = None,
        customized_pruners: Any = None,
        **options: Any,
    ) -> PruningProblem:
        """Find the unit groups of ``model`` and build the energy.

        ``energy``: a registered name (``ENERGIES``) or an
        :class:`~ising_qubo.pruning.energies.Energy` instance. ``data``: a batch of inputs,
        or ``(inputs, targets)``; the paper's energy takes feature-map entropies from it
        (the example inputs when absent), Taylor importance needs the targets. ``keep``:
        fraction of parameters (``keep_by="macs"``: of multiply-accumulates;
        ``keep_by="latency"``: of the latency measured on the model's device and example
        inputs, with ``budget="global"`` only, see :mod:`ising_qubo.pruning.latency`) to
        keep; None means no budget (the paper's energy then keeps about half of the units
        by itself).
        ``budget``: "uniform" (every group keeps the same fraction) or "global" (one
        constraint over the whole network, at least ``max(1, ceil(min_keep * n))`` units
        per group; see the module docstring).
        ``unwrapped_parameters`` ([(parameter, dim)]) and ``customized_pruners`` go to
        Torch-Pruning's dependency graph (:class:`~ising_qubo.pruning.groups.ModelGroups`):
        without them a bare ``nn.Parameter`` (a ViT's ``class_token``, a ConvNeXt
        block's ``layer_scale``) leaves the groups tied to it whole, with a warning.
        ``options``: ``importance``, ``similarity``, ``redundancy_weight``, ``seed``.
        """
        groups = ModelGroups(
            model, example_inputs, ignored_layers, unwrapped_parameters, customized_pruners
        )
        if data is None:
            data = example_inputs
        return cls(
            groups,
            energy=energy,
            keep=keep,
            keep_by=keep_by,
            data=data,
            budget=budget,
            min_keep=min_keep,
            **options,
        )

    # ----- energy terms -------------------------------------------------------------
    def refresh(self, data: Any = None) -> None:
        """Recompute the energy from the model's current weights (and ``data``)."""
        inputs = ModelInputs(
            self.model_groups,
            data,
            self.offsets,
            self.labels,
            self.reference_counts,
            self.importance,
            self.similarity,
            self.redundancy_weight,
            self.seed,
        )
        energy = self.energy_definition
        if data is None and energy.needs_data(inputs):
            raise ValueError(
                f"energy {energy.name!r} with importance {self.importance!r} "
                f"needs data=(inputs, targets), a labelled batch"
            )
        built = energy.build(inputs)
        self._plain_structured: LowRankIsing | None = None  # structured(budget=False), built once
        if energy.per_group:
            self._coefficients = self._checked_coefficients(built)
        else:
            self._network = self._checked_network(built)
        self._inputs = inputs

    def _checked_coefficients(self, built: Any) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """A per-group energy's coefficients, checked, with the diagonal moved into the
        fields and the couplings upper-triangular (the form the BQMs are built from)."""
        name = self.energy_name
        if not isinstance(built, Mapping):
            raise ValueError(
                f"energy {name!r} is per group: build() must return {{group "
                f"name: (linear, quadratic)}}, got {type(built).__name__}"
            )
        missing = [g.name for g in self.groups if g.name not in built]
        if missing:
            raise ValueError(
                f"energy {name!r} built no coefficients for group(s) "
                f"{', '.join(map(repr, missing))}"
            )
        coefficients = {}
        for group in self.groups:
            linear, quadratic = (np.asarray(a, dtype=np.float64) for a in built[group.name])
            n = group.size
            if linear.shape != (n,) or quadratic.shape != (n, n):
                raise ValueError(
                    f"energy {name!r}, group {group.name!r}: coefficients of "
                    f"shapes {linear.shape} and {quadratic.shape}, expected "
                    f"({n},) and ({n}, {n})"
                )
            if not (np.all(np.isfinite(linear)) and np.all(np.isfinite(quadratic))):
                raise ValueError(
                    f"energy {name!r}, group {group.name!r}: NaN or infinite coefficients"
                )
            # x^T Q x = sum_i Q_ii x_i + sum_{i<j} (Q_ij + Q_ji) x_i x_j for x in {0, 1}
            coefficients[group.name] = (
                linear + np.diag(quadratic),
                np.triu(quadratic + quadratic.T, 1),
            )
        return coefficients

    def _checked_network(self, built: Any) -> LowRankIsing:
        name = self.energy_name
        if not isinstance(built, LowRankIsing):
            raise ValueError(
                f"energy {name!r} is whole-network: build() must return a "
                f"LowRankIsing, got {type(built).__name__}"
            )
        if list(built.labels) != self.labels:
            raise ValueError(
                f"energy {name!r}: build() must return a LowRankIsing over the "
                f"problem's {self.num_variables} variables labelled "
                f"inputs.labels, in order; got {built.num_variables} variables "
                f"labelled {built.labels[:3]}..."
            )
        return built

    def _keep_count(self, group: UnitGroup) -> int | None:
        return None if self.keep_counts is None else self.keep_counts[group.name]

    @property
    def layer_terms(self) -> list[LayerTerms]:
        """The paper's energy layer by layer, recomputed from the current weights (for
        checks: the problem itself keeps only the merged structured form)."""
        if not isinstance(self.energy_definition, PaperEnergy):
            raise AttributeError("layer_terms exist for the paper's energy (ipruning) only")
        return list(self.energy_definition.layer_terms(self._inputs))

    # ----- models for solvers -----------------------------------------------------------
    def _group_bqm(self, group: UnitGroup, budget: bool) -> dimod.BinaryQuadraticModel:
        """One group's BINARY model, built from numpy arrays in one call (dimod's
        ``update`` of an n^2 penalty is slow for the wide groups of a real network)."""
        linear, quadratic = self._coefficients[group.name]
        linear = linear.copy()
        quadratic = quadratic.copy()
        offset = 0.0
        k = self._keep_count(group)
        if budget and k is not None:
            strength = self._group_strength(group)
            linear += strength * (1 - 2 * k)
            quadratic += np.triu(np.full_like(quadratic, 2.0 * strength), 1)
            offset = strength * k * k
        rows, cols = np.nonzero(quadratic)
        bqm = dimod.BinaryQuadraticModel.from_numpy_vectors(
            linear, (rows, cols, quadratic[rows, cols]), offset, dimod.BINARY
        )
        bqm.relabel_variables(dict(enumerate(group.labels)), inplace=True)
        return bqm

    def _group_strength(self, group: UnitGroup) -> float:
        """Cardinality penalty strength above the most one flip can change the group's
        energy (the rule of :func:`ising_qubo.qubo.safe_penalty_strength`): then every
        single-flip local minimum keeps exactly k units."""
        linear, quadratic = self._coefficients[group.name]
        sym = np.abs(quadratic) + np.abs(quadratic).T
        reach = float((np.abs(linear) + sym.sum(axis=1)).max())
        return reach * 1.01 if reach > 0 else 1.0

    def _penalty_strength(self) -> float:
        """Larger than any single flip can change the energy: then every local minimum
        (every state our solvers return) keeps exactly k_g units of each group."""
        net = self._network
        bound = np.abs(net.h).copy()
        for index, block in net.blocks:
            bound[index] += np.abs(block).sum(axis=1)
        u, v = np.abs(net.lowrank_u), np.abs(net.lowrank_v)
        bound += (u * v.sum(axis=1, keepdims=True) + v * u.sum(axis=1, keepdims=True)).sum(0)
        return float(2.0 * bound.max() + 1.0)  # a spin flip moves the energy by <= 2 * bound

    def structured(self, budget: bool = True) -> LowRankIsing:
        """The whole-network energy as blocks plus low-rank terms (no dense matrix).

        Without the budget it is built once per energy (:meth:`refresh`): the solve, its
        polish and the solution's energy all read it, and for a network with groups of
        thousands of units each build copies hundreds of megabytes. Treat it as read-only."""
        if self.per_group and not budget:
            if self._plain_structured is None:
                self._plain_structured = self._per_group_structured(budget=False)
            return self._plain_structured
        if self.per_group:
            return self._per_group_structured(budget)
        if not budget or self.keep_counts is None:
            return self._network
        strength = self._penalty_strength()
        return self._with_budget_spin(self._network, {g.name: strength for g in self.groups})

    def _per_group_structured(self, budget: bool) -> LowRankIsing:
        blocks, linear = [], np.zeros(self.num_variables)
        for group in self.groups:
            lin, quad = self._coefficients[group.name]
            start = self.offsets[group.name]
            index = np.arange(start, start + group.size)
            linear[index] = lin
            blocks.append((index, quad))
        base = LowRankIsing.from_binary(linear, blocks, (), 0.0, self.labels)
        if not budget or self.keep_counts is None:
            return base
        strengths = {g.name: self._group_strength(g) for g in self.groups}
        return self._with_budget_blocks(base, linear, blocks, strengths)

    def _budget_terms(self, strengths: Mapping[str, float]):
        """Binary-form blocks and fields of sum_g strength_g * (sum_{i in g} x_i - k_g)^2."""
        counts = self.keep_counts
        assert counts is not None  # only structured() with a budget asks for its terms
        linear = np.zeros(self.num_variables)
        blocks = []
        offset = 0.0
        for group in self.groups:
            k = counts[group.name]
            strength = strengths[group.name]
            start = self.offsets[group.name]
            index = np.arange(start, start + group.size)
            ones = np.full((group.size, group.size), strength)
            np.fill_diagonal(ones, 0.0)
            blocks.append((index, ones))
            linear[index] += strength * (1 - 2 * k)
            offset += strength * k * k
        return linear, blocks, offset

    def _with_budget_blocks(self, base, linear, blocks, strengths) -> LowRankIsing:
        pen_linear, pen_blocks, offset = self._budget_terms(strengths)
        merged = [(index, quad + pen) for (index, quad), (_, pen) in zip(blocks, pen_blocks)]
        return LowRankIsing.from_binary(linear + pen_linear, merged, (), offset, self.labels)

    def _with_budget_spin(self, net: LowRankIsing, strengths) -> LowRankIsing:
        pen_linear, pen_blocks, offset = self._budget_terms(strengths)
        penalty = LowRankIsing.from_binary(pen_linear, pen_blocks, (), offset, self.labels)
        blocks = {tuple(index.tolist()): J.copy() for index, J in net.blocks}
        for index, J in penalty.blocks:
            key = tuple(index.tolist())
            blocks[key] = blocks[key] + J if key in blocks else J
        return LowRankIsing(
            net.h + penalty.h,
            [(np.array(k, dtype=np.int64), J) for k, J in blocks.items()],
            net.lowrank_u,
            net.lowrank_v,
            net.offset + penalty.offset,
            list(self.labels),
        )

    def to_bqm(
        self, group: str | int | None = None, budget: bool = True
    ) -> dimod.BinaryQuadraticModel:
        """The problem as a BINARY ``dimod.BinaryQuadraticModel`` (x = 1 keeps a unit).

        ``group`` (a name or an index) restricts it to one group; for a whole-network
        energy the other groups are then held at "all kept". ``budget=False`` leaves the budget
        penalty out (for a solver given the budget as a hard constraint); a global budget
        is no penalty of the variables (see :meth:`lagrangian` and :attr:`global_budget`),
        so under one the model is the energy alone either way. The whole
        network under a whole-network energy is a dense model: fine for export and checks,
        large for a big network (prefer :meth:`structured`).
        """
        if group is not None:
            chosen = self._group(group)
            if self.per_group:
                return self._group_bqm(chosen, budget)
            # the structured model conditioned on the others (dimod's fix_variables on
            # the dense whole-network BQM costs seconds per group even for ResNet-20)
            start = self.offsets[chosen.name]
            part = _condition_on_kept(
                self.structured(budget), np.arange(start, start + chosen.size)
            )
            return part.to_bqm().change_vartype(dimod.BINARY, inplace=False)
        if self.per_group:
            whole = dimod.BinaryQuadraticModel(dimod.BINARY)
            for g in self.groups:
                whole.update(self.to_bqm(g.name, budget))
            return whole
        return self.structured(budget).to_bqm().change_vartype(dimod.BINARY, inplace=False)

    def _group(self, group: str | int) -> UnitGroup:
        if isinstance(group, (int, np.integer)):
            if not 0 <= group < len(self.groups):
                raise IndexError(f"group index {group} out of range [0, {len(self.groups)})")
            return self.groups[int(group)]
        return self.model_groups.by_name(group)

    # ----- states and energies ----------------------------------------------------------
    def state_from_masks(self, masks: Mapping[str, np.ndarray]) -> np.ndarray:
        unknown = set(masks) - set(self.offsets)
        if unknown:  # a typo would otherwise be read as "keep everything" without a word
            raise ValueError(
                f"masks for unknown groups {sorted(map(str, unknown))}; groups: "
                f"{', '.join(self.offsets)}"
            )
        state = np.ones(self.num_variables, dtype=np.int8)
        for group in self.groups:
            if group.name in masks:
                mask = np.asarray(masks[group.name]).astype(bool)
                if mask.shape != (group.size,):
                    raise ValueError(
                        f"group {group.name!r}: mask of shape {mask.shape}, "
                        f"expected ({group.size},)"
                    )
                start = self.offsets[group.name]
                state[start : start + group.size] = mask
        return state

    def masks_from_state(self, state: np.ndarray) -> dict[str, np.ndarray]:
        state = np.asarray(state).reshape(-1)
        if len(state) != self.num_variables:
            raise ValueError(f"state has {len(state)} entries, the problem {self.num_variables}")
        return {
            g.name: state[self.offsets[g.name] : self.offsets[g.name] + g.size].astype(bool)
            for g in self.groups
        }

    def energy(self, masks: Mapping[str, np.ndarray], budget: bool = False) -> float:
        """The energy of a keep mask per group (without the budget penalty by default)."""
        x = self.state_from_masks(masks).astype(float)
        return float(self.structured(budget).energies(2 * x[None, :] - 1)[0])

    # ----- solving ---------------------------------------------------------------------
    def solve(
        self,
        solver: Any = "torch-sa",
        initial: Mapping[str, np.ndarray] | None = None,
        **params: Any,
    ) -> PruningSolution:
        """Solve with a registered solver name or any ``dimod.Sampler``; the lowest-energy
        state becomes a keep mask per group.

        ``initial`` (masks) warm-starts solvers that take ``initial_states``. The solver's
        state then goes through :meth:`polish`: it meets the budget exactly and no swap of
        a kept and a dropped unit of one group lowers the energy. Under a global budget
        (module docstring) ``initial`` is also polished itself, and the best state wins.
        ``solution.budget`` records the budget asked for and met.

        Defaults that scale with the network: a whole-network model solved by a
        structured sampler that takes ``num_reads`` and ``num_sweeps`` (torch-sa: the
        uniform budget's one anneal, each solve of the global budget's Lagrangian search)
        gets, for whichever of the two the caller left out, :func:`anneal_defaults`:
        reads = ceil(4000 / variables) within [1, 10], sweeps = 10^8 / (reads x entries
        one sweep reads) within [20, 1000], so one solve costs about the same on any
        network (ResNet-20: 9 x 359, ResNet-56: 4 x 215, ResNet-101: 1 x 20; the repair
        and descent after it do the rest). A ``time_limit`` turns this off (the
        sampler's own defaults then apply, cut short by the limit), and so do per-group
        energies under the uniform budget (one small BQM per group).

        Per-group energies: a group of more than :attr:`structured_group_above` units
        (STRUCTURED_GROUP_ABOVE) is swap-annealed on its structured block, whatever the
        solver; an exact solver gets :func:`exact_group_seconds` per group unless
        ``params`` has a ``time_limit``. ``solution.groups`` records, per group, the path,
        the solver's status and the time limit; ``solution.optimal`` whether all were
        proven optimal.
        """
        sampler = resolve_sampler(solver)
        name = (
            solver if isinstance(solver, str) else getattr(sampler, "name", type(sampler).__name__)
        )
        warm = initial is not None and supports(sampler, Capability.INITIAL_STATES)
        if self.global_budget is not None:
            return self._solve_global(sampler, str(name), initial, warm, params)
        start = time.perf_counter()
        groups: dict[str, dict] = {}
        if self.per_group:
            state, samplesets, groups = self._solve_groups(
                sampler, initial if warm else None, params
            )
        else:
            state, samplesets = self._solve_network(sampler, initial if warm else None, params)
        seconds = time.perf_counter() - start
        if any(getattr(ss, "info", {}).get("interrupted") for ss in samplesets):
            # the solver stopped early on Ctrl-C and kept its best state; a training run
            # must still stop (its last checkpoint stays), so the interrupt goes on
            raise KeyboardInterrupt
        masks, repair_flips, swaps = self.polish(self.masks_from_state(state))
        return PruningSolution(
            masks,
            self.energy(masks),
            str(name),
            seconds,
            repair_flips,
            swaps,
            samplesets,
            self.budget_report(masks),
            groups,
        )

    def _solve_groups(
        self, sampler: Any, initial: Any, params: Mapping[str, Any]
    ) -> tuple[np.ndarray, list[dimod.SampleSet], dict[str, dict]]:
        """A per-group energy: one BQM per group, in one batch where the sampler takes
        one; the budget as a hard cardinality where it takes that, else as a penalty.
        Groups above :attr:`structured_group_above` units are swap-annealed on their
        structured block instead (:meth:`_solve_structured_group`); an exact solver gets
        :func:`exact_group_seconds` per group unless ``params`` has a ``time_limit``, and a
        budget-meeting hint. Returns (state, samplesets in group order, report per group)."""
        above = self.structured_group_above
        large = {g.name for g in self.groups if above is not None and g.size > above}
        dense = [g for g in self.groups if g.name not in large]
        counts = self.keep_counts
        hard = counts is not None and supports(sampler, Capability.CARDINALITY)
        exact = _is_exact(sampler)
        report: dict[str, dict] = {}
        found: dict[str, tuple[np.ndarray, dimod.SampleSet]] = {}
        dense_params = dict(params)
        if exact and supports(sampler, Capability.TIME_LIMIT):
            dense_params.setdefault("time_limit", exact_group_seconds(len(dense)))
        inits = None if initial is None else {g.name: self._initial(initial, g) for g in dense}
        if inits is None and hard and exact and supports(sampler, Capability.INITIAL_STATES):
            inits = self._budget_hints(dense)  # its answer if time ends before it finds one
        bqms = [self.to_bqm(g.name, budget=not hard) for g in dense]
        if dense and supports(sampler, Capability.BATCH) and not hard:
            starts = {} if inits is None else {"initial_states": [inits[g.name] for g in dense]}
            batch = sampler.sample_batch(bqms, **starts, **dense_params)
            for group, sampleset in zip(dense, batch):
                found[group.name] = (_best_state(sampleset, group.labels), sampleset)
                report[group.name] = {"path": "dense"}
        else:
            for group, bqm in zip(dense, bqms):
                extra: dict[str, Any] = dict(dense_params)
                if hard and counts is not None:
                    extra["cardinality"] = counts[group.name]
                if inits is not None:
                    extra["initial_states"] = (inits[group.name], group.labels)
                started = time.perf_counter()
                sampleset = sampler.sample(bqm, **extra)
                found[group.name] = (_best_state(sampleset, group.labels), sampleset)
                report[group.name] = _group_report(
                    "dense", sampleset, time.perf_counter() - started, extra.get("time_limit")
                )
                if sampleset.info.get("interrupted"):
                    raise KeyboardInterrupt  # Ctrl-C: do not go on to the next group
        for group in self.groups:
            if group.name in large:
                started = time.perf_counter()
                state, sampleset = self._solve_structured_group(sampler, group, initial, params)
                found[group.name] = (state, sampleset)
                report[group.name] = _group_report(
                    "structured", sampleset, time.perf_counter() - started, params.get("time_limit")
                )
                if exact:  # the exact solver never saw it: nothing was proven
                    report[group.name]["status"] = "HEURISTIC"
                if sampleset.info.get("interrupted"):
                    raise KeyboardInterrupt
        state = np.concatenate([found[g.name][0] for g in self.groups])
        return state, [found[g.name][1] for g in self.groups], report

    def _budget_hints(self, groups: list[UnitGroup]) -> dict[str, np.ndarray]:
        """Per group, a (1, n) binary state keeping exactly its count: the all-kept state
        repaired onto the budget and descended by swaps, as :meth:`polish` does."""
        counts = self.keep_counts
        assert counts is not None  # hints for a hard budget only
        indices = [np.arange(self.offsets[g.name], self.offsets[g.name] + g.size) for g in groups]
        spins, _, _ = budgeted_descent(
            self.structured(budget=False),
            np.ones(self.num_variables),
            indices,
            [counts[g.name] for g in groups],
        )
        return {
            g.name: (spins[index] > 0).astype(np.int8)[None, :] for g, index in zip(groups, indices)
        }

    def _group_model(self, group: UnitGroup) -> LowRankIsing:
        """One group's energy (no budget term) as a structured model over its labels: its
        block of :meth:`structured` (already symmetric, checked once), no copy."""
        whole = self.structured(budget=False)
        start = self.offsets[group.name]
        index, J = whole.blocks[self.groups.index(group)]
        assert index[0] == start and len(index) == group.size  # one block per group, in order
        linear, quadratic = self._coefficients[group.name]
        # the group's share of the constant: sum(a) / 2 + sum_{i<j} Q_ij / 4 (from_binary)
        offset = float(linear.sum() / 2 + quadratic.sum() / 4)
        return _GroupBlock(whole.h[index], J, offset, group.labels)

    def _solve_structured_group(
        self, sampler: Any, group: UnitGroup, initial: Any, params: Mapping[str, Any]
    ) -> tuple[np.ndarray, dimod.SampleSet]:
        """A large group by swap annealing on its structured block (every state keeps its
        count, no penalty, no dense BQM): with ``sampler`` where it anneals structured
        models under cardinalities (torch-sa, with ``params``), else with torch-sa's swap
        annealer (``seed`` and ``time_limit`` of ``params`` only). Without a budget the
        block is annealed by single flips."""
        from ising_qubo.solvers.torch_sa import TorchSASampler

        model = self._group_model(group)
        own = supports(sampler, Capability.STRUCTURED_CARDINALITIES)
        annealer = sampler if own else TorchSASampler()
        extra = (
            dict(params)
            if own
            else {key: params[key] for key in ("seed", "time_limit") if key in params}
        )
        extra.setdefault("num_reads", STRUCTURED_GROUP_READS)
        extra.setdefault("num_sweeps", STRUCTURED_GROUP_SWEEPS)
        if not own:
            extra.setdefault("device", "cpu")  # the swap kernel runs there; no torch import
        if initial is not None:
            x = self._initial(initial, group)[0].astype(float)
            extra["initial_states"] = np.repeat(2 * x[None, :] - 1, int(extra["num_reads"]), 0)
        k = self._keep_count(group)
        if k is not None:
            extra["cardinalities"] = [(group.labels, k)]
        sampleset = annealer.sample_structured(model, **extra)
        return _best_state(sampleset, group.labels), sampleset

    def _initial(self, initial: Mapping[str, np.ndarray], group: UnitGroup) -> np.ndarray:
        mask = initial.get(group.name, np.ones(group.size, dtype=bool))
        return np.asarray(mask, dtype=np.int8)[None, :]

    def _anneal_params(self, sampler: Any, params: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` with :func:`anneal_defaults` filled in for a structured sampler that
        takes ``num_reads`` and ``num_sweeps`` (torch-sa), unless the caller set a
        ``time_limit``; a ``num_reads`` or ``num_sweeps`` given is kept as given."""
        params = dict(params)
        known = getattr(sampler, "parameters", {}) or {}
        if (
            not supports(sampler, Capability.STRUCTURED)
            or "num_reads" not in known
            or "num_sweeps" not in known
            or params.get("time_limit") is not None
        ):
            return params
        reads = params.get("num_reads")
        entries = sweep_entries(self.structured(budget=False))
        scaled = anneal_defaults(self.num_variables, entries, None if reads is None else reads)
        for key, value in scaled.items():
            params.setdefault(key, value)
        return params

    def _solve_network(self, sampler, initial, params):
        """A whole-network energy: the structured model where the sampler takes one (the
        budget by swap moves where it can), else the dense BQM (the budget as hard
        cardinalities where the sampler takes them, else as a penalty)."""
        if supports(sampler, Capability.STRUCTURED):
            extra = self._anneal_params(sampler, params)
            if initial is not None:
                x = self.state_from_masks(initial).astype(float)
                reads = int(extra.get("num_reads", 10))
                extra["initial_states"] = np.repeat(2 * x[None, :] - 1, reads, axis=0)
            swaps = self.keep_counts is not None and supports(
                sampler, Capability.STRUCTURED_CARDINALITIES
            )
            if swaps:  # the budget met exactly by swap moves: no penalty to anneal through
                extra["cardinalities"] = [(g.labels, self.keep_counts[g.name]) for g in self.groups]
            sampleset = sampler.sample_structured(self.structured(budget=not swaps), **extra)
            return _best_state(sampleset, self.labels), [sampleset]
        exact_budget = self.keep_counts is not None and supports(sampler, Capability.CARDINALITIES)
        bqm = self.to_bqm(None, budget=not exact_budget)
        extra = dict(params)
        if exact_budget:  # CP-SAT: the budget as hard constraints, not as a penalty
            extra["cardinalities"] = [(g.labels, self.keep_counts[g.name]) for g in self.groups]
        if initial is not None:
            extra["initial_states"] = (self.state_from_masks(initial)[None, :], self.labels)
        sampleset = sampler.sample(bqm, **extra)
        return _best_state(sampleset, self.labels), [sampleset]

    def polish(self, masks: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int, int]:
        """Meet the budget exactly (without one: keep >= 1 unit per group), then descend by
        swaps inside groups (see :mod:`ising_qubo.solvers.budgeted`).

        Returns (masks, repair flips, swaps). Without a budget only the >= 1 rule applies.
        Under a global budget: the repair and descent of
        :func:`~ising_qubo.pruning.global_search.meet_and_descend`, and ``swaps`` counts
        every budget-keeping move (in-group swaps and cross-group moves).
        """
        if self.global_budget is not None:
            spins, done = self._polish_global(self.state_from_masks(masks))
            masks = self.masks_from_state((spins > 0).astype(np.int8))
            return masks, done.repair_flips, done.swaps + done.moves
        indices = [
            np.arange(self.offsets[g.name], self.offsets[g.name] + g.size) for g in self.groups
        ]
        x = self.state_from_masks(masks)
        if self.keep_counts is None:
            targets = [max(1, int(x[index].sum())) for index in indices]
        else:
            targets = [self.keep_counts[g.name] for g in self.groups]
        spins, repair_flips, swaps = budgeted_descent(
            self.structured(budget=False),
            2.0 * x - 1.0,
            indices,
            targets,
            max_moves=None if self.keep_counts is not None else 0,
        )
        return self.masks_from_state((spins > 0).astype(np.int8)), repair_flips, swaps

    # ----- the global budget -----------------------------------------------------------------
    def budget_report(self, masks: Mapping[str, np.ndarray]) -> dict:
        """The budget asked for and the one ``masks`` meet, as fractions of the dense model
        (by the budget's own cost model; empty without a budget)."""
        counts = {name: int(np.sum(mask)) for name, mask in masks.items()}
        if self.global_budget is not None:
            return self.global_budget.report(counts)
        if self.keep is None:
            return {}
        return {
            "mode": "uniform",
            "by": self.keep_by,
            "asked": self.keep,
            "met": self.model_groups.kept_fraction(counts, self.keep_by),
        }

    def lagrangian(self, multiplier: float) -> LowRankIsing:
        """E(x) + multiplier * cost(x) / dense cost under the global budget, as blocks plus
        low-rank terms (the cost's b_gh k_g k_h are rank-one terms): what a solver without
        a count budget minimises."""
        if self.global_budget is None:
            raise ValueError("the Lagrangian exists under budget='global' only")
        return _with_cost(self.structured(budget=False), self._cost_model(), multiplier)

    def _group_index(self) -> list[np.ndarray]:
        return [np.arange(self.offsets[g.name], self.offsets[g.name] + g.size) for g in self.groups]

    def _state_counts(self, x: np.ndarray) -> np.ndarray:
        return np.array([int(x[index].sum()) for index in self._group_index()], dtype=np.int64)

    def _cost_model(self) -> LowRankIsing:
        """cost(x) / dense cost over the unit variables (the architecture's, so kept)."""
        cached = self._cost_cache
        if cached is None:
            budget = self.global_budget
            assert budget is not None  # only the global budget has a cost model
            linear, terms, constant = budget.unit_terms(self._group_index(), self.num_variables)
            scale = 1.0 / budget.dense
            cached = self._cost_cache = LowRankIsing.from_binary(
                linear * scale,
                (),
                [(p * scale, q) for p, q in terms],
                constant * scale,
                self.labels,
            )
        return cached

    def _polish_global(self, x: np.ndarray, energy: LowRankIsing | None = None, csr=None):
        """meet_and_descend from binary state ``x`` (``energy``: structured(budget=False)
        and ``csr`` its couplings, when the caller has them)."""
        budget = self.global_budget
        assert budget is not None  # called under the global budget only
        spins = 2.0 * np.asarray(x, dtype=float) - 1.0
        if energy is None:
            energy = self.structured(budget=False)
        return meet_and_descend(energy, spins, self._group_index(), budget, csr=csr)

    def _solve_global(
        self, sampler: Any, name: str, initial: Any, warm: bool, params: dict
    ) -> PruningSolution:
        """The whole network under the global budget (module docstring); the POLISHED
        states the solver returned (one per multiplier tried) nearest the limit and
        ``initial`` are polished, and the lowest energy wins."""
        budget = self.global_budget
        assert budget is not None  # solve() sends only the global budget here
        record: dict[str, Any] = {}
        start = time.perf_counter()
        if supports(sampler, Capability.COUNT_BUDGET):
            extra = dict(params)
            extra["count_budget"] = budget.as_count_budget([g.labels for g in self.groups])
            if supports(sampler, Capability.INITIAL_STATES):
                # a state meeting the budget (the warm start, else the all-kept state,
                # polished): the solver's hint, and its answer if time ends before it
                # finds one of its own (CP-SAT: while it builds a large model)
                x = self.state_from_masks(initial) if warm else np.ones(self.num_variables)
                spins, _ = self._polish_global(x)
                extra["initial_states"] = ((spins > 0).astype(np.int8)[None, :], self.labels)
            sampleset = sampler.sample(self.to_bqm(None, budget=False), **extra)
            samplesets = [sampleset]
            candidates = [_best_state(sampleset, self.labels)]
            record["method"] = "count_budget"
            if "bound" in sampleset.info:
                record["bound"] = float(sampleset.info["bound"])
                record["status"] = sampleset.info.get("status")
            if "fallback" in sampleset.info:
                record["fallback"] = sampleset.info["fallback"]
        else:
            csr = self.structured(budget=False).csr()
            candidates, samplesets, tried = self._lagrangian_search(
                sampler, initial if warm else None, params, csr
            )
            record["method"] = "lagrangian"
            record["multipliers"] = tried
        seconds = time.perf_counter() - start
        if any(getattr(ss, "info", {}).get("interrupted") for ss in samplesets):
            raise KeyboardInterrupt  # as in solve(): a training run must still stop
        # the states nearest the limit (those the repair changes least), and the warm start
        near = sorted(
            candidates, key=lambda x: abs(budget.cost(self._state_counts(x)) - budget.limit)
        )
        candidates = near[: POLISHED if self.num_variables <= POLISHED_ONE_ABOVE else 1]
        if initial is not None:
            candidates.append(self.state_from_masks(initial))
        energy = self.structured(budget=False)
        if record["method"] != "lagrangian":
            csr = energy.csr()
        best = None
        seen = set()
        for x in candidates:
            key = np.asarray(x, dtype=np.int8).tobytes()
            if key in seen:
                continue
            seen.add(key)
            spins, done = self._polish_global(x, energy, csr)
            value = float(energy.energies(spins[None, :])[0])
            if best is None or value < best[0]:
                best = (value, spins, done)
        assert best is not None  # at least one candidate
        _, spins, done = best
        masks = self.masks_from_state((spins > 0).astype(np.int8))
        report = self.budget_report(masks)
        report.update(record, moves=done.moves, polished=len(seen))
        return PruningSolution(
            masks,
            self.energy(masks),
            name,
            seconds,
            done.repair_flips,
            done.swaps + done.moves,
            samplesets,
            report,
        )

    def _lagrangian_search(self, sampler: Any, initial: Any, params: dict, csr=None):
        """States minimising E + lam * cost / dense for at most LAGRANGE_SOLVES
        multipliers, bracketing and bisecting lam towards the limit (``csr``: the
        energy's couplings, shared by every multiplier's model). Returns (states,
        samplesets, [{"lambda", "met"} per solve])."""
        budget = self.global_budget
        assert budget is not None  # the global budget's search
        energy = self.structured(budget=False)
        cost = self._cost_model()
        first = self._first_multiplier(energy)
        multiplier, low, high = first, 0.0, math.inf
        unconstrained = first == 0.0  # whether the energy alone (lam = 0) was tried
        states: list[np.ndarray] = []
        samplesets: list[dimod.SampleSet] = []
        tried: list[dict[str, float]] = []
        params = self._anneal_params(sampler, params)
        # the whole search keeps the time limit: each solve gets an equal share of what is
        # left, and building a solve's model (a dense BQM for a plain dimod sampler) is
        # counted in it; once the time is spent, the states so far are the answer
        deadline = None
        if params.get("time_limit") is not None:
            deadline = time.perf_counter() + float(params["time_limit"])
        if not supports(sampler, Capability.STRUCTURED):
            csr = None  # the dense BQM path builds its own
        for solve in range(LAGRANGE_SOLVES):
            if deadline is not None:
                left = deadline - time.perf_counter()
                if left <= 0 and states:
                    break
                params["time_limit"] = max(left, 0.0) / (LAGRANGE_SOLVES - solve)
            state, sampleset = self._sample_whole(
                sampler, _with_cost(energy, cost, multiplier, csr), initial, params
            )
            states.append(state)
            samplesets.append(sampleset)
            if sampleset.info.get("interrupted"):
                break
            spent = budget.cost(self._state_counts(state))
            tried.append({"lambda": multiplier, "met": spent / budget.dense})
            if budget.within_limit(spent):
                high = multiplier
            else:
                low = multiplier
            near = abs(spent - budget.limit) <= LAGRANGE_BAND * budget.dense
            if near or (multiplier == 0.0 and budget.within_limit(spent)):
                break  # near enough: the repair takes it onto the limit at little cost
            if high == math.inf:  # from none (a re-solve's start) to the estimate
                multiplier = 4.0 * multiplier if multiplier > 0 else self._estimate(energy)
            elif low == 0.0:  # met at every multiplier so far: does the energy alone meet it?
                multiplier = 0.0 if not unconstrained else high / 4.0
                unconstrained = True
            else:
                multiplier = math.sqrt(low * high)
        self._multiplier = high if math.isfinite(high) else multiplier
        return states, samplesets, tried

    def _first_multiplier(self, energy: LowRankIsing) -> float:
        """The previous solve's multiplier (a re-solve during training starts where the
        last one ended), else :func:`~ising_qubo.pruning.global_search.
        multiplier_estimate` from the all-kept state."""
        if self._multiplier is not None:
            return self._multiplier
        return self._estimate(energy)

    def _estimate(self, energy: LowRankIsing) -> float:
        budget = self.global_budget
        assert budget is not None  # the global budget's search
        return multiplier_estimate(energy, self._group_index(), budget)

    def _sample_whole(self, sampler: Any, model: LowRankIsing, initial: Any, params: dict):
        """One solve of a whole-network model: structured where the sampler takes one,
        else the dense BINARY BQM. Returns (best binary state, sampleset)."""
        extra = dict(params)
        x = None if initial is None else self.state_from_masks(initial)
        if supports(sampler, Capability.STRUCTURED):
            if x is not None:
                reads = int(extra.get("num_reads", 10))
                extra["initial_states"] = np.repeat(2.0 * x[None, :] - 1.0, reads, axis=0)
            sampleset = sampler.sample_structured(model, **extra)
        else:
            if x is not None:
                extra["initial_states"] = (x[None, :], self.labels)
            bqm = model.to_bqm().change_vartype(dimod.BINARY, inplace=False)
            sampleset = sampler.sample(bqm, **extra)
        return _best_state(sampleset, self.labels), sampleset

    # ----- files ---------------------------------------------------------------------------
    def manifest(self, files: Mapping[str, str] | None = None) -> dict:
        groups = []
        for group in self.groups:
            units: list[list[dict[str, Any]]] = [[] for _ in range(group.size)]
            for layer in group.layers:
                for channel, unit in zip(layer.channels.tolist(), layer.units.tolist()):
                    units[unit].append({"module": layer.name, "channel": channel})
            groups.append(
                {
                    "name": group.name,
                    "size": group.size,
                    "keep_count": self._keep_count(group),
                    "file": (files or {}).get(group.name),
                    "params_per_unit": group.params_per_unit.tolist(),
                    "macs_per_unit": group.macs_per_unit.tolist(),
                    "variables": [
                        {"label": label, "unit": i, "layers": units[i]}
                        for i, label in enumerate(group.labels)
                    ],
                }
            )
        return {
            "format": "ising-qubo-pruning/1",
            "energy": self.energy_name,
            "keep": self.keep,
            "keep_by": self.keep_by,
            "importance": self.importance,
            "similarity": self.similarity,
            "vartype": "BINARY",
            "meaning": "x = 1 keeps the unit",
            "network_file": (files or {}).get("__network__"),
            "budget": self._manifest_budget(),
            "groups": groups,
        }

    def _manifest_budget(self) -> dict:
        """The budget in manifest.json: the mode, and for a global one the exact cost of
        the kept counts k_g (g in the order of "groups") and its limit and floors."""
        budget = self.global_budget
        if budget is None:
            return {"mode": self.budget_mode if self.keep is not None else None}
        terms = budget.as_count_budget([[] for _ in self.groups])
        del terms["groups"]
        return {
            "mode": "global",
            "meaning": "constant + sum_g linear[g] k_g + sum over pairs (g, h, b) of "
            "b k_g k_h <= limit, k_g >= floors[g]",
            "by": budget.by,
            "keep": budget.keep,
            "min_keep": budget.min_keep,
            "dense": budget.dense,
            **terms,
        }

    def save(
        self,
        directory: str | os.PathLike[str],
        format: str = "coo",
        budget: bool = True,
        whole_network: bool | None = None,
    ) -> Path:
        """One QUBO file per group, a manifest mapping variables to modules and channels,
        and (for a whole-network energy such as the paper's) ``network.<format>``.

        ``whole_network=None`` writes the network file for a whole-network energy when its
        dense BQM fits (:data:`ising_qubo.lowrank.DENSE_BQM_LIMIT` variables) and
        warns otherwise; True insists (a ValueError for a network that large)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        suffix = "txt" if format == "gset" else format
        files = {}
        for k, group in enumerate(self.groups):
            filename = f"{k:03d}_{group.name.replace('/', '_')}.{suffix}"
            io.save(self.to_bqm(group.name, budget), directory / filename, format=format)
            files[group.name] = filename
        if whole_network is None:
            whole_network = not self.per_group
            if whole_network and self.num_variables > DENSE_BQM_LIMIT:
                warnings.warn(
                    f"{directory}: network.{suffix} not written: the whole-network "
                    f"BQM of {self.num_variables} variables would be dense; the "
                    f"per-group files and manifest.json are",
                    stacklevel=2,
                )
                whole_network = False
        if whole_network:
            filename = f"network.{suffix}"
            io.save(self.to_bqm(None, budget), directory / filename, format=format)
            files["__network__"] = filename
        with atomic_write(directory / MANIFEST, binary=False) as handle:
            json.dump(self.manifest(files), handle, indent=1)
        return directory


class _SharedBlocks(LowRankIsing):
    """A LowRankIsing whose blocks, already checked, and their CSR form (built once) are
    shared with the energy it came from: each multiplier the Lagrangian search tries
    re-checks and re-sorts none of ResNet-101's 10 M block entries."""

    def __init__(self, base: LowRankIsing, h, lowrank_u, lowrank_v, offset, csr) -> None:
        # the coefficients added to base's are finite sums of finite ones, the shapes base's
        self.h, self.blocks, self.labels = h, base.blocks, base.labels
        self.lowrank_u, self.lowrank_v, self.offset = lowrank_u, lowrank_v, offset
        self._csr = csr

    def csr(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self._csr


def _with_cost(
    energy: LowRankIsing, cost: LowRankIsing, multiplier: float, csr=None
) -> LowRankIsing:
    """energy + multiplier * cost (same variables; the cost has no blocks); ``csr``:
    ``energy.csr()`` when the caller has it (then the result shares it)."""
    h = energy.h + multiplier * cost.h
    u = np.vstack([energy.lowrank_u, multiplier * cost.lowrank_u])
    v = np.vstack([energy.lowrank_v, cost.lowrank_v])
    offset = energy.offset + multiplier * cost.offset
    if csr is not None:
        return _SharedBlocks(energy, h, u, v, offset, csr)
    return LowRankIsing(h, energy.blocks, u, v, offset, list(energy.labels))


def _condition_on_kept(model: LowRankIsing, free: np.ndarray) -> LowRankIsing:
    """``model`` on the variables ``free`` with every other spin fixed at +1 (kept).

    With s = a + b (a: the fixed spins, zero on ``free``; b: the free spins, zero elsewhere)
    1/2 s^T J s = 1/2 a^T J a + (J a).b + 1/2 b^T J b and
    (u.s)(v.s) = (u.a)(v.a) + (v.a)(u.b) + (u.a)(v.b) + (u.b)(v.b).
    """
    fixed = np.ones(model.num_variables)
    fixed[free] = 0.0
    position = np.full(model.num_variables, -1, dtype=np.int64)
    position[free] = np.arange(len(free))
    h = model.h[free].copy()
    offset = float(model.offset + model.h @ fixed)
    blocks = []
    for index, J in model.blocks:
        a = fixed[index]
        offset += 0.5 * float(a @ J @ a)
        inside = position[index] >= 0
        if inside.any():
            np.add.at(h, position[index[inside]], (J @ a)[inside])
            blocks.append((position[index[inside]], J[np.ix_(inside, inside)]))
    u_a, v_a = model.lowrank_u @ fixed, model.lowrank_v @ fixed
    u, v = model.lowrank_u[:, free], model.lowrank_v[:, free]
    h += v_a @ u + u_a @ v
    offset += float(u_a @ v_a)
    return LowRankIsing(h, blocks, u, v, offset, [model.labels[k] for k in free])


class _GroupBlock(LowRankIsing):
    """One group's block of a checked structured model, shared (not copied or checked
    again: the block of a 4,096-unit group is 134 MB)."""

    def __init__(self, h: np.ndarray, J: np.ndarray, offset: float, labels: list) -> None:
        n = len(h)
        self.h, self.blocks, self.labels = h, [(np.arange(n), J)], list(labels)
        self.lowrank_u, self.lowrank_v, self.offset = np.zeros((0, n)), np.zeros((0, n)), offset


def _is_exact(sampler: Any) -> bool:
    """Whether ``sampler`` (or the child a defaults wrapper binds) declares itself exact."""
    while getattr(sampler, "capability_source", None) is not None:
        sampler = sampler.capability_source
    return bool((getattr(sampler, "properties", None) or {}).get("exact"))


def _group_report(
    path: str, sampleset: dimod.SampleSet, seconds: float, time_limit: Any
) -> dict[str, Any]:
    """How one group was solved, for :attr:`PruningSolution.groups`."""
    report: dict[str, Any] = {"path": path, "seconds": seconds}
    status = sampleset.info.get("status")
    if status is not None:
        report["status"] = str(status)
    if time_limit is not None:
        report["time_limit"] = float(time_limit)
    return report


def _best_state(sampleset: dimod.SampleSet, labels: list) -> np.ndarray:
    best = sampleset.first.sample
    values = np.array([best[label] for label in labels], dtype=np.int8)
    if sampleset.vartype is dimod.SPIN:
        values = (values + 1) // 2
    return values
