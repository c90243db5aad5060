"""IsingPruner in a hand-written training loop (Ising dropout), its schedule and state,
the importance baseline, and prune_model on torchvision networks."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ising_qubo.nets.models import build
from ising_qubo.pruning.groups import ModelGroups, count_params, uniform_keep_counts
from ising_qubo.pruning.pruners import ImportancePruner, IsingPruner, prune_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


SA = {"num_reads": 2, "num_sweeps": 50, "seed": 0}


def bn_of(conv_name: str) -> str:
    """The BatchNorm after a conv of ResNet-20, by the architecture's naming."""
    if conv_name.endswith("downsample.0"):
        return conv_name[:-1] + "1"
    head, _, conv = conv_name.rpartition(".")
    return (head + "." if head else "") + conv.replace("conv", "bn")


def resnet20_and_batch(seed: int = 0):
    torch.manual_seed(seed)
    model = build("resnet20")
    x = torch.randn(8, 3, 32, 32)
    y = torch.randint(0, 10, (8,))
    return model, x, y


def dropped_units(pruner, masks) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(conv name, dropped channels, kept channels) of every conv the groups produce."""
    out = []
    for group in pruner.groups:
        keep = masks[group.name]
        for layer in group.layers:
            channels = np.asarray(layer.channels)
            units = np.asarray(layer.units)
            out.append((layer.name, channels[~keep[units]], channels[keep[units]]))
    return out


def record_outputs(model: nn.Module, names: list[str]):
    outputs: dict[str, torch.Tensor] = {}
    hooks = [
        model.get_submodule(name).register_forward_hook(
            lambda m, i, o, name=name: outputs.__setitem__(name, o.detach().clone())
        )
        for name in names
    ]
    return outputs, hooks


# ----- Ising dropout in a manual loop --------------------------------------------------------


@pytest.mark.slow
def test_dropped_units_are_frozen_and_silent_kept_units_learn():
    model, x, y = resnet20_and_batch()
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    # two plain steps first: every momentum buffer is non-zero when the dropout starts, so
    # the optimizer would move the dropped weights if nothing undid it
    for _ in range(2):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    pruner = IsingPruner(model, x, keep=0.5, every=2, patience=0, solver_params=SA)
    convs = [layer.name for group in pruner.groups for layer in group.layers]
    bns = [bn_of(name) for name in convs]
    assert all(isinstance(model.get_submodule(b), nn.BatchNorm2d) for b in bns)
    iterations = 6
    for it in range(iterations):
        before = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if it == 0:
            assert pruner.masks is None and not pruner.energy_history
        pruner.before_forward(it)
        masks = {k: v.copy() for k, v in pruner.masks.items()}
        assert {k: int(v.sum()) for k, v in masks.items()} == pruner.problem.keep_counts
        units = dropped_units(pruner, masks)
        outputs, hooks = record_outputs(model, convs + bns)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        for hook in hooks:
            hook.remove()
        # during the masked pass the dropped channels output exactly zero
        for name, dropped, kept in units:
            assert len(dropped) and len(kept)
            for module_name in (name, bn_of(name)):
                out = outputs[module_name]
                assert torch.count_nonzero(out[:, dropped]) == 0, module_name
                assert torch.count_nonzero(out[:, kept]) > 0, module_name
        loss.backward()
        pruner.after_backward(it)
        for name, dropped, _ in units:
            assert torch.count_nonzero(model.get_submodule(name).weight.grad[dropped]) == 0
        optimizer.step()
        pruner.after_step(it, loss.item())
        after = model.state_dict()
        for name, dropped, kept in units:
            bn = bn_of(name)
            for key in (
                f"{name}.weight",
                f"{bn}.weight",
                f"{bn}.bias",
                f"{bn}.running_mean",
                f"{bn}.running_var",
            ):
                assert torch.equal(after[key][dropped], before[key][dropped]), (it, key)
            for key in (f"{name}.weight", f"{bn}.weight"):
                moved = (after[key][kept] != before[key][kept]).reshape(len(kept), -1).any(1)
                assert bool(moved.all()), (it, key)
            assert not torch.equal(
                after[f"{bn}.running_mean"][kept], before[f"{bn}.running_mean"][kept]
            )
        # the real weights are back, not zeros
        for name, dropped, _ in units:
            assert torch.count_nonzero(model.get_submodule(name).weight[dropped]) > 0
    # re-solved at iterations 2, 4 and 6, after the first solve
    assert [row["iteration"] for row in pruner.energy_history] == [0, 2, 4, 6]
    assert not pruner.frozen
    for row in pruner.energy_history:
        assert np.isfinite(row["energy"]) and row["kept"] == sum(
            pruner.problem.keep_counts.values()
        )


def run_hooks(pruner: IsingPruner, iterations: int, start: int = 0) -> None:
    """The hook calls of a loop without the training (enough for the schedule)."""
    for it in range(start, start + iterations):
        pruner.before_forward(it)
        pruner.after_backward(it)
        pruner.after_step(it, 1.0)


def test_freeze_by_patience_and_by_epoch():
    model, x, _ = resnet20_and_batch(1)
    stalls = IsingPruner(model, x, keep=0.5, every=1, patience=1, tolerance=1e9, solver_params=SA)
    run_hooks(stalls, 1)
    assert stalls.frozen and len(stalls.energy_history) == 2
    masks = {k: v.copy() for k, v in stalls.masks.items()}
    run_hooks(stalls, 3, start=1)
    assert len(stalls.energy_history) == 2  # frozen: no more solves, masks stay
    assert all(np.array_equal(masks[k], v) for k, v in stalls.masks.items())

    improving = IsingPruner(
        model, x, keep=0.5, every=1, patience=1, tolerance=-1e9, solver_params=SA
    )
    run_hooks(improving, 3)
    assert not improving.frozen and len(improving.energy_history) == 4

    by_epoch = IsingPruner(
        model, x, keep=0.5, every=1, patience=0, freeze_epoch=1, solver_params=SA
    )
    run_hooks(by_epoch, 2)
    by_epoch.on_epoch_end(0)
    assert not by_epoch.frozen and len(by_epoch.energy_history) == 3
    by_epoch.on_epoch_end(1)
    assert by_epoch.frozen
    run_hooks(by_epoch, 2, start=2)
    assert len(by_epoch.energy_history) == 3

    once = IsingPruner(model, x, keep=0.5, every=0, solver_params=SA)
    run_hooks(once, 3)
    assert len(once.energy_history) == 1


def test_prune_after_training_gives_a_smaller_working_model():
    model, x, y = resnet20_and_batch(2)
    original = copy.deepcopy(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    pruner = IsingPruner(model, x, keep=0.5, every=2, patience=0, solver_params=SA)
    model.train()
    for it in range(3):
        pruner.before_forward(it)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        pruner.after_backward(it)
        optimizer.step()
        pruner.after_step(it, loss.item())
    trained = {k: v.detach().clone() for k, v in model.state_dict().items()}
    masks = {k: v.copy() for k, v in pruner.masks.items()}
    pruner.before_forward(3)  # mid-step: prune puts the real weights back first
    history = pruner.prune()
    assert not pruner.dropout.active
    assert {name for name, _ in history} == {n for n, m in masks.items() if not m.all()}
    assert count_params(model) <= 0.55 * count_params(original)
    keep_out, keep_in = masks["layer2.1.conv1"], masks["layer2.0.downsample.0"]
    np.testing.assert_array_equal(
        model.layer2[1].conv1.weight.detach().numpy(),
        trained["layer2.1.conv1.weight"].numpy()[keep_out][:, keep_in],
    )
    np.testing.assert_array_equal(
        model.layer2[1].bn1.bias.detach().numpy(), trained["layer2.1.bn1.bias"].numpy()[keep_out]
    )
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (8, 10)
    # the hook is spent: no slices are left to zero
    assert pruner.dropout.slices == []


def test_state_dict_round_trip_restores_masks():
    model, x, y = resnet20_and_batch(3)
    pruner = IsingPruner(model, x, keep=0.5, every=1, patience=0, solver_params=SA)
    run_hooks(pruner, 2)
    state = pruner.state_dict()
    assert json.loads(json.dumps(state)) == state  # plain data
    fresh_model = copy.deepcopy(model)
    fresh = IsingPruner(fresh_model, x, keep=0.5, every=1, patience=0, solver_params=SA)
    fresh.load_state_dict(state)
    assert fresh.masks.keys() == pruner.masks.keys()
    for name, mask in pruner.masks.items():
        np.testing.assert_array_equal(fresh.masks[name], mask)
        assert fresh.masks[name].dtype == bool
    assert fresh.calls == pruner.calls == 2
    assert fresh.energy_history == pruner.energy_history
    # the restored hook masks at once, without solving again
    units = dropped_units(fresh, fresh.masks)
    outputs, hooks = record_outputs(fresh_model, [name for name, _, _ in units])
    fresh_model.eval()
    with fresh.dropout.masked(), torch.no_grad():
        fresh_model(x)
    for hook in hooks:
        hook.remove()
    for name, dropped, kept in units:
        assert torch.count_nonzero(outputs[name][:, dropped]) == 0
        assert torch.count_nonzero(outputs[name][:, kept]) > 0
    fresh.before_forward(0)
    fresh.after_step(0)  # calls 3: would re-solve, and does
    assert len(fresh.energy_history) == len(state["energy_history"]) + 1


def test_importance_pruner_is_the_l1_top_k():
    model, x, _ = resnet20_and_batch(4)
    baseline = ImportancePruner(copy.deepcopy(model), x, keep=0.5, importance="l1")
    masks = baseline.step()
    counts = uniform_keep_counts(ModelGroups(model, x), 0.5)
    assert {k: int(v.sum()) for k, v in masks.items()} == counts
    w = model.layer3[1].conv1.weight.detach().double().numpy()
    l1 = np.abs(w).sum(axis=(1, 2, 3))
    expected = np.zeros(64, dtype=bool)
    expected[np.argsort(-l1, kind="stable")[: counts["layer3.1.conv1"]]] = True
    np.testing.assert_array_equal(masks["layer3.1.conv1"], expected)
    baseline.prune()
    assert count_params(baseline.model) <= 0.55 * count_params(model)
    with pytest.raises(ValueError, match="'nope'"):
        ImportancePruner(model, x, importance="nope")


def test_global_baseline_chooses_its_counts_on_the_main_process_and_keeps_its_state():
    model, x, _ = resnet20_and_batch(4)
    calls = []

    def run_on_main(job):
        calls.append(1)
        return job()

    baseline = ImportancePruner(
        copy.deepcopy(model), x, keep=0.4, importance="tp-global-magnitude", run_on_main=run_on_main
    )
    masks = baseline.step()
    assert calls == [1]
    counts = {k: int(v.sum()) for k, v in masks.items()}
    assert baseline.keep_counts == counts
    assert counts != uniform_keep_counts(baseline.model_groups, 0.4)  # chosen per layer
    assert baseline.model_groups.kept_fraction(counts) <= 0.4
    fresh = ImportancePruner(copy.deepcopy(model), x, keep=0.4, importance="tp-global-magnitude")
    fresh.load_state_dict(json.loads(json.dumps(baseline.state_dict())))
    assert fresh.masks is not None
    assert all(np.array_equal(fresh.masks[k], masks[k]) for k in masks)
    fresh.prune()
    assert count_params(fresh.model) <= 0.4 * count_params(model)


# ----- prune_model on torchvision networks ---------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_prune_model_on_torchvision(name):
    import torchvision

    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pruned = prune_model(model, x, keep=0.5, solver_params=SA)
    assert pruned is not model
    assert count_params(pruned) <= 0.55 * count_params(model)
    with torch.no_grad():
        assert pruned(x).shape == (2, 10)
    after = model.state_dict()  # the input model is untouched
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)
    with torch.no_grad():
        assert model(x).shape == (2, 10)


def test_prune_model_inplace_and_ipruning():
    model, x, _ = resnet20_and_batch(5)
    model.eval()
    total = count_params(model)
    pruned = prune_model(model, x, keep=0.4, energy="ipruning", inplace=True, solver_params=SA)
    assert pruned is model
    assert count_params(model) <= 0.45 * total
    with torch.no_grad():
        assert model(x).shape == (8, 10)


def test_prune_model_builds_the_energy_once_and_prunes_as_the_pruner(monkeypatch):
    from ising_qubo.pruning.energies import RedundancyEnergy

    builds = []
    build = RedundancyEnergy.build
    monkeypatch.setattr(
        RedundancyEnergy, "build", lambda self, inputs: builds.append(1) or build(self, inputs)
    )
    model, x, _ = resnet20_and_batch(8)
    model.eval()
    pruned = prune_model(model, x, keep=0.5, solver_params=SA)
    assert len(builds) == 1
    # the same model the training hook reaches with one solve (which builds twice)
    hooked = copy.deepcopy(model)
    pruner = IsingPruner(hooked, x, keep=0.5, every=0, solver_params=SA)
    pruner.step()
    pruner.prune()
    assert len(builds) == 3
    assert pruned.state_dict().keys() == hooked.state_dict().keys()
    for key, value in hooked.state_dict().items():
        assert torch.equal(pruned.state_dict()[key], value), key


# ----- bad input ----------------------------------------------------------------------------


def test_pruner_bad_input():
    model, x, _ = resnet20_and_batch(6)
    with pytest.raises(ValueError, match="'paper'"):
        IsingPruner(model, x, energy="paper")
    with pytest.raises(ValueError, match="'l9'"):
        IsingPruner(model, x, importance="l9")
    with pytest.raises(ValueError, match="'euclid'"):
        IsingPruner(model, x, similarity="euclid")
    with pytest.raises(ValueError, match="no Conv or Linear"):
        IsingPruner(nn.Sequential(nn.ReLU()), x)
    with pytest.raises(ValueError, match="no Conv or Linear"):
        prune_model(nn.Sequential(nn.Flatten()), x)
    pruner = IsingPruner(model, x, keep=0.5, every=0, solver_params=SA)
    bad = {"layer1.1.conv1": [True] * 15}
    with pytest.raises(ValueError, match="layer1.1.conv1"):
        pruner.load_state_dict({"masks": bad})


def test_building_a_pruner_keeps_the_models_modes():
    model, x, _ = resnet20_and_batch(7)
    model.train()
    model.bn1.eval()  # a deliberately frozen BatchNorm stays frozen
    IsingPruner(model, x, keep=0.5, every=0, solver_params=SA).step()
    assert model.training and model.layer1[0].bn1.training and not model.bn1.training
    # the paper's energy runs the model for feature maps; Taylor importance for gradients
    y = torch.randint(0, 10, (len(x),))
    IsingPruner(model, x, keep=0.5, every=0, energy="ipruning", solver_params=SA).step()
    assert model.training and model.layer1[0].bn1.training and not model.bn1.training
    IsingPruner(
        model, x, keep=0.5, every=0, importance="taylor", data=(x, y), solver_params=SA
    ).step()
    assert model.training and model.layer1[0].bn1.training and not model.bn1.training
    model.eval()
    ModelGroups(model, x)
    assert not any(module.training for module in model.modules())
