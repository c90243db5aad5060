"""Pruning energies: plain arrays in, QUBO coefficients or structured Ising models out.

``ipruning`` is the paper's whole-network energy; ``redundancy`` is ours, per group.
Neither module imports torch: the model adapter extracts weights, feature maps and
importances, so every formula can be checked against a direct computation.
"""

from ising_qubo.pruning.energies.paper import (
    LayerTerms,
    channel_entropy,
    kl_matrix,
    network_energy,
    redundancy_affinity,
    reference_energy,
)
from ising_qubo.pruning.energies.redundancy import (
    SIMILARITIES,
    cosine_redundancy,
    group_energy,
    kl_redundancy,
    redundancy_coefficients,
)

ENERGIES = ("ipruning", "redundancy")

__all__ = [
    "ENERGIES",
    "SIMILARITIES",
    "LayerTerms",
    "channel_entropy",
    "cosine_redundancy",
    "group_energy",
    "kl_matrix",
    "kl_redundancy",
    "network_energy",
    "redundancy_affinity",
    "redundancy_coefficients",
    "reference_energy",
]
