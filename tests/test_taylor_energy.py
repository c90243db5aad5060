"""The data-driven ``taylor`` energy against references written from its definition
(docs/energies.md): unit saliencies from torch.autograd (one batch gradient; per-example
gradients by torch.func; finite differences of the loss), redundancies and entropies in
plain numpy, the energy of random states as the literal sum of the documented terms, the
claimed invariances, the errors, and the problem solved end to end against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from tiny_nets import TiedNet
from torch import nn
from torch.func import functional_call, grad, vmap

import ising_qubo.pruning.energies as energies_module
from ising_qubo.pruning.energies import TaylorEnergy, TaylorTerms, get_energy
from ising_qubo.pruning.energy_inputs import ModelInputs, loss_saliency
from ising_qubo.pruning.groups import ModelGroups
from ising_qubo.pruning.importance import group_importance
from ising_qubo.pruning.problem import PruningProblem

pytestmark = pytest.mark.usefixtures("one_torch_thread")


#: the parameters each unit owns, written from the model above (not from Torch-Pruning):
#: group -> (first problem variable, [parameter names whose row c belongs to unit c])
UNITS = {
    "conv1": (
        0,
        ["conv1.weight", "bn1.weight", "bn1.bias", "conv2.weight", "bn2.weight", "bn2.bias"],
    ),
    "conv3": (6, ["conv3.weight", "conv3.bias"]),
}
#: layers in execution order: (name, group) -- conv2's channel c is unit c of group conv1
LAYERS = [("conv1", "conv1"), ("conv2", "conv1"), ("conv3", "conv3")]
SIZES = {"conv1": 6, "conv3": 5}
D = 11


def make_net(seed: int = 3) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    model = TiedNet().eval()
    with torch.no_grad():  # BatchNorm parameters and statistics away from their defaults
        for bn in (model.bn1, model.bn2):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.3, 0.3)
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 2.0)
    inputs = torch.randn(12, 3, 8, 8)
    targets = torch.randint(0, 3, (12,))
    return model, inputs, targets


@pytest.fixture
def net():
    return make_net()


# ----- references ------------------------------------------------------------------------


def unit_sums_reference(model, named_grads) -> np.ndarray:
    """s(u) = sum over the unit's parameters of w * g, for all D units, from named grads."""
    params = dict(model.named_parameters())
    s = np.zeros(D)
    for group, (start, names) in UNITS.items():
        for c in range(SIZES[group]):
            for name in names:
                w = params[name].detach().double()[c]
                s[start + c] += float((w * named_grads[name].double()[c]).sum())
    return s


def taylor_reference(model, x, y, scale: float = 1.0) -> np.ndarray:
    names = [name for _, names in UNITS.values() for name in names]
    params = dict(model.named_parameters())
    loss = scale * nn.functional.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, [params[n] for n in names])
    return np.abs(unit_sums_reference(model, dict(zip(names, grads))))


def fisher_reference(model, x, y) -> np.ndarray:
    """mean_n s_n(u)^2 with per-example gradients from torch.func (vmap of grad)."""
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = dict(model.named_buffers())

    def loss_one(p, xi, yi):
        out = functional_call(model, (p, buffers), (xi[None],))
        return nn.functional.cross_entropy(out, yi[None])

    per_example = vmap(grad(loss_one), in_dims=(None, 0, 0))(params, x, y)
    s = np.stack(
        [
            unit_sums_reference(model, {n: g[k] for n, g in per_example.items()})
            for k in range(len(x))
        ]
    )
    return (s**2).mean(axis=0)


def cosine_reference(model, group: str) -> np.ndarray:
    """|cos| between units' concatenated filters (conv1 and conv2 rows for group conv1)."""
    layers = [name for name, owner in LAYERS if owner == group]
    rows = np.concatenate(
        [
            getattr(model, name).weight.detach().double().numpy().reshape(SIZES[group], -1)
            for name in layers
        ],
        axis=1,
    )
    r = np.zeros((len(rows), len(rows)))
    for i, j in itertools.product(range(len(rows)), repeat=2):
        r[i, j] = abs(rows[i] @ rows[j]) / (np.linalg.norm(rows[i]) * np.linalg.norm(rows[j]))
    return r


def entropy_reference(model, x) -> dict[str, np.ndarray]:
    """The paper's E~ of each layer: batch-averaged maps from hooks, np.histogram per
    channel after scaling the layer's maps together to [0, 255]."""
    maps = {}
    hooks = [
        getattr(model, name).register_forward_hook(
            lambda m, i, o, name=name: maps.__setitem__(name, o.detach().double().mean(0).numpy())
        )
        for name, _ in LAYERS
    ]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    out = {}
    for name, layer_maps in maps.items():
        flat = layer_maps.reshape(len(layer_maps), -1)
        scaled = (flat - flat.min()) / (flat.max() - flat.min()) * 255.0
        entropy = []
        for row in scaled:
            hist, _ = np.histogram(row, bins=256, range=(0, 255))
            q = hist / hist.max()
            q = q[q > 0]
            entropy.append(float(-(q * np.log2(q)).sum()))
        out[name] = np.array(entropy) / max(entropy)
    return out


def reference_terms(
    x_states, importance, redundancy, entropy, keep, weight, coupling
) -> dict[str, np.ndarray]:
    """The documented terms, summed literally over units, pairs and layer pairs."""
    x_states = np.atleast_2d(x_states)
    mean = importance.mean()
    out = {"importance": [], "redundancy": [], "activity": []}
    for x in x_states:
        out["importance"].append(-sum(importance[u] * x[u] for u in range(D)))
        total = 0.0
        for group, (start, _) in UNITS.items():
            n = SIZES[group]
            rho = weight * importance[start : start + n].mean() / max(keep[group] - 1, 1)
            for i in range(n):
                for j in range(i + 1, n):
                    total += rho * redundancy[group][i, j] * x[start + i] * x[start + j]
        out["redundancy"].append(total)
        total = 0.0
        for (name, group), (_, next_group) in zip(LAYERS, LAYERS[1:]):
            c = coupling * mean / max(SIZES[group], SIZES[next_group])
            start, next_start = UNITS[group][0], UNITS[next_group][0]
            informative = sum(entropy[name][i] * x[start + i] for i in range(SIZES[group]))
            kept_next = sum(x[next_start + j] for j in range(SIZES[next_group]))
            total -= c * informative * kept_next
        out["activity"].append(total)
    return {key: np.array(value) for key, value in out.items()}


def inputs_of(model, x, y, keep_counts=None, weight=1.0, similarity="cosine") -> ModelInputs:
    groups = ModelGroups(model, x)
    labels = [label for group in groups.groups for label in group.labels]
    offsets = {"conv1": 0, "conv3": 6}
    return ModelInputs(groups, (x, y), offsets, labels, keep_counts, "l1", similarity, weight)


# ----- the linear term: saliencies --------------------------------------------------------


def test_taylor_scores_match_autograd_and_leave_the_model_alone(net):
    model, x, y = net
    model.train()  # the score must be measured in eval mode and the mode given back
    model.bn1.eval()  # ... each module's own mode, a frozen BatchNorm included
    model.conv3.weight.requires_grad_(False)  # a frozen layer is still scored
    groups = ModelGroups(model, x)
    scores = loss_saliency(groups, (x, y), "taylor")
    assert model.training and not model.bn1.training and model.bn2.training
    assert not model.conv3.weight.requires_grad
    assert all(p.grad is None for p in model.parameters())  # no .grad written
    model.eval()
    model.conv3.weight.requires_grad_(True)
    expected = taylor_reference(model, x, y)
    got = np.concatenate([scores["conv1"], scores["conv3"]])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-12)
    # one common unit: no group is rescaled to a maximum of 1
    assert scores["conv1"].max() != pytest.approx(1.0) and got.min() > 0
    # and it is not the per-layer-normalised "taylor" importance of the redundancy energy
    normalised = group_importance(groups, "taylor", (x, y))
    assert not np.allclose(normalised["conv1"], scores["conv1"])


def test_fisher_scores_match_per_example_gradients(net):
    model, x, y = net
    scores = loss_saliency(ModelGroups(model, x), (x, y), "fisher")
    got = np.concatenate([scores["conv1"], scores["conv3"]])
    np.testing.assert_allclose(got, fisher_reference(model, x, y), rtol=1e-4, atol=1e-14)


def test_taylor_score_is_the_first_order_loss_change_of_removing_the_unit(net):
    """d/da L(unit's parameters scaled by 1 + a) at a = 0 is s(u); removing the unit is
    a = -1, so |s(u)| is the first-order change: checked by central differences in
    float64, with no autograd at all."""
    model, x, y = net
    model = model.double()
    x = x.double()
    scores = loss_saliency(ModelGroups(model, x), (x, y), "taylor")
    params = dict(model.named_parameters())
    eps = 1e-6
    for group, unit in (("conv1", 3), ("conv3", 1)):
        _, names = UNITS[group]
        losses = []
        for a in (eps, -eps):
            with torch.no_grad():
                saved = [params[n][unit].clone() for n in names]
                for n in names:
                    params[n][unit] *= 1 + a
                losses.append(float(nn.functional.cross_entropy(model(x), y)))
                for n, value in zip(names, saved):
                    params[n][unit] = value
        derivative = (losses[0] - losses[1]) / (2 * eps)
        assert scores[group][unit] == pytest.approx(abs(derivative), rel=1e-5)


def test_taylor_score_follows_the_function_not_the_parametrisation(net):
    """conv3's weight and bias times 4 and the classifier's weight divided by 4 compute
    the same function (ReLU is positively homogeneous): the saliencies stay, the filter
    norm (the redundancy energy's default importance) grows four-fold."""
    model, x, y = net
    before = loss_saliency(ModelGroups(model, x), (x, y))["conv3"]
    with torch.no_grad():
        model.conv3.weight *= 4.0
        model.conv3.bias *= 4.0
        model.fc.weight /= 4.0
    after = loss_saliency(ModelGroups(model, x), (x, y))["conv3"]
    np.testing.assert_allclose(after, before, rtol=1e-4)


# ----- the quadratic term and the whole energy ---------------------------------------------


@pytest.mark.parametrize("keep", [None, 0.5])
def test_redundancy_term_matches_numpy(net, keep):
    """With the coupling off, the binary BQM holds exactly -I on the fields and
    rho_g r_ij inside each group, nothing between groups."""
    model, x, y = net
    problem = PruningProblem.from_model(
        model, x, energy=TaylorEnergy(coupling=0.0), keep=keep, data=(x, y), redundancy_weight=0.6
    )
    importance = taylor_reference(model, x, y)
    bqm = problem.to_bqm(budget=False)
    labels = problem.labels
    np.testing.assert_allclose([bqm.get_linear(v) for v in labels], -importance, rtol=1e-5)
    quadratic = np.zeros((D, D))
    for (u, v), value in bqm.quadratic.items():
        i, j = sorted((labels.index(u), labels.index(v)))
        quadratic[i, j] = value
    expected = np.zeros((D, D))
    for group, (start, _) in UNITS.items():
        n = SIZES[group]
        k = n if keep is None else problem.keep_counts[group]
        rho = 0.6 * importance[start : start + n].mean() / max(k - 1, 1)
        expected[start : start + n, start : start + n] = np.triu(
            rho * cosine_reference(model, group), 1
        )
    np.testing.assert_allclose(quadratic, expected, rtol=1e-5, atol=1e-15)


@pytest.mark.parametrize("score", ["taylor", "fisher"])
@pytest.mark.parametrize("keep", [None, 0.5])
def test_energy_of_random_states_is_the_sum_of_the_documented_terms(net, score, keep):
    model, x, y = net
    energy = TaylorEnergy(score=score, coupling=0.7)
    problem = PruningProblem.from_model(
        model, x, energy=energy, keep=keep, data=(x, y), redundancy_weight=0.6
    )
    importance = (
        taylor_reference(model, x, y) if score == "taylor" else fisher_reference(model, x, y)
    )
    redundancy = {group: cosine_reference(model, group) for group in UNITS}
    entropy = entropy_reference(model, x)
    counts = problem.keep_counts or SIZES
    states = np.random.default_rng(1).integers(0, 2, size=(40, D))
    terms = reference_terms(states, importance, redundancy, entropy, counts, 0.6, 0.7)
    expected = terms["importance"] + terms["redundancy"] + terms["activity"]
    assert np.count_nonzero(terms["activity"]) > 30  # the coupling term is really there
    spins = 2.0 * states - 1.0
    np.testing.assert_allclose(
        problem.structured(budget=False).energies(spins), expected, rtol=1e-5
    )
    np.testing.assert_allclose(
        problem.to_bqm(budget=False).energies((states, problem.labels)), expected, rtol=1e-5
    )
    for state, value in zip(states[:5], expected[:5]):
        masks = problem.masks_from_state(state)
        assert problem.energy(masks) == pytest.approx(value, rel=1e-5)
    # and term by term, as TaylorTerms reports them
    built = energy.terms(inputs_of(model, x, y, problem.keep_counts, 0.6))
    for key, value in built.breakdown(states).items():
        np.testing.assert_allclose(value, terms[key], rtol=1e-5, atol=1e-15)


@pytest.mark.parametrize(("score", "power"), [("taylor", 1), ("fisher", 2)])
def test_scaling_the_loss_scales_every_term(net, score, power):
    """Loss times 3.5: saliencies, redundancy strengths, coupling strengths and so every
    coefficient of the model scale by 3.5 (3.5^2 for Fisher); r and E~ do not move. In
    float64: a unit's score is a sum of products that cancel, float32 would blur it."""
    model, x, y = net
    model, x = model.double(), x.double()
    c = 3.5
    inputs = inputs_of(model, x, y, {"conv1": 4, "conv3": 3}, 0.8)
    base = TaylorEnergy(score=score, coupling=0.5).terms(inputs)

    def scaled_loss(outputs, targets):
        return c * nn.functional.cross_entropy(outputs, targets)

    scaled = TaylorEnergy(score=score, coupling=0.5, loss=scaled_loss).terms(inputs)
    factor = c**power
    np.testing.assert_allclose(scaled.importance, factor * base.importance, rtol=1e-5)
    for g, h in zip(base.groups, scaled.groups):
        np.testing.assert_array_equal(g.redundancy, h.redundancy)
        assert scaled.redundancy_strength(h) == pytest.approx(
            factor * base.redundancy_strength(g), rel=1e-5
        )
    for k in range(len(base.layers) - 1):
        np.testing.assert_array_equal(base.layers[k].entropy, scaled.layers[k].entropy)
        assert scaled.coupling_strength(k) == pytest.approx(
            factor * base.coupling_strength(k), rel=1e-5
        )
    one, other = base.model(), scaled.model()
    np.testing.assert_allclose(other.h, factor * one.h, rtol=1e-5)
    np.testing.assert_allclose(
        other.lowrank_u * other.lowrank_v, factor * one.lowrank_u * one.lowrank_v, rtol=1e-5
    )
    for (_, J), (_, K) in zip(one.blocks, other.blocks):
        np.testing.assert_allclose(K, factor * J, rtol=1e-5, atol=1e-15)
    states = np.random.default_rng(2).integers(0, 2, size=(20, D)) * 2.0 - 1.0
    np.testing.assert_allclose(other.energies(states), factor * one.energies(states), rtol=1e-5)


def test_terms_model_is_the_documented_formula_on_hand_made_arrays():
    """TaylorTerms alone (no network): a group of 3 and one of 2, three layers, one
    shared by two layers; every state's energy against the literal sum."""
    from ising_qubo.pruning.energies import GroupRedundancy, LayerActivity

    rng = np.random.default_rng(5)
    importance = rng.random(5)
    r3 = rng.random((3, 3))
    r3 = (r3 + r3.T) / 2
    r2 = np.array([[1.0, 0.3], [0.3, 1.0]])
    groups = [
        GroupRedundancy("a", np.arange(3), r3, 2),
        GroupRedundancy("b", np.arange(3, 5), r2, 2),
    ]
    layers = [
        LayerActivity("l0", np.arange(3), np.array([1.0, 0.5, 0.2])),
        LayerActivity("l1", np.array([2, 0, 1]), np.array([0.4, 1.0, 0.9])),
        LayerActivity("l2", np.arange(3, 5), np.array([1.0, 0.1])),
    ]
    terms = TaylorTerms(importance, groups, layers, redundancy_weight=1.3, coupling=0.4)
    model = terms.model()
    mean = importance.mean()
    for bits in itertools.product((0, 1), repeat=5):
        x = np.array(bits, dtype=float)
        value = -importance @ x
        value += (
            1.3
            * importance[:3].mean()
            / 1
            * (r3[0, 1] * x[0] * x[1] + r3[0, 2] * x[0] * x[2] + r3[1, 2] * x[1] * x[2])
        )
        value += 1.3 * importance[3:].mean() / 1 * 0.3 * x[3] * x[4]
        value -= 0.4 * mean / 3 * (x[:3] @ [1.0, 0.5, 0.2]) * (x[2] + x[0] + x[1])
        value -= 0.4 * mean / 3 * (x[2] * 0.4 + x[0] * 1.0 + x[1] * 0.9) * (x[3] + x[4])
        assert model.energies(2 * x - 1)[0] == pytest.approx(value, rel=1e-12, abs=1e-12)
        assert sum(v[0] for v in terms.breakdown(x).values()) == pytest.approx(
            value, rel=1e-12, abs=1e-12
        )
    with pytest.raises(ValueError, match="coupling must be >= 0"):
        TaylorTerms(importance, groups, layers, coupling=-1.0)
    with pytest.raises(ValueError, match="importance must be finite and >= 0"):
        TaylorTerms(-importance, groups, layers)
    with pytest.raises(ValueError, match="group 'a': redundancy of shape"):
        TaylorTerms(importance, [GroupRedundancy("a", np.arange(3), r2, 2)], layers)


# ----- errors -------------------------------------------------------------------------------


def test_missing_or_bad_data_names_the_energy_and_what_it_needs(net):
    model, x, y = net
    assert "taylor" in energies_module.ENERGIES
    assert isinstance(get_energy("taylor"), TaylorEnergy)
    with pytest.raises(
        ValueError,
        match=r"energy 'taylor': the taylor score needs data=\(inputs, targets\), a "
        r"labelled calibration batch, got a Tensor",
    ):
        PruningProblem.from_model(model, x, energy="taylor", keep=0.5)
    with pytest.raises(
        ValueError,
        match=r"energy 'taylor': the fisher score needs integer class labels of shape "
        r"\(N,\) as targets, got a torch.float32",
    ):
        PruningProblem.from_model(
            model, x, energy=TaylorEnergy(score="fisher"), data=(x, y.float())
        )
    problem = PruningProblem.from_model(model, x, energy="taylor", data=(x, y))
    with pytest.raises(ValueError, match=r"energy 'taylor' .*needs data=\(inputs, targets\)"):
        problem.refresh(None)
    with pytest.raises(ValueError, match="energy 'taylor': the taylor score: the loss"):
        PruningProblem.from_model(model, x, energy="taylor", data=(x, y + 7))
    with pytest.raises(ValueError, match="unknown score 'l1'; choose one of taylor, fisher"):
        TaylorEnergy(score="l1")
    with pytest.raises(ValueError, match="coupling must be a finite number >= 0, got -0.5"):
        TaylorEnergy(coupling=-0.5)


def test_a_loss_that_ignores_every_unit_is_refused(net):
    model, x, y = net

    def constant(outputs, targets):
        return outputs.sum() * 0.0

    with pytest.raises(ValueError, match="energy 'taylor': every unit's taylor score is 0"):
        PruningProblem.from_model(model, x, energy=TaylorEnergy(loss=constant), data=(x, y))


# ----- end to end ---------------------------------------------------------------------------


@pytest.mark.parametrize("solver", ["neal", "cpsat"])
def test_solved_end_to_end_to_the_brute_force_optimum(net, solver):
    """keep=0.5 (the uniform budget: 4 of 6 and 3 of 5 units): every state meeting it,
    scored by the reference terms; neal (after the swap polish) and CP-SAT find the best."""
    model, x, y = net
    problem = PruningProblem.from_model(model, x, energy="taylor", keep=0.5, data=(x, y))
    assert problem.keep_counts == {"conv1": 4, "conv3": 3}
    importance = taylor_reference(model, x, y)
    redundancy = {group: cosine_reference(model, group) for group in UNITS}
    entropy = entropy_reference(model, x)
    feasible = np.array(
        [
            np.concatenate([a, b])
            for a in itertools.product((0, 1), repeat=6)
            if sum(a) == 4
            for b in itertools.product((0, 1), repeat=5)
            if sum(b) == 3
        ]
    )
    terms = reference_terms(
        feasible, importance, redundancy, entropy, problem.keep_counts, 1.0, TaylorEnergy().coupling
    )
    totals = terms["importance"] + terms["redundancy"] + terms["activity"]
    best = feasible[np.argmin(totals)]
    params = {"seed": 0, "num_reads": 20} if solver == "neal" else {}
    solution = problem.solve(solver, **params)
    assert solution.kept == problem.keep_counts
    assert solution.energy == pytest.approx(totals.min(), rel=1e-5)
    np.testing.assert_array_equal(problem.state_from_masks(solution.masks), best)
