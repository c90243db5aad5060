"""Pruning energies: plain arrays in, QUBO coefficients or structured Ising models out.

``ipruning`` is the paper's whole-network energy; ``redundancy`` is ours, per group;
``taylor`` is data-driven and whole-network, in the loss's unit for every layer. Each
is an :class:`Energy` object (:mod:`.base`), registered by name (:mod:`.registry`); a
user's energy registers the same way. No module here imports torch: the model adapter
extracts weights, feature maps and importances, so every formula can be checked against
a direct computation.

``ENERGIES`` is the tuple of registered names (the CLI's ``--energy`` choices), read when
asked for, so that it includes energies registered since this package was imported.
"""

from ising_qubo.pruning.energies.base import Energy, EnergyInputs, GroupCoefficients
from ising_qubo.pruning.energies.paper import (
    LayerTerms,
    PaperEnergy,
    channel_entropy,
    kl_matrix,
    network_energy,
    redundancy_affinity,
    reference_energy,
)
from ising_qubo.pruning.energies.redundancy import (
    SIMILARITIES,
    RedundancyEnergy,
    cosine_redundancy,
    group_energy,
    kl_redundancy,
    redundancy_coefficients,
)
from ising_qubo.pruning.energies.registry import (
    energy_names,
    get_energy,
    register_energy,
    unregister_energy,
)
from ising_qubo.pruning.energies.taylor import (
    DEFAULT_COUPLING,
    SCORES,
    GroupRedundancy,
    LayerActivity,
    TaylorEnergy,
    TaylorTerms,
)

register_energy(PaperEnergy.name, PaperEnergy())
register_energy(RedundancyEnergy.name, RedundancyEnergy())
register_energy(TaylorEnergy.name, TaylorEnergy())


def __getattr__(name: str):
    if name == "ENERGIES":
        return energy_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_COUPLING",
    "ENERGIES",
    "SCORES",
    "SIMILARITIES",
    "Energy",
    "EnergyInputs",
    "GroupCoefficients",
    "GroupRedundancy",
    "LayerActivity",
    "LayerTerms",
    "PaperEnergy",
    "RedundancyEnergy",
    "TaylorEnergy",
    "TaylorTerms",
    "channel_entropy",
    "cosine_redundancy",
    "energy_names",
    "get_energy",
    "group_energy",
    "kl_matrix",
    "kl_redundancy",
    "network_energy",
    "redundancy_affinity",
    "redundancy_coefficients",
    "reference_energy",
    "register_energy",
    "unregister_energy",
]
