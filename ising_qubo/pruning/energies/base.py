"""What the pruning problem needs from an energy, and what it hands one to build from.

An energy is an object, as Torch-Pruning's importances are: subclass :class:`Energy`,
register an instance under a name (:func:`~ising_qubo.pruning.energies.register_energy`)
and pass the name, or the instance itself, as ``PruningProblem.from_model(...,
energy=...)``. An energy has one of two shapes, and the problem stores and solves each
its own way:

* per group (``per_group = True``): :meth:`Energy.build` returns QUBO coefficients for
  every group, ``{group name: (linear (n,), quadratic (n, n))}`` with
  E_g(x) = linear.x + x^T quadratic x over the group's units (x = 1 keeps a unit). Groups
  are independent: each is solved as its own BQM, its budget a hard constraint or a
  penalty per group.
* whole network (``per_group = False``): :meth:`Energy.build` returns one
  :class:`~ising_qubo.lowrank.LowRankIsing` over every variable of the problem (labelled
  ``inputs.labels``), solved as one structured model (or one dense BQM).

No torch here: an energy reads the network through :class:`EnergyInputs`, numpy arrays
that the problem extracts from the model (:mod:`ising_qubo.pruning.energy_inputs`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ising_qubo.lowrank import LowRankIsing

if TYPE_CHECKING:  # the groups module imports torch
    from ising_qubo.pruning.groups import LayerChannels, UnitGroup

#: What a per-group energy builds: {group name: (linear (n,), quadratic (n, n))}
GroupCoefficients = dict[str, tuple[np.ndarray, np.ndarray]]


class EnergyInputs(Protocol):
    """The network as an energy sees it: groups, variable layout, options, arrays.

    An energy only reads them, so what an implementation computes (the groups, say) may be
    a read-only property."""

    @property
    def groups(self) -> Sequence[UnitGroup]:
        """The unit groups; ``group.layers[k]`` has ``name``, ``channels``, ``units``."""

    @property
    def order(self) -> Sequence[str]:
        """Names of the groups' layers in the order the forward pass runs them."""

    #: the problem's first variable of each group (its units follow in order)
    offsets: Mapping[str, int]

    @property
    def num_variables(self) -> int: ...

    labels: Sequence[str]
    #: the problem's options: importance kind, similarity kind, redundancy weight
    importance: str
    similarity: str
    redundancy_weight: float

    @property
    def importance_needs_data(self) -> bool:
        """Whether ``importance`` scores units from a labelled batch (data=(inputs,
        targets))."""

    def keep_count(self, group: UnitGroup) -> int | None:
        """Units of ``group`` the budget keeps; None without a budget."""

    def weight(self, layer: LayerChannels) -> np.ndarray:
        """The layer's weights of its ``channels`` (rows in that order), float64, finite."""

    def feature_maps(self, layers: Sequence[LayerChannels]) -> dict[str, np.ndarray]:
        """Batch-averaged outputs (len(channels), ...) of ``layers``, by layer name, from
        one forward pass on the data batch (the example inputs without one)."""

    def importance_scores(self) -> dict[str, np.ndarray]:
        """The ``importance`` of every unit, by group name (larger: more worth keeping)."""

    def loss_saliency(
        self, kind: str = "taylor", loss: Callable[..., Any] | None = None
    ) -> dict[str, np.ndarray]:
        """By group name, how much the loss of the labelled data batch depends on each
        unit, in the loss's own unit for every layer: ``"taylor"`` |mean_n s_n|,
        ``"fisher"`` mean_n s_n^2, s_n = sum over the unit's parameters of w * dL_n/dw
        (:func:`ising_qubo.pruning.energy_inputs.loss_saliency`); ``loss(outputs,
        targets)`` is the batch's mean loss, cross-entropy when None. A ValueError
        without data=(inputs, targets)."""


class Energy(ABC):
    """A pruning energy (see the module docstring for the two shapes)."""

    #: the name it is registered under; the problem records it (energy_name, manifest)
    name: str = ""
    #: True: independent coefficients per group; False: one whole-network LowRankIsing
    per_group: bool = True

    def needs_data(self, inputs: EnergyInputs) -> bool:
        """Whether :meth:`build` needs a data batch (the problem refuses data=None)."""
        return False

    @abstractmethod
    def build(self, inputs: EnergyInputs) -> GroupCoefficients | LowRankIsing:
        """The energy of the network's current weights: coefficients per group when
        ``per_group``, else a LowRankIsing over ``inputs.labels``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
