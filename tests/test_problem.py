"""PruningProblem on real networks, checked against energies rebuilt from the weights, a
brute-force optimum on a tiny network, and the files it writes."""

from __future__ import annotations

import copy
import itertools
import json
import re

import dimod
import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from ising_qubo import io
from ising_qubo.nets.models import build
from ising_qubo.pruning.energies import reference_energy
from ising_qubo.pruning.groups import ModelGroups, count_params, uniform_keep_counts
from ising_qubo.pruning.importance import group_importance, top_k_masks
from ising_qubo.pruning.problem import MANIFEST, PruningProblem

pytestmark = pytest.mark.usefixtures("one_torch_thread")


SA = {"num_reads": 2, "num_sweeps": 50, "seed": 0}

# ResNet-20's channel groups, written out by hand: a residual add ties the stem with the
# second conv of every block of stage 1, and the projection shortcut of stages 2 and 3
# with the second convs of that stage; each first conv is a group of its own.
RESNET20_GROUPS = {"conv1": {"conv1", "layer1.0.conv2", "layer1.1.conv2", "layer1.2.conv2"}}
for _stage, _width in ((1, 16), (2, 32), (3, 64)):
    if _stage > 1:
        RESNET20_GROUPS[f"layer{_stage}.0.downsample.0"] = {
            f"layer{_stage}.0.downsample.0",
            *(f"layer{_stage}.{b}.conv2" for b in range(3)),
        }
    for _block in range(3):
        RESNET20_GROUPS[f"layer{_stage}.{_block}.conv1"] = {f"layer{_stage}.{_block}.conv1"}
RESNET20_WIDTH = {
    name: 16 if name.startswith(("conv1", "layer1")) else 32 if name.startswith("layer2") else 64
    for name in RESNET20_GROUPS
}


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    model = build("resnet20")
    model.eval()
    batch = torch.randn(8, 3, 32, 32)
    return model, batch


@pytest.fixture(scope="module")
def problems(resnet):
    model, batch = resnet
    cache: dict = {}

    def get(energy: str, keep: float | None) -> PruningProblem:
        if (energy, keep) not in cache:
            cache[energy, keep] = PruningProblem.from_model(model, batch, energy=energy, keep=keep)
        return cache[energy, keep]

    return get


@pytest.fixture(scope="module")
def solutions(problems):
    cache: dict = {}

    def get(energy: str, keep: float | None):
        if (energy, keep) not in cache:
            cache[energy, keep] = problems(energy, keep).solve("torch-sa", **SA)
        return cache[energy, keep]

    return get


# ----- references ---------------------------------------------------------------------------


def weight_of(model: nn.Module, name: str) -> np.ndarray:
    return model.get_submodule(name).weight.detach().double().numpy()


def redundancy_reference(model: nn.Module, members: set[str], keep_count: int):
    """(linear, strictly upper quadratic) of E(x) = -a.x + 1/(k-1) sum_{i<j} r_ij x_i x_j
    with l1 importance (per layer scaled to mean 1, summed, scaled to max 1) and |cosine|
    redundancy of the concatenated filters of the tied layers."""
    flat = [
        weight_of(model, name).reshape(weight_of(model, name).shape[0], -1)
        for name in sorted(members)
    ]
    importance = sum(np.abs(w).sum(axis=1) / np.abs(w).sum(axis=1).mean() for w in flat)
    features = np.concatenate(flat, axis=1)
    n = len(features)
    r = np.empty((n, n))
    for i, j in itertools.product(range(n), repeat=2):
        a, b = features[i], features[j]
        r[i, j] = abs(a @ b) / (np.linalg.norm(a) * np.linalg.norm(b))
    return -importance / importance.max(), np.triu(r, 1) / max(keep_count - 1, 1)


def kl_affinity_reference(weight: np.ndarray) -> np.ndarray:
    """The doc's per-layer affinity, one pair at a time."""
    n, samples = weight.shape[:2]
    gaussians = []
    for i in range(n):
        x = np.stack([weight[i, c].reshape(-1) for c in range(samples)])
        gaussians.append((x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))))
    d = len(gaussians[0][0])
    kl = np.empty((n, n))
    for i, j in itertools.product(range(n), repeat=2):
        (m_i, s_i), (m_j, s_j) = gaussians[i], gaussians[j]
        p_j = scipy.linalg.pinv(s_j)
        if min(np.linalg.matrix_rank(s_i), np.linalg.matrix_rank(s_j)) < d:
            log_term = 0.0
        else:
            log_term = np.linalg.slogdet(s_j)[1] - np.linalg.slogdet(s_i)[1]
        kl[i, j] = 0.5 * (np.trace(p_j @ s_i) + log_term + (m_j - m_i) @ p_j @ (m_j - m_i) - d)
    kl[~np.isfinite(kl)] = 1.0
    normalised = (kl - kl.min()) / np.abs(kl).max()
    return (normalised + normalised.T) / 2


def entropy_reference(maps: np.ndarray) -> np.ndarray:
    maps = maps.reshape(len(maps), -1).astype(float)
    scaled = (maps - maps.min()) / (maps.max() - maps.min()) * 255.0
    out = []
    for channel in scaled:
        q = np.histogram(channel, bins=256, range=(0, 255))[0].astype(float)
        q = q[q > 0] / q.max()
        out.append(-(q * np.log2(q)).sum())
    out = np.array(out)
    return out / out.max()


def dense_ipruning_energy(layers, y: np.ndarray) -> float:
    sizes = [len(layer.units) for layer in layers]
    starts = np.cumsum([0, *sizes])
    gamma = np.zeros((starts[-1], starts[-1]))
    for k, layer in enumerate(layers):
        gamma[starts[k] : starts[k + 1], starts[k] : starts[k + 1]] = layer.affinity
        if k + 1 < len(layers):
            gamma[starts[k] : starts[k + 1], starts[k + 1] : starts[k + 2]] = layer.entropy[:, None]
    gamma -= 1.0
    x = np.concatenate([y[layer.units] for layer in layers]).astype(float)
    return float(-x @ gamma @ x + gamma.sum() / len(x) * x.sum())


def masks_to_sample(problem: PruningProblem, masks) -> dict:
    state = problem.state_from_masks(masks)
    return dict(zip(problem.labels, state.tolist()))


def conv_order(model: nn.Module, batch: torch.Tensor) -> list[str]:
    """Conv layers in the order the forward pass calls them (own hooks)."""
    order = []
    hooks = [
        module.register_forward_hook(lambda m, i, o, name=name: order.append(name))
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d)
    ]
    with torch.no_grad():
        model(batch)
    for hook in hooks:
        hook.remove()
    return order


def assert_swap_local_minimum(problem: PruningProblem, masks) -> None:
    """No exchange of a kept and a dropped unit of one group lowers the energy (all swaps
    enumerated, energies from the dimod BQM)."""
    bqm = problem.to_bqm(budget=False)
    x = problem.state_from_masks(masks).astype(np.int8)
    swapped = []
    for group in problem.groups:
        index = problem.offsets[group.name] + np.arange(group.size)
        for i in index[x[index] == 1]:
            for j in index[x[index] == 0]:
                state = x.copy()
                state[i], state[j] = 0, 1
                swapped.append(state)
    assert swapped
    base = bqm.energy((x, problem.labels))
    energies = bqm.energies((np.array(swapped), problem.labels))
    assert energies.min() >= base - 1e-7 * max(1.0, abs(base))


# ----- the networks' groups -----------------------------------------------------------------


def test_resnet20_groups_and_labels(problems):
    problem = problems("redundancy", None)
    found = {g.name: {layer.name for layer in g.layers} for g in problem.groups}
    assert found == RESNET20_GROUPS
    for group in problem.groups:
        assert group.size == RESNET20_WIDTH[group.name]
        for layer in group.layers:  # channels of every tied layer map to the same unit
            np.testing.assert_array_equal(layer.channels, np.arange(group.size))
            np.testing.assert_array_equal(layer.units, np.arange(group.size))
    assert problem.num_variables == sum(RESNET20_WIDTH.values()) == 448
    assert "layer1.0.conv1:3" in problem.labels
    assert "layer3.0.downsample.0:63" in problem.labels
    assert all(re.fullmatch(r"[\w.]+:\d+", label) for label in problem.labels)
    assert len(set(problem.labels)) == len(problem.labels)
    assert set(problem.to_bqm().variables) == set(problem.labels)
    assert problem.to_bqm("layer2.1.conv1").variables == problem.groups[6].labels


# ----- energies three ways -------------------------------------------------------------------


@pytest.mark.parametrize("keep", [None, 0.5])
def test_redundancy_energy_against_the_weights(resnet, problems, solutions, keep):
    model, _ = resnet
    problem = problems("redundancy", keep)
    solution = solutions("redundancy", keep)
    k_of = {g: (problem.keep_counts or {}).get(g, RESNET20_WIDTH[g]) for g in RESNET20_GROUPS}
    # coefficients of two groups, a single layer one and a four-layer residual one
    for name in ("layer2.1.conv1", "conv1"):
        linear, quadratic = redundancy_reference(model, RESNET20_GROUPS[name], k_of[name])
        bqm = problem.to_bqm(name, budget=False)
        labels = [f"{name}:{i}" for i in range(RESNET20_WIDTH[name])]
        np.testing.assert_allclose([bqm.get_linear(v) for v in labels], linear, rtol=1e-5)
        n = len(labels)
        got = np.array(
            [
                [
                    bqm.get_quadratic(labels[i], labels[j], default=0.0) if i < j else 0.0
                    for j in range(n)
                ]
                for i in range(n)
            ]
        )
        np.testing.assert_allclose(got, quadratic, rtol=1e-5, atol=1e-9)
        assert bqm.offset == 0.0
    # the solution's energy: BQM == problem.energy == sum of per-group references
    direct = 0.0
    for name, members in RESNET20_GROUPS.items():
        linear, quadratic = redundancy_reference(model, members, k_of[name])
        x = solution.masks[name].astype(float)
        direct += linear @ x + x @ quadratic @ x
    from_bqm = problem.to_bqm(budget=False).energy(masks_to_sample(problem, solution.masks))
    assert solution.energy == pytest.approx(problem.energy(solution.masks), rel=1e-12)
    assert from_bqm == pytest.approx(solution.energy, rel=1e-9, abs=1e-9)
    assert direct == pytest.approx(solution.energy, rel=1e-5)


@pytest.mark.parametrize("keep", [None, 0.5])
def test_ipruning_energy_against_the_weights(resnet, problems, solutions, keep):
    model, batch = resnet
    problem = problems("ipruning", keep)
    solution = solutions("ipruning", keep)
    terms = problem.layer_terms
    # one term per conv of the network, in execution order, on its group's variables
    assert [t.name for t in terms] == conv_order(model, batch)
    group_of = {layer: g for g, members in RESNET20_GROUPS.items() for layer in members}
    for term in terms:
        g = group_of[term.name]
        np.testing.assert_array_equal(term.units, problem.offsets[g] + np.arange(len(term.units)))
    # two layers recomputed from scratch: a 3x3 conv and a 1x1 projection
    maps = {}
    watched = ("layer2.1.conv1", "layer3.0.downsample.0")
    hooks = [
        model.get_submodule(name).register_forward_hook(
            lambda m, i, o, name=name: maps.__setitem__(name, o.detach().double().mean(0).numpy())
        )
        for name in watched
    ]
    with torch.no_grad():
        model(batch)
    for hook in hooks:
        hook.remove()
    by_name = {t.name: t for t in terms}
    for name in watched:
        term = by_name[name]
        np.testing.assert_allclose(
            term.affinity, kl_affinity_reference(weight_of(model, name)), rtol=1e-6, atol=1e-6
        )
        np.testing.assert_allclose(term.entropy, entropy_reference(maps[name]), atol=1e-6)
    # the 1x1 projection: 1-D Gaussians in closed form
    samples = weight_of(model, "layer3.0.downsample.0")[:, :, 0, 0]
    m, v = samples.mean(axis=1), samples.var(axis=1, ddof=1)
    kl = 0.5 * (
        v[:, None] / v[None, :]
        + np.log(v[None, :] / v[:, None])
        + (m[None, :] - m[:, None]) ** 2 / v[None, :]
        - 1
    )
    normalised = (kl - kl.min()) / np.abs(kl).max()
    np.testing.assert_allclose(
        by_name["layer3.0.downsample.0"].affinity,
        (normalised + normalised.T) / 2,
        rtol=1e-6,
        atol=1e-9,
    )
    # the solution's energy four ways
    y = problem.state_from_masks(solution.masks)
    from_bqm = problem.to_bqm(budget=False).energy(masks_to_sample(problem, solution.masks))
    energy = problem.energy(solution.masks)
    assert solution.energy == pytest.approx(energy, rel=1e-12)
    assert from_bqm == pytest.approx(energy, rel=1e-9)
    assert reference_energy(terms, y) == pytest.approx(energy, rel=1e-9)
    assert dense_ipruning_energy(terms, y) == pytest.approx(energy, rel=1e-9)


@pytest.mark.parametrize("energy", ["redundancy", "ipruning"])
def test_budget_met_and_really_pruned_model_is_small(resnet, problems, solutions, energy):
    model, batch = resnet
    problem = problems(energy, 0.5)
    solution = solutions(energy, 0.5)
    groups = ModelGroups(model, batch)
    assert problem.keep_counts == uniform_keep_counts(groups, 0.5)
    assert solution.kept == problem.keep_counts
    for name, mask in solution.masks.items():
        assert mask.dtype == bool and mask.shape == (RESNET20_WIDTH[name],)
    pruned = copy.deepcopy(model)
    history = ModelGroups(pruned, batch).prune(solution.masks)
    assert {name for name, _ in history} <= set(RESNET20_GROUPS)
    before, after = count_params(model), count_params(pruned)
    assert after <= (0.5 + 0.05) * before
    assert after == pytest.approx(groups.kept_fraction(solution.kept) * before, abs=0.5)
    # the surgery keeps exactly the chosen channels
    keep1 = solution.masks["layer1.0.conv1"]
    keep0 = solution.masks["conv1"]
    np.testing.assert_array_equal(
        pruned.layer1[0].conv1.weight.detach().numpy(),
        model.layer1[0].conv1.weight.detach().numpy()[keep1][:, keep0],
    )
    with torch.no_grad():
        assert pruned(batch).shape == (8, 10)
    assert count_params(model) == 272_474  # the original is untouched


@pytest.mark.parametrize("energy", ["redundancy", "ipruning"])
def test_solution_is_swap_local_minimum_on_resnet20(problems, solutions, energy):
    problem = problems(energy, 0.5)
    assert_swap_local_minimum(problem, solutions(energy, 0.5).masks)


def test_any_dimod_sampler_on_resnet20(problems):
    from dwave.samplers import SimulatedAnnealingSampler

    for energy in ("redundancy", "ipruning"):
        problem = problems(energy, 0.5)
        solution = problem.solve(SimulatedAnnealingSampler(), num_reads=2, num_sweeps=20, seed=1)
        assert solution.kept == problem.keep_counts
        assert solution.solver == "SimulatedAnnealingSampler"
        assert solution.energy == pytest.approx(problem.energy(solution.masks))
        assert_swap_local_minimum(problem, solution.masks)
    # a sampler that knows nothing of the budget: the polish still meets it
    problem = problems("redundancy", 0.5)
    solution = problem.solve(dimod.RandomSampler(), num_reads=1, seed=0)
    assert solution.kept == problem.keep_counts


def test_kl_similarity_is_one_minus_the_root_affinity(resnet):
    model, batch = resnet
    problem = PruningProblem.from_model(model, batch, similarity="kl", keep=0.5)
    for name in ("layer1.0.conv1", "conv1"):  # for a residual group: its root, conv1
        k = problem.keep_counts[name]
        expected = np.triu(1.0 - kl_affinity_reference(weight_of(model, name)), 1) / (k - 1)
        bqm = problem.to_bqm(name, budget=False)
        labels = [f"{name}:{i}" for i in range(RESNET20_WIDTH[name])]
        got = np.array(
            [
                [
                    bqm.get_quadratic(a, b, default=0.0) if i < j else 0.0
                    for j, b in enumerate(labels)
                ]
                for i, a in enumerate(labels)
            ]
        )
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("budget", [False, True])
def test_ipruning_group_bqm_holds_the_others_kept(problems, budget):
    problem = problems("ipruning", 0.5)
    whole = problem.to_bqm(budget=budget)
    rng = np.random.default_rng(4)
    for name in ("conv1", "layer3.1.conv1"):
        part = problem.to_bqm(name, budget=budget)
        assert part.vartype is dimod.BINARY
        labels = [f"{name}:{i}" for i in range(RESNET20_WIDTH[name])]
        assert set(part.variables) == set(labels)
        states = rng.integers(0, 2, size=(5, len(labels)))
        full = np.ones((5, problem.num_variables), dtype=np.int8)
        start = problem.offsets[name]
        full[:, start : start + len(labels)] = states
        np.testing.assert_allclose(
            part.energies((states, labels)), whole.energies((full, problem.labels)), rtol=1e-9
        )


# ----- files ------------------------------------------------------------------------------


@pytest.mark.parametrize("energy", ["redundancy", "ipruning"])
def test_save_writes_one_file_per_group_and_a_manifest(tmp_path, problems, solutions, energy):
    problem = problems(energy, 0.5)
    solution = solutions(energy, 0.5)
    problem.save(tmp_path)
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    files = {g["name"]: g["file"] for g in manifest["groups"]}
    assert list(files) == list(RESNET20_GROUPS)
    expected = {MANIFEST, *files.values()}
    if energy == "ipruning":
        assert manifest["network_file"] == "network.coo"
        expected.add("network.coo")
    else:
        assert manifest["network_file"] is None
    assert {p.name for p in tmp_path.iterdir()} == expected
    assert manifest["energy"] == energy and manifest["vartype"] == "BINARY"
    sample = masks_to_sample(problem, solution.masks)
    total = 0.0
    for entry in manifest["groups"]:
        name = entry["name"]
        assert entry["keep_count"] == problem.keep_counts[name]
        assert [v["label"] for v in entry["variables"]] == [
            f"{name}:{i}" for i in range(entry["size"])
        ]
        assert {layer["module"] for layer in entry["variables"][0]["layers"]} == RESNET20_GROUPS[
            name
        ]
        bqm = io.load(tmp_path / entry["file"])
        assert bqm.vartype is dimod.BINARY
        assert set(bqm.variables) == {v["label"] for v in entry["variables"]}
        group_sample = {v: sample[v] for v in bqm.variables}
        loaded = bqm.energy(group_sample)
        if energy == "redundancy":
            # the budget is met, so the file's penalty adds nothing to the group energy
            expected_energy = problem.to_bqm(name, budget=False).energy(group_sample)
        else:  # the other groups held at "all kept", their budget penalties included
            expected_energy = problem.energy({name: solution.masks[name]}, budget=True)
        assert loaded == pytest.approx(expected_energy, rel=1e-9, abs=1e-9)
        total += loaded
    if energy == "redundancy":
        assert total == pytest.approx(problem.energy(solution.masks), rel=1e-9)
    else:
        network = io.load(tmp_path / "network.coo")
        assert network.energy(sample) == pytest.approx(problem.energy(solution.masks), rel=1e-9)


# ----- a tiny network: brute force ---------------------------------------------------------


class Tiny(nn.Module):
    """Two convs tied by a residual add (6 channels), a third conv (7), a classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(6)
        self.conv3 = nn.Conv2d(6, 7, 3, padding=1)
        self.bn3 = nn.BatchNorm2d(7)
        self.fc = nn.Linear(7, 3)

    def forward(self, x):
        a = torch.relu(self.bn1(self.conv1(x)))
        b = torch.relu(self.bn2(self.conv2(a)) + a)
        c = torch.relu(self.bn3(self.conv3(b)))
        return self.fc(c.mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(1)
    model = Tiny().eval()
    return model, torch.randn(4, 3, 8, 8)


def budget_optimum(problem: PruningProblem) -> float:
    """Minimum of the budget-free energy over every mask meeting the keep counts."""
    choices = []
    for group in problem.groups:
        options = []
        for kept in itertools.combinations(range(group.size), problem.keep_counts[group.name]):
            mask = np.zeros(group.size, dtype=bool)
            mask[list(kept)] = True
            options.append(mask)
        choices.append(options)
    names = [g.name for g in problem.groups]
    states = np.array(
        [problem.state_from_masks(dict(zip(names, combo))) for combo in itertools.product(*choices)]
    )
    return float(problem.to_bqm(budget=False).energies((states, problem.labels)).min())


@pytest.mark.parametrize("energy", ["redundancy", "ipruning"])
def test_tiny_net_exact_solvers_reach_the_brute_force_optimum(tiny, energy):
    model, batch = tiny
    problem = PruningProblem.from_model(model, batch, energy=energy, keep=0.5)
    assert {g.name: {layer.name for layer in g.layers} for g in problem.groups} == {
        "conv1": {"conv1", "conv2"},
        "conv3": {"conv3"},
    }
    if energy == "ipruning":  # the tied layers share variables 0..5
        assert [(t.name, t.units.tolist()) for t in problem.layer_terms] == [
            ("conv1", list(range(6))),
            ("conv2", list(range(6))),
            ("conv3", list(range(6, 13))),
        ]
    optimum = budget_optimum(problem)
    for solver in ("cpsat", dimod.ExactSolver()):
        solution = problem.solve(solver)
        assert solution.kept == problem.keep_counts
        assert solution.energy == pytest.approx(optimum, abs=1e-6)
    assert_swap_local_minimum(problem, solution.masks)
    # the heuristic path too, polished into a swap-local minimum that meets the budget
    solution = problem.solve("torch-sa", **SA)
    assert solution.kept == problem.keep_counts
    assert solution.energy >= optimum - 1e-9
    assert_swap_local_minimum(problem, solution.masks)
    if energy == "ipruning":  # the whole network annealed by swaps under the budget
        assert solution.samplesets[0].info["backend"] == "numba-swaps"
        assert solution.repair_flips == 0  # every state the annealer returns meets it
        assert solution.energy == pytest.approx(optimum, abs=1e-6)


def test_tiny_net_polish_from_bad_states_meets_budget(tiny):
    model, batch = tiny
    problem = PruningProblem.from_model(model, batch, energy="ipruning", keep=0.5)
    for start in (np.zeros, np.ones):
        masks = {g.name: start(g.size, dtype=bool) for g in problem.groups}
        polished, repairs, _swaps = problem.polish(masks)
        assert {k: int(v.sum()) for k, v in polished.items()} == problem.keep_counts
        assert repairs == sum(
            abs(problem.keep_counts[g.name] - int(start(1)[0]) * g.size) for g in problem.groups
        )
        assert_swap_local_minimum(problem, polished)


# ----- importance ---------------------------------------------------------------------------


def test_l1_importance_is_the_filter_norm(resnet):
    model, batch = resnet
    groups = ModelGroups(model, batch)
    scores = group_importance(groups, "l1")
    w = weight_of(model, "layer2.1.conv1")
    l1 = np.array([np.sum(np.abs(w[i])) for i in range(len(w))])
    np.testing.assert_allclose(scores["layer2.1.conv1"], l1 / l1.mean(), rtol=1e-5)
    # a residual group: the sum over its layers of each layer's mean-1 scaled norms
    total = sum(
        np.abs(weight_of(model, n)).sum(axis=(1, 2, 3))
        / np.abs(weight_of(model, n)).sum(axis=(1, 2, 3)).mean()
        for n in RESNET20_GROUPS["conv1"]
    )
    np.testing.assert_allclose(scores["conv1"], total, rtol=1e-5)
    l2 = group_importance(groups, "l2")["layer1.2.conv1"]
    w = weight_of(model, "layer1.2.conv1").reshape(16, -1)
    norms = np.sqrt((w**2).sum(axis=1))
    np.testing.assert_allclose(l2, norms / norms.mean(), rtol=1e-5)


def test_top_k_masks_keeps_the_highest_scores():
    rng = np.random.default_rng(3)
    scores = {
        "a": rng.normal(size=9),
        "b": np.array([1.0, 3.0, 3.0, 0.5, 3.0]),
        "c": rng.normal(size=4),
    }
    masks = top_k_masks(scores, {"a": 4, "b": 2})
    assert set(np.flatnonzero(masks["a"])) == set(np.argsort(scores["a"])[-4:])
    np.testing.assert_array_equal(masks["b"], [False, True, True, False, False])  # ties: low
    assert masks["c"].all()  # no count: keep all
    for name, mask in masks.items():
        kept, dropped = scores[name][mask], scores[name][~mask]
        assert not dropped.size or kept.min() >= dropped.max()


# ----- bad input ----------------------------------------------------------------------------


def test_unknown_names_are_value_errors(resnet):
    model, batch = resnet
    for option, value in (("energy", "isingg"), ("importance", "l7"), ("similarity", "dot")):
        with pytest.raises(ValueError, match=repr(value)):
            PruningProblem.from_model(model, batch, **{option: value})
    groups = ModelGroups(model, batch)
    with pytest.raises(ValueError, match="'l7'"):
        group_importance(groups, "l7")
    with pytest.raises(ValueError, match="keep"):
        PruningProblem(groups, keep=0.0)
    with pytest.raises(ValueError, match="keep"):
        PruningProblem(groups, keep=1.5)


def test_masks_of_the_wrong_shape_name_the_group(resnet, problems):
    model, batch = resnet
    problem = problems("redundancy", 0.5)
    bad = {"layer2.1.conv1": np.ones(31, dtype=bool)}
    with pytest.raises(ValueError, match="layer2.1.conv1"):
        problem.energy(bad)
    with pytest.raises(ValueError, match="layer2.1.conv1"):
        problem.polish(bad)
    with pytest.raises(ValueError, match="layer2.1.conv1"):
        ModelGroups(copy.deepcopy(model), batch).prune(bad)
    with pytest.raises(ValueError, match="layer2.1.conv1"):
        ModelGroups(copy.deepcopy(model), batch).prune(
            {"layer2.1.conv1": np.zeros(32, dtype=bool)}
        )  # keeps nothing
    with pytest.raises(KeyError, match="layer9"):
        ModelGroups(copy.deepcopy(model), batch).prune({"layer9": np.ones(3, dtype=bool)})


def test_model_without_conv_or_linear_is_a_value_error():
    model = nn.Sequential(nn.ReLU(), nn.Flatten())
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match="no Conv or Linear"):
        ModelGroups(model, x)
    with pytest.raises(ValueError, match="no Conv or Linear"):
        PruningProblem.from_model(model, x)
    with pytest.raises(ValueError, match="forward pass failed"):
        ModelGroups(nn.Linear(3, 2), torch.randn(2, 5))


def test_whole_network_solve_scales_reads_and_sweeps_unless_the_caller_sets_them(tiny, monkeypatch):
    from ising_qubo.pruning import problem as module

    model, batch = tiny
    problem = PruningProblem.from_model(model, batch, energy="ipruning", keep=0.5)
    entries = module.sweep_entries(problem.structured(budget=False))
    # a work bound that makes this tiny network a "large" one: 2 reads x 5 sweeps
    monkeypatch.setattr(module, "ANNEAL_READ_SCALE", 2 * problem.num_variables)
    monkeypatch.setattr(module, "ANNEAL_SWEEPS", (1, 1000))
    monkeypatch.setattr(module, "ANNEAL_WORK", 10 * entries + 1)
    solution = problem.solve("torch-sa", seed=0)
    [sampleset] = solution.samplesets
    assert (sampleset.info["num_sweeps"], len(sampleset)) == (5, 2)
    assert solution.kept == problem.keep_counts
    [sampleset] = problem.solve("torch-sa", seed=0, num_sweeps=7, num_reads=4).samplesets
    assert (sampleset.info["num_sweeps"], len(sampleset)) == (7, 4)
    # the warm start is repeated over the scaled reads
    [sampleset] = problem.solve("torch-sa", initial=solution.masks, seed=0).samplesets
    assert len(sampleset) == 2
