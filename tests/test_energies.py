"""The pruning energies against independent references written from the spec
(../shared/docs/ising-pruning.md): per-pair KL with scipy, closed-form Gaussian KL,
per-channel np.histogram entropies, and a dense D x D construction of the paper's H; then
energies as objects: a user's energy registered and solved end to end, and the built-in
energy objects giving the very models the numpy functions compute from the weights."""

from __future__ import annotations

import itertools

import dimod
import numpy as np
import pytest
import scipy.linalg
import torch
from tiny_nets import TiedNet
from torch import nn

import ising_qubo.pruning.energies as energies_module
from ising_qubo.pruning.energies import (
    Energy,
    LayerTerms,
    channel_entropy,
    cosine_redundancy,
    get_energy,
    group_energy,
    kl_matrix,
    kl_redundancy,
    network_energy,
    redundancy_affinity,
    redundancy_coefficients,
    reference_energy,
    register_energy,
    unregister_energy,
)
from ising_qubo.pruning.groups import ModelGroups
from ising_qubo.pruning.importance import group_importance
from ising_qubo.pruning.problem import PruningProblem

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ----- references ------------------------------------------------------------------------


def gaussian_of(weight: np.ndarray, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of filter i: its samples are W[i, c].reshape(-1)."""
    samples = np.stack(
        [np.asarray(weight[i, c], dtype=float).reshape(-1) for c in range(weight.shape[1])]
    )
    mean = samples.mean(axis=0)
    cov = np.atleast_2d(np.cov(samples, rowvar=False))
    return mean, cov


def kl_reference(weight: np.ndarray, i: int, j: int) -> float:
    """The doc's formula, one pair at a time, with scipy's pseudo-inverse."""
    mu_i, s_i = gaussian_of(weight, i)
    mu_j, s_j = gaussian_of(weight, j)
    d = len(mu_i)
    p_j = scipy.linalg.pinv(s_j)
    singular = (np.linalg.matrix_rank(s_i) < d) or (np.linalg.matrix_rank(s_j) < d)
    if singular:
        log_term = 0.0
    else:
        sign_i, logdet_i = np.linalg.slogdet(s_i)
        sign_j, logdet_j = np.linalg.slogdet(s_j)
        assert sign_i > 0 and sign_j > 0  # a covariance of full rank is positive definite
        log_term = logdet_j - logdet_i
    diff = mu_j - mu_i
    with np.errstate(over="ignore", invalid="ignore"):
        value = 0.5 * (np.trace(p_j @ s_i) + log_term + diff @ p_j @ diff - d)
    return float(value) if np.isfinite(value) else 1.0


def kl_reference_matrix(weight: np.ndarray) -> np.ndarray:
    n = weight.shape[0]
    return np.array([[kl_reference(weight, i, j) for j in range(n)] for i in range(n)])


def gaussian_kl_closed_form(mu0, s0, mu1, s1) -> float:
    """KL(N0 || N1) for regular covariances, with a plain inverse and determinants."""
    inv1 = np.linalg.inv(s1)
    diff = mu1 - mu0
    return 0.5 * (
        np.trace(inv1 @ s0)
        + diff @ inv1 @ diff
        - len(mu0)
        + np.log(np.linalg.det(s1) / np.linalg.det(s0))
    )


def affinity_reference(kl: np.ndarray) -> np.ndarray:
    normalised = (kl - kl.min()) / np.abs(kl).max()
    return (normalised + normalised.T) / 2


def entropy_reference(maps: np.ndarray) -> np.ndarray:
    maps = np.asarray(maps, dtype=float).reshape(len(maps), -1)
    low, high = maps.min(), maps.max()
    scaled = (maps - low) / (high - low) * 255.0
    entropy = []
    for channel in scaled:
        hist, _ = np.histogram(channel, bins=256, range=(0, 255))
        assert hist.sum() == channel.size
        q = hist / hist.max()
        e = 0.0
        for value in q:
            if value > 0:  # 0 log 0 = 0
                e -= value * np.log2(value)
        entropy.append(e)
    entropy = np.array(entropy)
    return entropy / entropy.max()


def dense_gamma(layers: list[LayerTerms]) -> np.ndarray:
    """Gamma = A - 1 over the D layer units, written from the spec."""
    sizes = [len(layer.units) for layer in layers]
    total = sum(sizes)
    a = np.zeros((total, total))
    start = 0
    starts = []
    for layer in layers:
        starts.append(start)
        n = len(layer.units)
        for p in range(n):
            for q in range(n):
                a[start + p, start + q] = layer.affinity[p, q]
        start += n
    for k in range(len(layers) - 1):
        for p in range(sizes[k]):
            for q in range(sizes[k + 1]):
                a[starts[k] + p, starts[k + 1] + q] = layers[k].entropy[p]
    return a - 1.0


def dense_energy(layers: list[LayerTerms], y: np.ndarray) -> float:
    gamma = dense_gamma(layers)
    x = np.array([y[u] for layer in layers for u in layer.units], dtype=float)
    total = len(x)
    return float(-x @ gamma @ x + (gamma.sum() / total) * x.sum())


# ----- KL ----------------------------------------------------------------------------------


def test_kl_matches_per_pair_reference_on_singular_covariances():
    # C_in = 6 samples in dimension 9: every covariance is singular (rank 5), so the
    # log-determinant term must be 0 for every pair.
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(5, 6, 3, 3))
    kl = kl_matrix(weight)
    assert kl.shape == (5, 5)
    np.testing.assert_allclose(kl, kl_reference_matrix(weight), rtol=1e-9, atol=1e-9)
    # with the pseudo-inverse tr(S^+ S) = rank, so KL(i, i) = (rank - d) / 2
    np.testing.assert_allclose(np.diag(kl), (5 - 9) / 2, atol=1e-9)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kl_reference_several_seeds_and_scale_invariance(seed):
    rng = np.random.default_rng(seed)
    weight = rng.normal(size=(4, 6, 3, 3)) * rng.uniform(0.01, 2.0)
    kl = kl_matrix(weight)
    np.testing.assert_allclose(kl, kl_reference_matrix(weight), rtol=1e-8, atol=1e-8)
    # the same affine change of every filter's samples leaves each KL unchanged
    np.testing.assert_allclose(kl_matrix(weight * 37.0), kl, rtol=1e-7, atol=1e-7)


def test_kl_full_rank_equals_closed_form_gaussian_kl():
    rng = np.random.default_rng(4)
    weight = rng.normal(size=(4, 40, 3, 3))
    weight[1] = weight[1] * 1.7 + 0.3  # different scales and means
    weight[2] = weight[2] @ rng.normal(size=(3, 3)) * 0.5  # correlated entries
    kl = kl_matrix(weight)
    np.testing.assert_allclose(kl, kl_reference_matrix(weight), rtol=1e-9, atol=1e-10)
    for i, j in itertools.product(range(4), repeat=2):
        mu_i, s_i = gaussian_of(weight, i)
        mu_j, s_j = gaussian_of(weight, j)
        assert np.linalg.matrix_rank(s_i) == 9
        assert kl[i, j] == pytest.approx(
            gaussian_kl_closed_form(mu_i, s_i, mu_j, s_j), rel=1e-9, abs=1e-10
        )
    assert np.all(kl >= -1e-12)
    np.testing.assert_allclose(np.diag(kl), 0.0, atol=1e-10)
    assert np.all(kl[~np.eye(4, dtype=bool)] > 1e-3)


def test_kl_full_rank_monte_carlo():
    """KL(p || q) = E_p[log p - log q], estimated by sampling: shares no formula."""
    from scipy.stats import multivariate_normal

    rng = np.random.default_rng(5)
    weight = rng.normal(size=(2, 60, 2, 2))
    weight[1] = weight[1] * np.array([[1.5, 0.7], [0.9, 1.2]]) + 0.4
    kl = kl_matrix(weight)
    (mu0, s0), (mu1, s1) = gaussian_of(weight, 0), gaussian_of(weight, 1)
    p, q = multivariate_normal(mu0, s0), multivariate_normal(mu1, s1)
    draws = p.rvs(size=50_000, random_state=6)
    log_ratio = p.logpdf(draws) - q.logpdf(draws)
    error = 5 * log_ratio.std() / np.sqrt(len(draws))
    assert abs(kl[0, 1] - log_ratio.mean()) < error


def test_kl_one_by_one_conv_is_scalar_gaussian_kl():
    rng = np.random.default_rng(7)
    weight = rng.normal(size=(5, 9, 1, 1)) * rng.uniform(0.2, 3.0, size=(5, 1, 1, 1))
    weight += rng.normal(size=(5, 1, 1, 1))
    kl = kl_matrix(weight)
    samples = weight[:, :, 0, 0]
    m, v = samples.mean(axis=1), samples.var(axis=1, ddof=1)
    expected = 0.5 * (
        v[:, None] / v[None, :]
        + np.log(v[None, :] / v[:, None])
        + (m[None, :] - m[:, None]) ** 2 / v[None, :]
        - 1
    )
    np.testing.assert_allclose(kl, expected, rtol=1e-10, atol=1e-12)


def test_kl_linear_weight_samples_are_the_inputs_of_each_output():
    rng = np.random.default_rng(8)
    weight = rng.normal(size=(6, 11)) * rng.uniform(0.5, 2.0, size=(6, 1))
    kl = kl_matrix(weight)
    m, v = weight.mean(axis=1), weight.var(axis=1, ddof=1)
    expected = 0.5 * (
        v[:, None] / v[None, :]
        + np.log(v[None, :] / v[:, None])
        + (m[None, :] - m[:, None]) ** 2 / v[None, :]
        - 1
    )
    np.testing.assert_allclose(kl, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(kl, kl_reference_matrix(weight), rtol=1e-10, atol=1e-12)
    # (out, in) is the 1x1 conv of the same numbers
    np.testing.assert_allclose(kl, kl_matrix(weight[:, :, None, None]), rtol=1e-12)


def test_kl_samples_of_a_filter_are_its_own_kernels():
    rng = np.random.default_rng(9)
    weight = rng.normal(size=(5, 12, 3, 3))
    kl = kl_matrix(weight)
    # permuting the filters permutes rows and columns of K
    perm = rng.permutation(5)
    np.testing.assert_allclose(
        kl_matrix(weight[perm]), kl[np.ix_(perm, perm)], rtol=1e-9, atol=1e-12
    )
    # the samples of a filter are unordered: permuting the input channels changes nothing
    np.testing.assert_allclose(kl_matrix(weight[:, rng.permutation(12)]), kl, rtol=1e-9, atol=1e-12)
    # changing filter 2 changes row and column 2 only
    changed = weight.copy()
    changed[2] = rng.normal(size=(12, 3, 3)) * 3.0
    kl2 = kl_matrix(changed)
    others = np.array([0, 1, 3, 4])
    np.testing.assert_allclose(
        kl2[np.ix_(others, others)], kl[np.ix_(others, others)], rtol=1e-9, atol=1e-12
    )
    assert np.all(np.abs(kl2[2, others] - kl[2, others]) > 1e-6)
    assert np.all(np.abs(kl2[others, 2] - kl[others, 2]) > 1e-6)


def test_kl_identical_filters_and_non_finite_entries():
    rng = np.random.default_rng(10)
    weight = rng.normal(size=(3, 8, 1, 1))
    weight[1] = weight[0]
    kl = kl_matrix(weight)
    assert kl[0, 1] == pytest.approx(0.0, abs=1e-12)
    assert kl[1, 0] == pytest.approx(0.0, abs=1e-12)
    # a constant filter far away: its covariance is 0 (singular), and KL(const || j)
    # has an overflowing Mahalanobis term: a non-finite entry is 1
    weight[2] = 1e200
    kl = kl_matrix(weight)
    assert kl[2, 0] == 1.0 and kl[2, 1] == 1.0
    # KL(j || const): pinv(0) = 0, log-det term 0, so the entry is -d/2
    assert kl[0, 2] == pytest.approx(-0.5)
    np.testing.assert_allclose(kl, kl_reference_matrix(weight), rtol=1e-9, atol=1e-12)


def test_redundancy_affinity_normalised_and_symmetric():
    rng = np.random.default_rng(11)
    for weight in (
        rng.normal(size=(6, 5, 3, 3)),
        rng.normal(size=(4, 30, 3, 3)),
        rng.normal(size=(5, 7, 1, 1)),
        rng.normal(size=(7, 13)),
    ):
        kl = kl_reference_matrix(weight)
        a = redundancy_affinity(weight)
        np.testing.assert_allclose(a, affinity_reference(kl), rtol=1e-8, atol=1e-9)
        np.testing.assert_array_equal(a, a.T)
        normalised = (kl - kl.min()) / np.abs(kl).max()
        assert normalised.min() == pytest.approx(0.0)
        assert a.min() >= -1e-12
        np.testing.assert_allclose(kl_redundancy(weight), 1.0 - a, atol=1e-12)
    # a zero layer: every KL equal, the affinity is 0
    np.testing.assert_array_equal(redundancy_affinity(np.zeros((3, 4, 3, 3))), 0.0)


# ----- entropy -----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(6, 8, 8), (3, 5, 7), (4, 1, 1, 50)])
def test_channel_entropy_matches_numpy_histogram(shape):
    rng = np.random.default_rng(12)
    maps = rng.normal(size=shape) * rng.uniform(
        0.1, 5.0, size=(shape[0],) + (1,) * (len(shape) - 1)
    )
    maps[1] = np.maximum(maps[1], 0.0)  # a ReLU-like channel: a big spike at the minimum
    np.testing.assert_allclose(channel_entropy(maps), entropy_reference(maps), rtol=1e-12)


def test_channel_entropy_on_bin_edges_and_constant_channels():
    rng = np.random.default_rng(13)
    edges = np.linspace(0, 255, 257)
    maps = edges[rng.integers(0, 257, size=(5, 400))] * 0.01 - 0.7
    maps[:, 0] = -0.7
    maps[:, 1] = 2.55 - 0.7
    maps[3] = 0.5  # constant channel: one full bin, q = [1, 0, ...], E = 0
    e = channel_entropy(maps)
    np.testing.assert_allclose(e, entropy_reference(maps), rtol=1e-12)
    assert e[3] == 0.0
    assert e.max() == 1.0
    # a constant layer carries no information
    np.testing.assert_array_equal(channel_entropy(np.ones((3, 4, 4))), 0.0)


# ----- the network energy ------------------------------------------------------------------


def random_layer(rng, name, units):
    n = len(units)
    a = rng.uniform(0, 1.5, size=(n, n))
    return LayerTerms(name, np.asarray(units), (a + a.T) / 2, rng.uniform(0, 1, size=n))


def network_fixture():
    """Four layers over 11 variables; layers 0 and 2 are tied (a residual group), and
    layer 3 lists its variables out of order."""
    rng = np.random.default_rng(14)
    layers = [
        random_layer(rng, "stem", [0, 1, 2, 3]),
        random_layer(rng, "block.conv1", [4, 5, 6, 7, 8]),
        random_layer(rng, "block.conv2", [0, 1, 2, 3]),
        random_layer(rng, "head", [10, 9]),
    ]
    return layers, 11


def test_network_energy_matches_dense_definition():
    layers, n = network_fixture()
    labels = [f"v{k}" for k in range(n)]
    model = network_energy(layers, n, labels)
    bqm = model.to_bqm()
    rng = np.random.default_rng(15)
    states = np.vstack([np.zeros(n), np.ones(n), rng.integers(0, 2, size=(30, n))])
    structured = model.energies(2 * states - 1)
    from_bqm = bqm.energies((2 * states - 1, labels))
    for k, y in enumerate(states):
        expected = dense_energy(layers, y)
        assert structured[k] == pytest.approx(expected, rel=1e-10, abs=1e-9)
        assert from_bqm[k] == pytest.approx(expected, rel=1e-10, abs=1e-9)
        assert reference_energy(layers, y) == pytest.approx(expected, rel=1e-10, abs=1e-9)
    binary = bqm.change_vartype(dimod.BINARY, inplace=False)
    np.testing.assert_allclose(binary.energies((states, labels)), structured, rtol=1e-10, atol=1e-9)


def test_network_energy_without_ties_all_states():
    rng = np.random.default_rng(16)
    layers = [
        random_layer(rng, "a", [0, 1, 2]),
        random_layer(rng, "b", [3, 4]),
        random_layer(rng, "c", [5, 6, 7]),
    ]
    model = network_energy(layers, 8)
    states = np.array(list(itertools.product([0, 1], repeat=8)), dtype=float)
    energies = model.energies(2 * states - 1)
    expected = np.array([dense_energy(layers, y) for y in states])
    np.testing.assert_allclose(energies, expected, rtol=1e-10, atol=1e-9)
    # D = 8: with affinities and entropies at 0 the energy is (n - D/2)^2 - D^2/4 - ... ;
    # check the -1 shift alone: Gamma = -1 gives H = n^2 - D n, minimised at n = D / 2
    flat = [
        LayerTerms(
            layer.name, layer.units, np.zeros_like(layer.affinity), np.zeros_like(layer.entropy)
        )
        for layer in layers
    ]
    counts = states.sum(axis=1)
    np.testing.assert_allclose(
        network_energy(flat, 8).energies(2 * states - 1), counts**2 - 8 * counts, atol=1e-9
    )


def test_network_energy_rejects_bad_layers():
    rng = np.random.default_rng(17)
    good = random_layer(rng, "a", [0, 1, 2])
    with pytest.raises(ValueError, match="at least one layer"):
        network_energy([], 3)
    with pytest.raises(ValueError, match="bad"):
        network_energy([LayerTerms("bad", np.array([0, 1]), good.affinity, good.entropy)], 3)
    with pytest.raises(ValueError, match="out of range"):
        network_energy([LayerTerms("a", np.array([0, 1, 5]), good.affinity, good.entropy)], 3)


# ----- the redundancy energy --------------------------------------------------------------


def test_cosine_redundancy_and_group_energy():
    rng = np.random.default_rng(18)
    features = rng.normal(size=(5, 7))
    features[3] = -2.5 * features[1]
    features[4] = 0.0
    r = cosine_redundancy(features)
    for i, j in itertools.product(range(4), repeat=2):
        a, b = features[i], features[j]
        assert r[i, j] == pytest.approx(abs(a @ b) / np.linalg.norm(a) / np.linalg.norm(b))
    assert r[1, 3] == pytest.approx(1.0)
    np.testing.assert_array_equal(r[4], 0.0)
    importance = rng.uniform(0, 4, size=5)
    linear, quadratic = redundancy_coefficients(importance, r, keep_count=3, weight=2.0)
    np.testing.assert_allclose(linear, -importance / importance.max())
    states = np.array(list(itertools.product([0, 1], repeat=5)), dtype=float)
    for x in states:
        expected = -(importance / importance.max()) @ x + 2.0 / (3 - 1) * sum(
            r[i, j] * x[i] * x[j] for i in range(5) for j in range(i + 1, 5)
        )
        assert group_energy(linear, quadratic, x)[0] == pytest.approx(expected)
    with pytest.raises(ValueError, match="finite"):
        redundancy_coefficients(np.array([1.0, np.nan]), np.zeros((2, 2)), 1)
    with pytest.raises(ValueError, match="shape"):
        redundancy_coefficients(np.ones(3), np.zeros((2, 2)), 1)


# ----- energies as objects: the registry, a user's energy, the built-ins unchanged --------


@pytest.fixture(scope="module")
def tied_net():
    torch.manual_seed(3)
    model = TiedNet().eval()
    with torch.no_grad():  # BatchNorm scales away from 1, so that importances differ
        for bn in (model.bn1, model.bn2):
            bn.weight.uniform_(0.5, 1.5)
    return model, torch.randn(4, 3, 8, 8)


class SizeEnergy(Energy):
    """E_g(x) = -sum_i l1_i x_i + c (sum_i x_i)^2, with l1_i the L1 norm of filter i of the
    group's first layer; the quadratic part is returned as a full matrix with a diagonal,
    c on every entry, so the problem's canonical form is exercised too."""

    name = "size-test"
    per_group = True
    c = 0.25

    def build(self, inputs):
        out = {}
        for group in inputs.groups:
            root = group.layers[0]
            l1 = np.zeros(group.size)
            l1[root.units] = np.abs(inputs.weight(root)).reshape(len(root.channels), -1).sum(1)
            out[group.name] = (-l1, np.full((group.size, group.size), self.c))
        return out


def size_energy_reference(model: nn.Module, name: str, x: np.ndarray) -> np.ndarray:
    """SizeEnergy of states ``x`` (k, n) of the group rooted at ``name``, from the weights."""
    weight = getattr(model, name).weight.detach().double().numpy()
    l1 = np.abs(weight).reshape(len(weight), -1).sum(axis=1)
    return -x @ l1 + SizeEnergy.c * x.sum(axis=1) ** 2


@pytest.fixture
def size_energy():
    register_energy("size-test", SizeEnergy())
    yield
    unregister_energy("size-test")


def test_a_registered_user_energy_end_to_end(tied_net, size_energy):
    model, batch = tied_net
    assert "size-test" in energies_module.ENERGIES  # read when asked for: includes it now
    problem = PruningProblem.from_model(model, batch, energy="size-test", keep=0.5)
    assert problem.energy_name == "size-test" and problem.manifest()["energy"] == "size-test"
    assert {g.name: g.size for g in problem.groups} == {"conv1": 6, "conv3": 5}
    rng = np.random.default_rng(0)
    for group in problem.groups:
        x = rng.integers(0, 2, size=(20, group.size))
        bqm = problem.to_bqm(group.name, budget=False)
        np.testing.assert_allclose(
            bqm.energies((x, group.labels)), size_energy_reference(model, group.name, x), rtol=1e-12
        )
        # with the budget penalty: the same energies wherever the budget is met
        k = problem.keep_counts[group.name]
        met = x[x.sum(axis=1) == k]
        assert len(met)
        np.testing.assert_allclose(
            problem.to_bqm(group.name).energies((met, group.labels)),
            size_energy_reference(model, group.name, met),
            rtol=1e-12,
        )
    # with exactly k units kept the quadratic part is a constant: the optimum keeps the k
    # filters of largest L1 norm, which every solver (after the swap polish) must find
    for solver in ("torch-sa", "cpsat", dimod.ExactSolver()):
        solution = problem.solve(
            solver, **({"num_reads": 2, "seed": 0} if solver == "torch-sa" else {})
        )
        for group in problem.groups:
            weight = getattr(model, group.name).weight.detach().double().numpy()
            l1 = np.abs(weight).reshape(len(weight), -1).sum(axis=1)
            expected = np.zeros(group.size, dtype=bool)
            expected[np.argsort(-l1)[: problem.keep_counts[group.name]]] = True
            np.testing.assert_array_equal(solution.masks[group.name], expected)
        x = problem.state_from_masks(solution.masks)
        direct = sum(
            size_energy_reference(model, g.name, solution.masks[g.name][None, :].astype(float))[0]
            for g in problem.groups
        )
        assert solution.energy == pytest.approx(direct, rel=1e-12)
        assert problem.to_bqm(budget=False).energy((x, problem.labels)) == pytest.approx(
            direct, rel=1e-12
        )


def test_an_unregistered_energy_instance_works_too(tied_net):
    model, batch = tied_net
    problem = PruningProblem.from_model(model, batch, energy=SizeEnergy(), keep=0.5)
    assert problem.energy_name == "size-test"
    assert "size-test" not in energies_module.ENERGIES
    x = np.ones((1, 5))
    assert problem.to_bqm("conv3", budget=False).energies((x, problem.groups[1].labels))[
        0
    ] == pytest.approx(size_energy_reference(model, "conv3", x)[0], rel=1e-12)


def test_registry_rejects_bad_registrations(size_energy):
    with pytest.raises(ValueError, match="'size-test' is already registered"):
        register_energy("size-test", SizeEnergy())
    register_energy("size-test", SizeEnergy(), overwrite=True)
    with pytest.raises(ValueError, match=r"named 'size-test'; set SizeEnergy.name = 'other'"):
        register_energy("other", SizeEnergy())
    with pytest.raises(ValueError, match=r"an instance of SizeEnergy \(SizeEnergy\(\)\)"):
        register_energy("size-test", SizeEnergy, overwrite=True)
    with pytest.raises(ValueError, match="subclass of ising_qubo.pruning.energies.Energy"):
        register_energy("plain", object())
    with pytest.raises(ValueError, match="non-empty string"):
        register_energy("", SizeEnergy())
    assert get_energy("size-test").name == "size-test"
    with pytest.raises(
        ValueError,
        match="unknown energy 'nope'; choose one of ipruning, redundancy, taylor, size-test",
    ):
        get_energy("nope")
    assert energies_module.ENERGIES[:2] == ("ipruning", "redundancy")


def test_a_user_energy_of_the_wrong_shape_is_named(tied_net):
    model, batch = tied_net

    class Short(SizeEnergy):
        name = "short"

        def build(self, inputs):
            return {
                g.name: (np.zeros(g.size - 1), np.zeros((g.size, g.size))) for g in inputs.groups
            }

    class NotANetwork(SizeEnergy):
        name = "flat"
        per_group = False

    with pytest.raises(
        ValueError,
        match=r"energy 'short', group 'conv1': coefficients of "
        r"shapes \(5,\) and \(6, 6\), expected \(6,\)",
    ):
        PruningProblem.from_model(model, batch, energy=Short())
    with pytest.raises(
        ValueError,
        match="energy 'flat' is whole-network: build.. must return a LowRankIsing, got dict",
    ):
        PruningProblem.from_model(model, batch, energy=NotANetwork())


def weights_of(layer) -> np.ndarray:
    """The layer's weights of its channels, extracted as the problem did before energies
    became objects."""
    return layer.module.weight.detach().float().cpu().numpy().astype(np.float64)[layer.channels]


@pytest.mark.parametrize("similarity", ["cosine", "kl"])
@pytest.mark.parametrize("keep", [None, 0.5])
def test_redundancy_energy_object_gives_the_same_bqms(tied_net, similarity, keep):
    model, batch = tied_net
    problem = PruningProblem.from_model(
        model, batch, energy="redundancy", keep=keep, similarity=similarity, redundancy_weight=0.7
    )
    scores = group_importance(ModelGroups(model, batch), "l1")
    for group in problem.groups:
        if similarity == "kl":
            root = group.layers[0]
            redundancy = kl_redundancy(weights_of(root)[np.argsort(root.units)])
        else:
            placed = []
            for layer in group.layers:
                weight = weights_of(layer).reshape(len(layer.channels), -1)
                columns = np.zeros((group.size, weight.shape[1]))
                columns[layer.units] = weight
                placed.append(columns)
            redundancy = cosine_redundancy(np.concatenate(placed, axis=1))
        k = group.size if keep is None else problem.keep_counts[group.name]
        linear, quadratic = redundancy_coefficients(scores[group.name], redundancy, k, 0.7)
        bqm = problem.to_bqm(group.name, budget=False)
        labels = group.labels
        np.testing.assert_array_equal([bqm.get_linear(v) for v in labels], linear)
        got = np.zeros_like(quadratic)
        for (u, v), value in bqm.quadratic.items():
            i, j = sorted((labels.index(u), labels.index(v)))
            got[i, j] = value
        np.testing.assert_array_equal(got, quadratic)


@pytest.mark.parametrize("keep", [None, 0.5])
def test_paper_energy_object_gives_the_same_model(tied_net, keep):
    model, batch = tied_net
    problem = PruningProblem.from_model(model, batch, energy="ipruning", keep=keep)
    groups = ModelGroups(model, batch)
    maps = {}
    hooks = [
        getattr(model, name).register_forward_hook(
            lambda m, i, o, name=name: maps.__setitem__(
                name, o.detach().float().mean(dim=0).cpu().numpy()
            )
        )
        for name in ("conv1", "conv2", "conv3")
    ]
    with torch.no_grad():
        model(batch)
    for hook in hooks:
        hook.remove()
    offsets = {"conv1": 0, "conv3": 6}
    layers = {layer.name: (layer, group) for group in groups.groups for layer in group.layers}
    terms = [
        LayerTerms(
            name,
            offsets[group.name] + layer.units,
            redundancy_affinity(weights_of(layer)),
            channel_entropy(maps[name][layer.channels]),
        )
        for name, (layer, group) in ((n, layers[n]) for n in ("conv1", "conv2", "conv3"))
    ]
    expected = network_energy(terms, 11, problem.labels)
    got = problem.structured(budget=False)
    np.testing.assert_array_equal(got.h, expected.h)
    np.testing.assert_array_equal(got.lowrank_u, expected.lowrank_u)
    np.testing.assert_array_equal(got.lowrank_v, expected.lowrank_v)
    assert got.offset == expected.offset
    assert len(got.blocks) == len(expected.blocks)
    for (index, J), (ref_index, ref_J) in zip(got.blocks, expected.blocks):
        np.testing.assert_array_equal(index, ref_index)
        np.testing.assert_array_equal(J, ref_J)
    assert [(t.name, t.units.tolist()) for t in problem.layer_terms] == [
        (t.name, t.units.tolist()) for t in terms
    ]
