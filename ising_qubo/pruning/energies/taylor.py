"""A data-driven whole-network energy ("taylor"): what each unit is worth to the loss, in
one unit for every layer, so that a whole-network budget can trade one layer's units
against another's.

Over the problem's D binary variables (x_u = 1 keeps unit u), with groups g of tied
channels and the groups' layers l in the order the forward pass runs them:

    E(x) = - sum_u I_u x_u                                    importance   (linear)
           + sum_g rho_g sum_{i<j in g} r_ij x_i x_j          redundancy   (quadratic, in-group)
           - sum_l c_l (E~_l . x_l) (1 . x_{l+1})             activity     (rank 1, between layers)

* I_u >= 0 is the unit's loss saliency on a labelled calibration batch
  (:func:`~ising_qubo.pruning.energy_inputs.loss_saliency`). With s_n(u) the sum over all
  the unit's parameters (the filters and biases of every tied layer, its BatchNorm scale
  and shift) of w * dL_n/dw, removing the unit changes example n's loss by -s_n(u) to
  first order. ``score="taylor"`` (the default) takes I_u = |mean_n s_n(u)| (loss units:
  nats for cross-entropy); ``score="fisher"`` takes I_u = mean_n s_n(u)^2 (squared loss
  units). No per-group rescaling: a unit of a wide late layer and one of the stem are
  measured in the same unit, which is what a whole-network budget needs to compare them.
  Keeping a unit lowers the energy by its saliency.
* r_ij in [0, 1] is the redundancy of units i and j of one group by the problem's
  ``similarity`` (as the ``redundancy`` energy: |cosine| of the concatenated filters of the
  group's layers, or one minus the paper's KL affinity). It is put in the same unit by

      rho_g = redundancy_weight * mean_{u in g} I_u / max(k_g - 1, 1),

  k_g the units the budget keeps in the group (its size without a per-group budget). A
  kept unit pays at most r = 1 against each of the other k_g - 1 kept units, so its whole
  redundancy penalty is at most ``redundancy_weight`` times the group's mean saliency: with
  weight 1, being an exact copy of every other kept unit costs a typical unit of its group
  about its importance. Measured against the group's own mean (not the network's), a
  redundant pair costs little where the whole layer matters little to the loss.
* E~_l is the paper's normalised entropy of layer l's batch-averaged feature maps
  (:func:`~ising_qubo.pruning.energies.paper.channel_entropy`, on the same calibration
  batch); keeping informative units of layer l is rewarded in proportion to how much of
  layer l+1 is kept, as in the paper's inter-layer activity term (without its -1 shift
  and compensating field, which only set the number of kept units: the budget does). Its
  strength

      c_l = coupling * mean_u I_u / max(n_l, n_{l+1}),

  n_l the channels of layer l, bounds the reward any unit gets from one pair of layers by
  ``coupling`` times the network's mean saliency (E~ <= 1, at most max(n_l, n_{l+1})
  partners): the entropies are unitless, the mean saliency gives them the energy's unit.

Every term is linear in the saliencies, so scaling the loss by a constant a scales the
whole energy by a (a^2 for Fisher) and leaves its minimisers unchanged: the energy has one
unit, the loss's. The saliencies follow the function the network computes, not how a
layer is parametrised: scaling a conv's filters up and its consumer's weights down by the
same factor leaves them unchanged (a filter norm would grow).

:class:`TaylorTerms` holds the three terms as arrays (and evaluates each for a state);
:class:`TaylorEnergy` computes them from a network, registered as ``"taylor"``. The
``redundancy_weight`` and ``similarity`` are the problem's options; the score, the
coupling strength and the loss are the energy's (``TaylorEnergy(score="fisher",
coupling=0.2)`` passed as ``energy=``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ising_qubo.lowrank import LowRankIsing
from ising_qubo.pruning.energies.base import Energy, EnergyInputs
from ising_qubo.pruning.energies.paper import channel_entropy
from ising_qubo.pruning.energies.redundancy import RedundancyEnergy

#: the unit scores the energy can use as its linear term
SCORES = ("taylor", "fisher")
#: default strength of the activity coupling, in units of the network's mean saliency
DEFAULT_COUPLING = 0.1


@dataclass
class GroupRedundancy:
    """One group's share of the redundancy term: its problem variables (in unit order),
    r (n, n) and the k_g that scales it."""

    name: str
    index: np.ndarray
    redundancy: np.ndarray
    keep: int


@dataclass
class LayerActivity:
    """One layer's share of the activity coupling: the problem variable of each of its
    channels (tied channels of several layers share one) and their entropies E~."""

    name: str
    units: np.ndarray
    entropy: np.ndarray


@dataclass
class TaylorTerms:
    """The three terms of the ``taylor`` energy as arrays (see the module docstring).

    ``importance`` is I (D,); ``groups`` cover the variables they name; ``layers`` are in
    execution order (consecutive entries are coupled; empty: no coupling term)."""

    importance: np.ndarray
    groups: list[GroupRedundancy]
    layers: list[LayerActivity]
    redundancy_weight: float = 1.0
    coupling: float = DEFAULT_COUPLING

    def __post_init__(self) -> None:
        self.importance = np.asarray(self.importance, dtype=np.float64)
        if not np.all(np.isfinite(self.importance)) or np.any(self.importance < 0):
            raise ValueError("importance must be finite and >= 0")
        if not (np.isfinite(self.redundancy_weight) and self.redundancy_weight >= 0):
            raise ValueError(f"redundancy_weight must be >= 0, got {self.redundancy_weight}")
        if not (np.isfinite(self.coupling) and self.coupling >= 0):
            raise ValueError(f"coupling must be >= 0, got {self.coupling}")
        size = len(self.importance)
        for group in self.groups:
            n = len(group.index)
            if group.redundancy.shape != (n, n):
                raise ValueError(
                    f"group {group.name!r}: redundancy of shape {group.redundancy.shape} "
                    f"for {n} units"
                )
            if not np.all(np.isfinite(group.redundancy)):
                raise ValueError(f"group {group.name!r}: NaN or infinite redundancy")
            if n and (group.index.min() < 0 or group.index.max() >= size):
                raise ValueError(f"group {group.name!r}: variable index out of range [0, {size})")
        for layer in self.layers:
            if layer.entropy.shape != layer.units.shape:
                raise ValueError(
                    f"layer {layer.name!r}: {len(layer.entropy)} entropies for "
                    f"{len(layer.units)} channels"
                )

    @property
    def mean_importance(self) -> float:
        return float(self.importance.mean()) if len(self.importance) else 0.0

    def redundancy_strength(self, group: GroupRedundancy) -> float:
        """rho_g = redundancy_weight * mean_{u in g} I_u / max(k_g - 1, 1)."""
        mean = float(self.importance[group.index].mean()) if len(group.index) else 0.0
        return self.redundancy_weight * mean / max(group.keep - 1, 1)

    def coupling_strength(self, k: int) -> float:
        """c_l of the pair (layers[k], layers[k + 1]):
        coupling * mean_u I_u / max(n_l, n_{l+1})."""
        widths = max(len(self.layers[k].units), len(self.layers[k + 1].units), 1)
        return self.coupling * self.mean_importance / widths

    def model(self, labels: Sequence[Hashable] | None = None) -> LowRankIsing:
        """The energy as a :class:`LowRankIsing`: one dense block per group, one rank-1
        term per pair of consecutive layers, never a dense D x D matrix."""
        size = len(self.importance)
        blocks = []
        for group in self.groups:
            sym = (group.redundancy + group.redundancy.T) / 2
            blocks.append((group.index, np.triu(sym, 1) * self.redundancy_strength(group)))
        lowrank = []
        for k in range(len(self.layers) - 1):
            strength = self.coupling_strength(k)
            if strength == 0.0:
                continue
            earlier, later = self.layers[k], self.layers[k + 1]
            entropy = np.zeros(size)
            np.add.at(entropy, earlier.units, earlier.entropy)
            count = np.zeros(size)
            np.add.at(count, later.units, 1.0)
            lowrank.append((-strength * entropy, count))
        return LowRankIsing.from_binary(-self.importance, blocks, lowrank, 0.0, labels)

    def breakdown(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Each term's energy for a (k, D) or (D,) array of 0/1 states (they add up to
        the energy): what a report shows to say which term decided a state."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        redundancy = np.zeros(len(x))
        for group in self.groups:
            part = x[:, group.index]
            sym = np.triu((group.redundancy + group.redundancy.T) / 2, 1)
            redundancy += self.redundancy_strength(group) * np.einsum(
                "ki,ij,kj->k", part, sym, part
            )
        activity = np.zeros(len(x))
        for k in range(len(self.layers) - 1):
            earlier, later = self.layers[k], self.layers[k + 1]
            activity -= (
                self.coupling_strength(k)
                * (x[:, earlier.units] @ earlier.entropy)
                * x[:, later.units].sum(axis=1)
            )
        return {
            "importance": -(x @ self.importance),
            "redundancy": redundancy,
            "activity": activity,
        }


class TaylorEnergy(Energy):
    """The data-driven energy over the whole network, registered as ``"taylor"``.

    ``score``: ``"taylor"`` (default) or ``"fisher"`` (see the module docstring);
    ``coupling``: strength of the activity term (0 leaves it out and skips its forward
    pass); ``loss(outputs, targets)``: the calibration batch's mean loss (cross-entropy
    when None; targets are class labels either way). Needs data=(inputs, targets).
    """

    name = "taylor"
    per_group = False

    def __init__(
        self,
        score: str = "taylor",
        coupling: float = DEFAULT_COUPLING,
        loss: Callable[..., Any] | None = None,
    ) -> None:
        if score not in SCORES:
            raise ValueError(f"unknown score {score!r}; choose one of {', '.join(SCORES)}")
        coupling = float(coupling)
        if not (np.isfinite(coupling) and coupling >= 0):
            raise ValueError(f"coupling must be a finite number >= 0, got {coupling}")
        if loss is not None and not callable(loss):
            raise ValueError(f"loss must be a callable loss(outputs, targets), got {loss!r}")
        self.score = score
        self.coupling = coupling
        self.loss = loss

    def needs_data(self, inputs: EnergyInputs) -> bool:
        return True

    def build(self, inputs: EnergyInputs) -> LowRankIsing:
        return self.terms(inputs).model(inputs.labels)

    def terms(self, inputs: EnergyInputs) -> TaylorTerms:
        """The three terms of the network's current weights on the calibration batch."""
        importance = self.importance(inputs)
        redundancy = RedundancyEnergy()
        groups = []
        for group in inputs.groups:
            start = inputs.offsets[group.name]
            groups.append(
                GroupRedundancy(
                    group.name,
                    np.arange(start, start + group.size),
                    redundancy.group_redundancy(inputs, group),
                    inputs.keep_count(group) or group.size,
                )
            )
        layers = self.layer_activity(inputs) if self.coupling > 0 else []
        return TaylorTerms(importance, groups, layers, inputs.redundancy_weight, self.coupling)

    def importance(self, inputs: EnergyInputs) -> np.ndarray:
        """I (D,): every unit's score, placed at its problem variable."""
        try:
            scores = inputs.loss_saliency(self.score, self.loss)
        except ValueError as error:
            raise ValueError(f"energy {self.name!r}: {error}") from error
        importance = np.zeros(inputs.num_variables)
        for group in inputs.groups:
            values = np.asarray(scores[group.name], dtype=np.float64)
            if not np.all(np.isfinite(values)):
                layers = ", ".join(repr(layer.name) for layer in group.layers)
                raise ValueError(
                    f"energy {self.name!r}, group {group.name!r}: the {self.score} score "
                    f"is NaN or infinite (NaN/inf in the weights, the gradients or the "
                    f"calibration batch of its layers {layers})"
                )
            start = inputs.offsets[group.name]
            importance[start : start + group.size] = values
        if not importance.any():
            raise ValueError(
                f"energy {self.name!r}: every unit's {self.score} score is 0 on the "
                f"calibration batch (the loss does not depend on the prunable units "
                f"there): use another batch or another energy"
            )
        return importance

    def layer_activity(self, inputs: EnergyInputs) -> list[LayerActivity]:
        """Every layer of the groups in execution order, with its channels' E~."""
        layers = [(layer, group) for group in inputs.groups for layer in group.layers]
        rank = {name: i for i, name in enumerate(inputs.order)}
        layers.sort(key=lambda item: rank[item[0].name])
        maps = inputs.feature_maps([layer for layer, _ in layers])
        return [
            LayerActivity(
                layer.name,
                inputs.offsets[group.name] + np.asarray(layer.units, dtype=np.int64),
                channel_entropy(maps.pop(layer.name)),
            )
            for layer, group in layers
        ]

    def __repr__(self) -> str:
        return f"TaylorEnergy(score={self.score!r}, coupling={self.coupling!r})"
