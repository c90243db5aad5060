"""Our per-group energy ("redundancy"): keep important units, avoid keeping redundant pairs.

For one group of n units with importances a_i (scaled so max a = 1) and pairwise
redundancies r_ij in [0, 1]:

    E(x) = -sum_i a_i x_i + (weight / (k - 1)) * sum_{i<j} r_ij x_i x_j

k is the number of units the budget keeps (n when there is none): dividing by k - 1
makes one unit's total redundancy penalty, summed over the other kept units, comparable
with one unit's importance, so ``weight`` = 1 balances the two for any budget. The budget
itself (keep exactly k units) is added by the problem: a hard constraint for CP-SAT, a
provably safe penalty for heuristic solvers.

:class:`RedundancyEnergy` builds it for every group of a network: importances from the
problem's ``importance`` option, redundancies by its ``similarity`` (``cosine`` of the
concatenated filters of the group's layers, or ``kl``: one minus the paper's affinity of
the root layer's filters).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ising_qubo.pruning.energies.base import Energy, EnergyInputs, GroupCoefficients
from ising_qubo.pruning.energies.paper import redundancy_affinity

if TYPE_CHECKING:
    from ising_qubo.pruning.groups import UnitGroup

SIMILARITIES = ("cosine", "kl")

#: cosine similarities whose Gram matrix takes more multiply-adds (n * n * d) than this
#: are computed in float32 (2.6x faster; within ~1e-6 of float64 for unit rows): the
#: classifier.0 group of vgg11_bn (4,096 filters of 25,088 weights, 4.2e11) took 28 s
#: in float64 on one loaded core, and a ViT-B or ConvNeXt-T MLP group (3,072 x 768,
#: 7.2e9) about 1 s. Smaller groups (every CIFAR ResNet, resnet18) stay in float64.
FLOAT32_GRAM_ABOVE = 2**32


def cosine_redundancy(features: np.ndarray) -> np.ndarray:
    """|cosine similarity| between the rows of ``features`` (n, d); zero rows give 0."""
    features = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    norms = np.linalg.norm(features, axis=1)
    safe = np.where(norms > 0, norms, 1.0)
    n, d = features.shape
    if n * n * d > FLOAT32_GRAM_ABOVE:
        single = features.astype(np.float32)
        single /= safe.astype(np.float32)[:, None]
        gram = (single @ single.T).astype(np.float64)
    else:
        unit = features / safe[:, None]
        gram = unit @ unit.T
    return np.abs(gram, out=gram)


def kl_redundancy(weight: np.ndarray) -> np.ndarray:
    """1 - A_layer with the paper's KL affinity: similar filters (low KL) are redundant."""
    return 1.0 - redundancy_affinity(weight)


def redundancy_coefficients(
    importance: np.ndarray, redundancy: np.ndarray, keep_count: int, weight: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """(linear, upper-triangular quadratic) QUBO coefficients of the group energy."""
    importance = np.asarray(importance, dtype=np.float64)
    redundancy = np.asarray(redundancy, dtype=np.float64)
    n = len(importance)
    if redundancy.shape != (n, n):
        raise ValueError(f"redundancy matrix has shape {redundancy.shape}, expected ({n}, {n})")
    if not (np.all(np.isfinite(importance)) and np.all(np.isfinite(redundancy))):
        raise ValueError(
            "importance and redundancy must be finite (the weights or the data "
            "batch contain NaN or inf)"
        )
    if weight < 0:
        raise ValueError(f"redundancy weight must be >= 0, got {weight}")
    top = np.abs(importance).max()
    scaled = importance / top if top > 0 else np.zeros(n)
    sym = (redundancy + redundancy.T) / 2
    quadratic = np.triu(sym, 1) * (weight / max(keep_count - 1, 1))
    return -scaled, quadratic


def group_energy(linear: np.ndarray, quadratic: np.ndarray, x: np.ndarray) -> np.ndarray:
    """E(x) for a (k, n) or (n,) array of 0/1 states, straight from the coefficients."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    return x @ linear + np.einsum("ki,ij,kj->k", x, quadratic, x)


class RedundancyEnergy(Energy):
    """Our energy, independent per group, registered as ``"redundancy"``."""

    name = "redundancy"
    per_group = True

    def needs_data(self, inputs: EnergyInputs) -> bool:
        return inputs.importance_needs_data

    def build(self, inputs: EnergyInputs) -> GroupCoefficients:
        scores = inputs.importance_scores()
        coefficients = {}
        for group in inputs.groups:
            redundancy = self.group_redundancy(inputs, group)  # names a layer with NaN weights
            if not np.all(np.isfinite(scores[group.name])):
                layers = ", ".join(repr(layer.name) for layer in group.layers)
                raise ValueError(
                    f"group {group.name!r}: importance {inputs.importance!r} is "
                    f"NaN or infinite (NaN/inf in the BatchNorm parameters, the "
                    f"gradients or the data batch of its layers {layers})"
                )
            k = inputs.keep_count(group) or group.size
            coefficients[group.name] = redundancy_coefficients(
                scores[group.name], redundancy, k, inputs.redundancy_weight
            )
        return coefficients

    def group_redundancy(self, inputs: EnergyInputs, group: UnitGroup) -> np.ndarray:
        """r (n, n) of the group's units by ``inputs.similarity``."""
        if inputs.similarity == "kl":
            root = group.layers[0]
            order = np.argsort(root.units)
            return kl_redundancy(inputs.weight(root)[order])
        if len(group.layers) == 1 and np.array_equal(group.layers[0].units, np.arange(group.size)):
            # one layer, units in channel order (a plain conv or linear): its filters as
            # they are, without the placed copy (vgg11_bn's classifier.0: 822 MB each)
            layer = group.layers[0]
            return cosine_redundancy(inputs.weight(layer).reshape(group.size, -1))
        columns = []
        for layer in group.layers:
            weight = inputs.weight(layer).reshape(len(layer.channels), -1)
            placed = np.zeros((group.size, weight.shape[1]))
            placed[layer.units] = weight
            columns.append(placed)
        return cosine_redundancy(np.concatenate(columns, axis=1))
