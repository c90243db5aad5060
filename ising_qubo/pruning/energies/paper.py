"""The paper's energy ("ipruning"), following ``../shared/docs/ising-pruning.md``.

Units are the output channels of every layer; the affinity between two units is

* inside a layer, a symmetrised, normalised KL divergence between the filters, each
  filter modelled as a Gaussian whose samples are its per-input-channel kernels;
* between consecutive layers, the normalised entropy of the earlier unit's feature map;
* shifted by -1 everywhere, so unrelated pairs carry -1.

The energy H(x) = -x^T Gamma x + (sum(Gamma) / D) * sum(x) is built in structured form
(dense per-layer blocks plus rank-1 terms), never as a dense D x D matrix. Both defects
of the public code are avoided: each filter's samples are ``W[i, c]`` (a permutation, not a
reshape of the weight tensor), and every state is scored on its own couplings.

Plain numpy in, plain numpy out: the model adapter extracts the weights and feature maps
(:class:`PaperEnergy` reads them through :class:`~ising_qubo.pruning.energies.base.
EnergyInputs`).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ising_qubo.lowrank import LowRankIsing
from ising_qubo.pruning.energies.base import Energy, EnergyInputs


def filter_gaussians(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (n, d) and covariance (n, d, d) of each filter's kernels.

    ``weight`` is (C_out, C_in, *kernel) for a conv or (out, in) for a linear layer (a
    1x1 "kernel", so d = 1). Filter i's samples are ``weight[i, c]`` for c < C_in; the
    covariance uses the unbiased estimator and is zero when there is a single sample.
    """
    weight = np.asarray(weight, dtype=np.float64)
    if weight.ndim < 2:
        raise ValueError(
            f"weight must have at least 2 dimensions (out, in, ...), got shape {weight.shape}"
        )
    n, samples = weight.shape[:2]
    kernels = weight.reshape(n, samples, -1)  # keeps W[i, c] together: no mixing of filters
    mean = kernels.mean(axis=1)
    centred = kernels - mean[:, None, :]
    if samples > 1:
        cov = np.einsum("ncp,ncq->npq", centred, centred) / (samples - 1)
    else:
        cov = np.zeros((n, kernels.shape[2], kernels.shape[2]))
    return mean, cov


def kl_matrix(weight: np.ndarray) -> np.ndarray:
    """K[i, j] = KL(N_i || N_j) between the filter Gaussians, with pseudo-inverses.

    K_ij = 1/2 [tr(S_j^+ S_i) + ln(|S_j| / |S_i|) + (m_j - m_i)^T S_j^+ (m_j - m_i) - d];
    the log-determinant term is 0 when either determinant is 0, a non-finite entry is 1.
    """
    mean, cov = filter_gaussians(weight)
    n, d = mean.shape
    if d == 1:
        return _kl_scalar(mean[:, 0], cov[:, 0, 0])
    pinv = np.linalg.pinv(cov, hermitian=True)
    # A covariance of rank < d (fewer than d + 1 samples, e.g. 3x3 kernels with C_in <= 9)
    # has determinant 0, but in floating point slogdet returns a tiny determinant of
    # arbitrary sign: decide singularity by rank, with pinv's own cut-off (d * eps * max).
    eig = np.linalg.eigvalsh(cov)  # ascending
    regular = (eig[:, -1] > 0) & (eig[:, 0] > eig[:, -1] * d * np.finfo(np.float64).eps)
    _sign, logdet = np.linalg.slogdet(cov)
    # tr(P_j S_i) as an (n, d*d) @ (d*d, n) product: O(n^2 d^2), no loop
    trace = cov.reshape(n, d * d) @ pinv.transpose(0, 2, 1).reshape(n, d * d).T
    # (m_j - m_i)^T P_j (m_j - m_i) from the differences themselves: expanding it into
    # m_j P_j m_j - 2 m_i P_j m_j + m_i P_j m_i cancels catastrophically for large means
    with np.errstate(invalid="ignore", over="ignore"):
        diff = mean[None, :, :] - mean[:, None, :]  # [i, j] = m_j - m_i
        mahalanobis = np.einsum("ijb,ijb->ij", np.einsum("ija,jab->ijb", diff, pinv), diff)
    both = regular[:, None] & regular[None, :]
    logdet = np.where(regular, logdet, 0.0)  # -inf for singular covariances
    log_ratio = np.where(both, logdet[None, :] - logdet[:, None], 0.0)
    with np.errstate(invalid="ignore", over="ignore"):
        kl = 0.5 * (trace + log_ratio + mahalanobis - d)
    kl[~np.isfinite(kl)] = 1.0
    return kl


def _kl_scalar(mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    """:func:`kl_matrix` for 1x1 kernels (d = 1) by the same rules, in O(n^2) without the
    (n, n, d) intermediates: the 1x1 convolutions of a bottleneck ResNet are most of its
    channels and its widest layers (2,048)."""
    regular = var > 0  # pinv's cut-off for a 1x1 matrix: any positive variance
    inverse = np.where(regular, 1.0 / np.where(regular, var, 1.0), 0.0)
    logvar = np.where(regular, np.log(np.where(regular, var, 1.0)), 0.0)
    with np.errstate(invalid="ignore", over="ignore"):
        kl = var[:, None] * inverse[None, :]  # tr(P_j S_i)
        diff = mean[None, :] - mean[:, None]
        kl += diff * inverse[None, :] * diff  # in this order, as the general path: 0 * inf
        del diff
        kl += np.where(regular[:, None] & regular[None, :], logvar[None, :] - logvar[:, None], 0.0)
        kl -= 1.0
        kl *= 0.5
    kl[~np.isfinite(kl)] = 1.0
    return kl


def redundancy_affinity(weight: np.ndarray) -> np.ndarray:
    """A_layer: (K - min K) / max|K|, symmetrised as (K~ + K~^T) / 2."""
    kl = kl_matrix(weight)
    scale = np.abs(kl).max()
    normalised = (kl - kl.min()) / scale if scale > 0 else np.zeros_like(kl)
    return (normalised + normalised.T) / 2


def channel_entropy(feature_maps: np.ndarray) -> np.ndarray:
    """Normalised entropy E~ of each channel's batch-averaged feature map.

    ``feature_maps`` is (C, ...) already averaged over the batch. The layer's maps are
    min-max scaled to [0, 255] together, each channel gets a 256-bin histogram,
    q = hist / max(hist), E = -sum q log2 q (0 log 0 = 0), E~ = E / max E.
    """
    maps = np.asarray(feature_maps, dtype=np.float64)
    channels = maps.shape[0]
    maps = maps.reshape(channels, -1)
    low, high = maps.min(), maps.max()
    scaled = (maps - low) / (high - low) * 255.0 if high > low else np.zeros_like(maps)
    # np.histogram(bins=256, range=(0, 255)) per channel, as one bincount
    bins = np.clip(np.floor(scaled * 256.0 / 255.0), 0, 255).astype(np.int64)
    offsets = np.arange(channels)[:, None] * 256
    hist = np.bincount((bins + offsets).ravel(), minlength=channels * 256)
    hist = hist.reshape(channels, 256).astype(np.float64)
    q = hist / hist.max(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = -q * np.log2(q)
    terms[~np.isfinite(terms)] = 0.0
    entropy = terms.sum(axis=1)
    top = entropy.max()
    return entropy / top if top > 0 else np.zeros(channels)


@dataclass
class LayerTerms:
    """One layer's share of the network energy.

    ``units[k]`` is the problem variable that channel k of this layer belongs to (tied
    channels of several layers share a variable); ``affinity`` is A_layer (n, n);
    ``entropy`` is E~ (n,).
    """

    name: str
    units: np.ndarray
    affinity: np.ndarray
    entropy: np.ndarray


def network_energy(
    layers: Iterable[LayerTerms], num_variables: int, labels: Sequence[Hashable] | None = None
) -> LowRankIsing:
    """H over the problem variables y, where each layer unit is x_i = y_{units(i)}.

    Gamma = blockdiag(A_l) + sum_l [E~_l on layer l] 1^T[layer l+1] - 1 1^T, and
    H(x) = -x^T Gamma x + (sum(Gamma) / D) 1.x. Substituting x = P y keeps the shape:
    blocks become P_l^T A_l P_l on the group's variables, rank-1 terms stay rank 1.

    ``layers`` may be a generator in execution order: each layer's affinity is folded
    into its group's block as it arrives and then let go, so a network's worth of
    per-layer matrices (hundreds of MB for ResNet-101) never lives at once.
    """
    multiplicity = np.zeros(num_variables)
    blocks: dict[tuple[int, ...], np.ndarray] = {}  # one block per tied variable set
    lowrank = []
    gamma_sum = 0.0
    total_units = 0
    previous: LayerTerms | None = None
    for layer in layers:
        units = np.asarray(layer.units, dtype=np.int64)
        n = len(units)
        if layer.affinity.shape != (n, n) or layer.entropy.shape != (n,):
            raise ValueError(
                f"layer {layer.name}: affinity {layer.affinity.shape} and "
                f"entropy {layer.entropy.shape} do not match {n} units"
            )
        if n and (units.min() < 0 or units.max() >= num_variables):
            raise ValueError(f"layer {layer.name}: unit index out of range [0, {num_variables})")
        np.add.at(multiplicity, units, 1.0)
        _fold_into_block(blocks, units, layer.affinity)
        gamma_sum += float(layer.affinity.sum())
        total_units += n
        if previous is not None:
            entropy = np.zeros(num_variables)
            np.add.at(entropy, previous.units, previous.entropy)
            count = np.zeros(num_variables)
            np.add.at(count, units, 1.0)
            lowrank.append((-entropy, count))  # -(E~.x_l)(1.x_{l+1})
            gamma_sum += float(previous.entropy.sum()) * n
        previous = LayerTerms(layer.name, units, np.zeros((0, 0)), layer.entropy)
    if previous is None:
        raise ValueError("the network energy needs at least one layer")
    gamma_sum -= float(total_units) ** 2
    lowrank.append((multiplicity, multiplicity))  # +(1.x)^2 from the -1 shift
    linear = (gamma_sum / total_units) * multiplicity
    merged = [(np.array(key, dtype=np.int64), matrix) for key, matrix in blocks.items()]
    return LowRankIsing.from_binary(linear, merged, lowrank, 0.0, labels)


def _fold_into_block(blocks: dict, units: np.ndarray, affinity: np.ndarray) -> None:
    """blocks[variables] -= P^T A P, P mapping the layer's units onto its variables.

    Layers of one tied group land on the same variable set and so in the same block."""
    index, inverse = np.unique(units, return_inverse=True)
    key = tuple(index.tolist())
    block = blocks.get(key)
    if block is None:
        block = blocks[key] = np.zeros((len(index), len(index)))
    if len(index) == len(units) and np.array_equal(inverse, np.arange(len(units))):
        block -= affinity  # units already sorted and distinct: no copy
    elif len(index) == len(units):
        back = np.argsort(inverse)  # a permutation: P^T A P is a reindexing
        block -= affinity[np.ix_(back, back)]
    else:  # several units on one variable: their affinities add up
        np.add.at(block, (inverse[:, None], inverse[None, :]), -affinity)


def reference_energy(layers: Sequence[LayerTerms], y: np.ndarray) -> float:
    """H computed literally from its definition over the D layer units (a dense D x D
    Gamma): the independent check the tests hold :func:`network_energy` to."""
    sizes = [len(layer.units) for layer in layers]
    total = sum(sizes)
    gamma = -np.ones((total, total))
    starts = np.cumsum([0] + sizes)
    for k, layer in enumerate(layers):
        s, e = starts[k], starts[k + 1]
        gamma[s:e, s:e] += layer.affinity
        if k + 1 < len(layers):
            gamma[s:e, starts[k + 1] : starts[k + 2]] += layer.entropy[:, None]
    x = np.concatenate([np.asarray(y, dtype=float)[np.asarray(layer.units)] for layer in layers])
    return float(-x @ gamma @ x + gamma.sum() / total * x.sum())


class PaperEnergy(Energy):
    """The paper's energy over the whole network, registered as ``"ipruning"``."""

    name = "ipruning"
    per_group = False

    def build(self, inputs: EnergyInputs) -> LowRankIsing:
        return network_energy(self.layer_terms(inputs), inputs.num_variables, inputs.labels)

    def layer_terms(self, inputs: EnergyInputs) -> Iterator[LayerTerms]:
        """Each layer's share of the energy, in execution order, one at a time."""
        layers = [(layer, group) for group in inputs.groups for layer in group.layers]
        rank = {name: i for i, name in enumerate(inputs.order)}
        layers.sort(key=lambda item: rank[item[0].name])
        maps = inputs.feature_maps([layer for layer, _ in layers])
        for layer, group in layers:
            weight = inputs.weight(layer)
            entropy = channel_entropy(maps.pop(layer.name))
            yield LayerTerms(
                layer.name,
                inputs.offsets[group.name] + layer.units,
                redundancy_affinity(weight),
                entropy,
            )
