"""A whole-network budget: the exact cost of the really pruned model as a function of how
many units each group keeps, and the constraint that it stays within ``keep`` of the
dense model's cost.

Removing channels shrinks whole tensor dimensions: a weight whose output dimension
belongs to group g and whose input dimension to group h keeps size * (k_g/n_g) * (k_h/n_h)
of its entries when the groups keep k_g of n_g and k_h of n_h units. Summed over the
network (:meth:`~ising_qubo.pruning.groups.ModelGroups.cost_table`) the cost is a
quadratic function of the kept counts::

    cost(k) = c0 + sum_g a_g k_g + sum_(g <= h) b_gh k_g k_h,    a, b >= 0

``by="params"`` counts parameters; ``by="macs"`` what Torch-Pruning's counter
(:func:`~ising_qubo.pruning.groups.count_macs`) counts: the conv/linear weights from the
same table, plus biases, normalisations, activations and pooling, each proportional to
the kept share of the channels it sees (measured once by a probe forward pass, see
:func:`other_macs`). Both are exact for the surgery; the tests compare them with really
pruned networks. (The parameter table assumes that each tensor dimension is shrunk by one
group, as in ResNets, VGG, AlexNet, MobileNet; a layer fed by a concatenation of several
groups, as in SqueezeNet, is approximate, as it is for the uniform budget.)

``by="latency"`` is measured, not counted: the network's layers are timed on its device
and example inputs and fitted by a cost of the same form
(:func:`~ising_qubo.pruning.latency.latency_model`). It is a model, not exact: the
pruned network's real latency is checked with
:func:`~ising_qubo.pruning.latency.measured_latency_fraction`.

:class:`GlobalBudget` holds the cost, the limit ``keep * cost(n)`` and the floors
``f_g = max(1, ceil(min_keep * n_g))``, and gives the cost in the forms solvers take:
:meth:`GlobalBudget.as_count_budget` for CP-SAT (``Capability.COUNT_BUDGET``), and
:meth:`GlobalBudget.unit_terms`, the same quadratic over the unit variables (x = 1 keeps a
unit, k_g = 1_g.x), for a Lagrangian penalty: b_gh k_g k_h is the rank-one term
b_gh (1_g.x)(1_h.x).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ising_qubo.pruning.groups import PRUNABLE_TYPES, ModelGroups, _forward, modes_kept
from ising_qubo.pruning.latency import LatencyModel, latency_model

#: what a pruning problem's budget can be: the same fraction in every group, or one
#: constraint over the whole network
BUDGETS = ("uniform", "global")
#: what ``keep`` is a fraction of: parameters, multiply-accumulates, measured latency
#: (latency: whole-network budgets only)
KEEP_BY = ("params", "macs", "latency")

# costs are sums of ~10^3 float terms of size <= the dense cost: a budget met up to this
# fraction of the dense cost is met (the real counts are integers)
_RELATIVE_TOLERANCE = 1e-11


def check_budget_mode(budget: Any) -> str:
    if budget not in BUDGETS:
        raise ValueError(f"budget must be one of {', '.join(BUDGETS)}, got {budget!r}")
    return str(budget)


def check_min_keep(min_keep: Any) -> float:
    """``min_keep`` as a float in [0, 1); a ValueError naming the value otherwise."""
    try:
        value = float(min_keep)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(min_keep, bool) or not 0.0 <= value < 1.0:
        raise ValueError(f"min_keep must be a fraction in [0, 1), got {min_keep!r}")
    return value


class GlobalBudget:
    """cost(k) <= keep * cost(n) and k_g >= floors[g], over the kept counts k of G groups.

    ``quadratic`` (G, G): b_gh for g <= h (a lower triangle is folded onto the upper one).
    Build it from a network with :meth:`from_groups`.
    """

    def __init__(
        self,
        names: Sequence[str],
        sizes: Sequence[int],
        constant: float,
        linear: Sequence[float] | np.ndarray,
        quadratic: np.ndarray,
        keep: float,
        by: str = "params",
        min_keep: float = 0.1,
    ) -> None:
        self.names = list(names)
        self.sizes = np.asarray(sizes, dtype=np.int64)
        count = len(self.sizes)
        if len(self.names) != count or count == 0:
            raise ValueError(f"a budget needs one name per group, got {len(self.names)} names")
        if np.any(self.sizes < 1):
            raise ValueError(f"group sizes must be positive, got {self.sizes.tolist()}")
        if isinstance(keep, bool) or not 0.0 < float(keep) <= 1.0:
            raise ValueError(f"keep must be a fraction in (0, 1], got {keep!r}")
        if by not in KEEP_BY:
            raise ValueError(f"keep_by must be one of {', '.join(KEEP_BY)}, got {by!r}")
        self.keep = float(keep)
        self.by = by
        #: how a latency cost was measured (set by :meth:`from_groups`; None otherwise)
        self.latency_model: LatencyModel | None = None
        self.min_keep = check_min_keep(min_keep)
        self.constant = float(constant)
        self.linear = np.asarray(linear, dtype=float).reshape(count)
        quadratic = np.asarray(quadratic, dtype=float).reshape(count, count)
        self.quadratic = np.triu(quadratic) + np.triu(quadratic.T, 1)
        coefficients = np.concatenate([[self.constant], self.linear, self.quadratic.ravel()])
        if not np.all(np.isfinite(coefficients)) or np.any(coefficients < 0):
            raise ValueError("cost coefficients must be finite and >= 0")
        # cost(k) = c0 + a.k + 1/2 k^T S k with S symmetric (diagonal 2 b_gg)
        self._symmetric = self.quadratic + self.quadratic.T
        self.dense = float(self.cost(self.sizes))
        if self.dense <= 0:
            raise ValueError("the dense model costs nothing: no budget can be set on it")
        self.limit = self.keep * self.dense
        self.tolerance = _RELATIVE_TOLERANCE * self.dense
        self.floors = np.minimum(
            self.sizes,
            [max(1, math.ceil(self.min_keep * n - 1e-9)) for n in self.sizes],
        ).astype(np.int64)
        least = float(self.cost(self.floors))
        if least > self.limit + self.tolerance:
            raise ValueError(
                f"min_keep={self.min_keep}: the floors alone (at least max(1, "
                f"ceil(min_keep * n)) units per group) keep {least / self.dense:.4f} of "
                f"the dense model's {by}, above keep={self.keep}; lower min_keep or raise keep"
            )

    @classmethod
    def from_groups(
        cls,
        groups: ModelGroups,
        keep: float,
        by: str = "params",
        min_keep: float = 0.1,
        latency_options: Mapping[str, Any] | None = None,
    ) -> GlobalBudget:
        """The budget of a network's groups (``by``: one of ``KEEP_BY``). ``by="latency"``
        measures the model now (:func:`~ising_qubo.pruning.latency.latency_model`, which
        takes ``latency_options``: ``repeats``, ``max_seconds``, ``timer``)."""
        if by not in KEEP_BY:
            raise ValueError(f"keep_by must be one of {', '.join(KEEP_BY)}, got {by!r}")
        measured = None
        if by == "latency":
            measured = latency_model(groups, **dict(latency_options or {}))
            constant, linear, quadratic = measured.terms()
        else:
            constant, linear, quadratic = network_cost(groups, by)
        budget = cls(
            [g.name for g in groups.groups],
            [g.size for g in groups.groups],
            constant,
            linear,
            quadratic,
            keep,
            by,
            min_keep,
        )
        budget.latency_model = measured
        return budget

    def uniform_counts(self) -> dict[str, int]:
        """The counts when every group keeps the same fraction of its units (rounded, at
        least 1), the largest fraction whose cost stays within the limit (floors aside):
        what :func:`~ising_qubo.pruning.groups.uniform_keep_counts` gives for a counted
        cost, for a cost only the budget knows (latency)."""

        def counts_at(ratio: float) -> np.ndarray:
            return np.clip(np.rint(ratio * self.sizes), 1, self.sizes).astype(np.int64)

        low, high = 0.0, 1.0
        if self.within_limit(self.cost(counts_at(high))):
            low = high
        for _ in range(40 if low < high else 0):
            middle = (low + high) / 2
            if self.within_limit(self.cost(counts_at(middle))):
                low = middle
            else:
                high = middle
        return {name: int(k) for name, k in zip(self.names, counts_at(low))}

    # ----- the cost -------------------------------------------------------------------
    def counts(self, counts: Mapping[str, int] | Sequence[int] | np.ndarray) -> np.ndarray:
        """Kept counts as an int array in group order (a mapping must name every group)."""
        if isinstance(counts, Mapping):
            missing = [name for name in self.names if name not in counts]
            if missing:
                raise ValueError(f"counts for groups {missing[:3]} missing")
            counts = [counts[name] for name in self.names]
        array = np.asarray(counts)
        if array.shape[-1:] != (len(self.names),):
            raise ValueError(f"counts must have one entry per group ({len(self.names)})")
        return array.astype(np.int64)

    def cost(self, counts: Mapping[str, int] | Sequence[int] | np.ndarray) -> Any:
        """The cost of the pruned model (a float; an array for rows of counts)."""
        k = self.counts(counts).astype(float)
        value = (
            self.constant
            + k @ self.linear
            + 0.5 * np.einsum("...g,gh,...h->...", k, self._symmetric, k)
        )
        return float(value) if np.ndim(value) == 0 else value

    def fraction(self, counts: Mapping[str, int] | Sequence[int] | np.ndarray) -> float:
        """cost / dense cost."""
        return float(self.cost(counts)) / self.dense

    def meets(self, counts: Mapping[str, int] | Sequence[int] | np.ndarray) -> bool:
        """Whether ``counts`` stay within the limit, the floors and the group sizes."""
        k = self.counts(counts)
        return bool(
            np.all(k >= self.floors)
            and np.all(k <= self.sizes)
            and self.cost(k) <= self.limit + self.tolerance
        )

    def within_limit(self, cost: float) -> bool:
        return cost <= self.limit + self.tolerance

    def drop_savings(self, counts: np.ndarray) -> np.ndarray:
        """cost(k) - cost(k - e_g) for every group g: what dropping one unit saves."""
        k = np.asarray(counts, dtype=float)
        return self.linear + self._symmetric @ k - np.diag(self.quadratic)

    def add_costs(self, counts: np.ndarray) -> np.ndarray:
        """cost(k + e_g) - cost(k) for every group g: what adding one unit costs."""
        k = np.asarray(counts, dtype=float)
        return self.linear + self._symmetric @ k + np.diag(self.quadratic)

    # ----- forms for solvers -----------------------------------------------------------
    def as_count_budget(self, labels: Sequence[Sequence[Any]]) -> dict:
        """The ``count_budget`` parameter of a sampler with ``Capability.COUNT_BUDGET``
        (see :mod:`ising_qubo.solvers.count_budget`): ``labels[g]`` are group g's variables."""
        if len(labels) != len(self.names):
            raise ValueError(f"labels must list one group per budget group ({len(self.names)})")
        rows, cols = np.nonzero(self.quadratic)
        return {
            "groups": [list(group) for group in labels],
            "constant": self.constant,
            "linear": self.linear.tolist(),
            "pairs": [(int(g), int(h), float(self.quadratic[g, h])) for g, h in zip(rows, cols)],
            "limit": self.limit,
            "floors": self.floors.tolist(),
        }

    def unit_terms(
        self, index: Sequence[np.ndarray], num_variables: int
    ) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]], float]:
        """The cost over binary unit variables x (group g's variables ``index[g]``):
        (linear (n,), [(p, q), ...], constant) with cost = linear.x + sum (p.x)(q.x) +
        constant, one rank-one term per group: p = 1_g, q = sum_(h >= g) b_gh 1_h.
        :meth:`~ising_qubo.lowrank.LowRankIsing.from_binary` takes them as they are."""
        if len(index) != len(self.names):
            raise ValueError(f"index must list one group per budget group ({len(self.names)})")
        linear = np.zeros(num_variables)
        indicators = []
        for g, variables in enumerate(index):
            linear[variables] = self.linear[g]
            ones = np.zeros(num_variables)
            ones[variables] = 1.0
            indicators.append(ones)
        terms = []
        for g in range(len(self.names)):
            row = self.quadratic[g]
            if not row.any():
                continue
            q = sum(float(row[h]) * indicators[h] for h in np.flatnonzero(row))
            terms.append((indicators[g], np.asarray(q, dtype=float)))
        return linear, terms, self.constant

    def report(self, counts: Mapping[str, int] | Sequence[int] | np.ndarray) -> dict:
        """What a run records: the budget asked for and the one met (fractions of dense)."""
        cost = float(self.cost(counts))
        return {
            "mode": "global",
            "by": self.by,
            "asked": self.keep,
            "met": cost / self.dense,
            "cost": cost,
            "limit": self.limit,
            "dense": self.dense,
            "min_keep": self.min_keep,
        }


# ----- the cost of a network -----------------------------------------------------------
def network_cost(groups: ModelGroups, by: str = "params") -> tuple[float, np.ndarray, np.ndarray]:
    """(c0, a (G,), b (G, G) upper-triangular) of the network's exact cost (module
    docstring): the cost table's tensors, plus for MACs everything else the counter counts.
    ``by="latency"``: the fitted model of a measurement (:func:`latency_model`, defaults)."""
    if by == "latency":
        return latency_model(groups).terms()
    costs, shrunk = groups.cost_table(by)
    sizes = np.array([g.size for g in groups.groups], dtype=float)
    count = len(sizes)
    out, inp = shrunk[:, 0], shrunk[:, 1]
    linear = np.zeros(count)
    quadratic = np.zeros((count, count))
    constant = float(costs[(out < 0) & (inp < 0)].sum())
    for side, other in ((out, inp), (inp, out)):
        alone = (side >= 0) & (other < 0)
        np.add.at(linear, side[alone], costs[alone] / sizes[side[alone]])
    both = (out >= 0) & (inp >= 0)
    low, high = np.minimum(out[both], inp[both]), np.maximum(out[both], inp[both])
    np.add.at(quadratic, (low, high), costs[both] / (sizes[low] * sizes[high]))
    if by == "macs":
        extra_constant, extra_linear = other_macs(groups)
        constant += extra_constant
        linear += extra_linear
    return constant, linear, quadratic


def other_macs(groups: ModelGroups) -> tuple[float, np.ndarray]:
    """What :func:`~ising_qubo.pruning.groups.count_macs` counts beyond the conv/linear
    weights of the cost table, as (constant, per-unit cost of each group).

    Torch-Pruning's counter adds, per call of a module it knows: the biases of convs and
    linears (proportional to the kept output channels), and for normalisations,
    activations, pooling, upsampling the number of elements they see (proportional to
    the kept channels of their input). Which groups' channels a call sees is measured by
    one probe forward pass of G + 1 copies of the first example: copy 1 + g carries NaN
    in group g's channels (written into the outputs of the group's layers; every conv,
    linear and grouped layer first clears the NaN it mixed into other channels), so the
    NaN share of a call's tensor in copy 1 + g is group g's share of its channels.
    Calls are matched to a plain pass over the example inputs in call order; a model
    whose calls differ between the two passes is refused (RuntimeError).
    """
    from torch_pruning.utils.op_counter import MODULES_MAPPING

    count = len(groups.groups)
    sizes = np.array([g.size for g in groups.groups], dtype=float)
    model = groups.model
    counted = [m for m in model.modules() if type(m) in MODULES_MAPPING]
    if not counted:
        return 0.0, np.zeros(count)
    inputs = groups.example_inputs
    batch = _counter_batch(inputs)

    # pass 1: what the counter counts per call, beyond the table's weights
    flops: list[tuple[nn.Module, str, float]] = []

    def count_call(module: nn.Module, args: tuple, output: Any) -> None:
        if not args or not torch.is_tensor(args[0]) or not torch.is_tensor(output):
            return
        if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
            bias = getattr(module, "bias", None)
            if bias is None:
                value = 0.0
            elif isinstance(module, nn.Linear):
                value = float(output.shape[-1])  # counted once per call, not per example
            else:
                value = float(output[0].numel() * len(output))  # out channels x positions
            flops.append((module, "out", value / batch))
        else:
            flops.append((module, "in", _counter_flops(module, args, output) / batch))

    with _hooked(model, {m: count_call for m in counted}):
        _forward(model, inputs)

    # pass 2: which groups' channels each call sees
    marks: dict[nn.Module, list[tuple[int, list[int]]]] = {}
    for g, module, channels in groups.output_channels():
        marks.setdefault(module, []).append((g, channels))
    for module in model.modules():
        if isinstance(module, PRUNABLE_TYPES):
            marks.setdefault(module, [])
    shares: list[tuple[nn.Module, np.ndarray]] = []

    def mark(module: nn.Module, args: tuple, output: Any) -> Any:
        if not torch.is_tensor(output) or not output.is_floating_point():
            return None
        marked = torch.where(torch.isnan(output), torch.zeros_like(output), output)
        for g, channels in marks[module]:
            index = torch.as_tensor(channels, dtype=torch.long, device=output.device)
            marked[1 + g, index] = float("nan")
        return marked

    def record(side: str) -> Any:
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            if not args or not torch.is_tensor(args[0]) or not torch.is_tensor(output):
                return
            tensor = output if side == "out" else args[0]
            nan = torch.isnan(tensor.detach()).reshape(len(tensor), -1).double().mean(dim=1)
            shares.append((module, nan.cpu().numpy()))

        return hook

    recorders = {
        m: record("out" if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)) else "in")
        for m in counted
    }
    probe = _first_example_repeated(inputs, count + 1)
    with _hooked(model, {m: mark for m in marks}, recorders):
        _forward(model, probe)

    if [m for m, _, _ in flops] != [m for m, _ in shares]:
        raise RuntimeError(
            "the model calls its layers differently on the example inputs and on the probe "
            "batch; its MACs cannot be modelled (use keep_by='params')"
        )
    constant, linear = 0.0, np.zeros(count)
    for (module, _side, value), (_, nan) in zip(flops, shares):
        if nan[0] > 0:
            raise ValueError(
                f"module {type(module).__name__} sees NaN on the example inputs: the MACs "
                f"of the pruned model cannot be modelled"
            )
        share = nan[1:]
        rest = 1.0 - share.sum()
        if rest < -1e-9:
            raise RuntimeError("overlapping channel groups: the MACs cannot be modelled")
        constant += value * max(rest, 0.0)
        linear += value * share / sizes
    return constant, linear


def _counter_batch(inputs: Any) -> int:
    """The batch size Torch-Pruning's counter divides by: the first positional input's
    length (1 when the inputs are keywords)."""
    if torch.is_tensor(inputs):
        return max(len(inputs), 1) if inputs.dim() else 1
    if isinstance(inputs, (tuple, list)) and inputs:
        first = inputs[0]
        return max(len(first), 1) if hasattr(first, "__len__") else 1
    return 1


def _counter_flops(module: nn.Module, args: tuple, output: Any) -> float:
    """What Torch-Pruning's counter adds for this call (its own hook, run on the side)."""
    from torch_pruning.utils.op_counter import MODULES_MAPPING

    attributes = module.__dict__  # the hook adds to module.__flops__: a plain attribute
    missing = object()
    saved = attributes.get("__flops__", missing)
    attributes["__flops__"] = 0
    try:
        MODULES_MAPPING[type(module)](module, args, output)
        return float(attributes["__flops__"])
    finally:
        if saved is missing:
            del attributes["__flops__"]
        else:
            attributes["__flops__"] = saved


def _first_example_repeated(inputs: Any, copies: int) -> Any:
    if torch.is_tensor(inputs):
        return inputs[:1].repeat(copies, *([1] * (inputs.dim() - 1)))
    if isinstance(inputs, Mapping):
        return {key: _first_example_repeated(value, copies) for key, value in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(_first_example_repeated(value, copies) for value in inputs)
    return inputs


@contextlib.contextmanager
def _hooked(model: nn.Module, *hooks: Mapping[nn.Module, Any]) -> Iterator[None]:
    """Forward hooks on modules for one eval-mode, no-grad pass; modes and hooks restored
    whatever happens. Each mapping's hooks are added in turn, so a later mapping's hook
    sees what an earlier one's returned."""
    handles = [
        module.register_forward_hook(hook) for mapping in hooks for module, hook in mapping.items()
    ]
    try:
        with modes_kept(model), torch.no_grad():
            model.eval()
            yield
    finally:
        for handle in handles:
            handle.remove()


__all__ = [
    "BUDGETS",
    "KEEP_BY",
    "GlobalBudget",
    "check_budget_mode",
    "check_min_keep",
    "network_cost",
    "other_macs",
]
