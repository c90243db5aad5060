"""Torch-Pruning's side: its global pruning as a baseline at our exact budget (checked
against Torch-Pruning's own MetaPruner and a linear scan of thresholds), and the Ising
solution behind Torch-Pruning's conventions (IsingMetaPruner, IsingImportance), on ResNet-20
and on small torchvision ViT / ConvNeXt networks that need Torch-Pruning's options."""

from __future__ import annotations

import copy
import json
import math
import warnings

import numpy as np
import pytest
import torch
import torch_pruning as tp
from torch import nn

from ising_qubo.nets.models import build
from ising_qubo.pruning.groups import ModelGroups, count_params, uniform_keep_counts
from ising_qubo.pruning.importance import global_keep_counts, tp_group_scores, tp_importance
from ising_qubo.pruning.pruners import ImportancePruner, IsingImportance, IsingMetaPruner
from ising_qubo.pruning.pruners.tp import tp_keep_counts

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SA = {"num_reads": 2, "num_sweeps": 50, "seed": 0}
GLOBAL = {
    "tp-global-magnitude": "tp-magnitude",
    "tp-global-taylor": "tp-taylor",
    "tp-global-bn": "tp-bn",
}


def resnet20_and_batch(seed: int = 0):
    """ResNet-20 with random BatchNorm scales (all 1 at initialisation: BN-scale scores
    would all tie) and a labelled batch."""
    torch.manual_seed(seed)
    model = build("resnet20").eval()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.weight.data = torch.rand_like(module.weight) + 0.1
    return model, torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(
        sa[k].shape == sb[k].shape and torch.equal(sa[k], sb[k]) for k in sa
    )


def shapes(model: nn.Module) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


# ----- Torch-Pruning's global pruning at the exact budget ------------------------------------


@pytest.mark.parametrize("method", list(GLOBAL))
def test_global_baseline_meets_the_exact_budget_with_one_threshold(method):
    model, x, y = resnet20_and_batch(1)
    keep = 0.5
    pruner = ImportancePruner(copy.deepcopy(model), x, keep=keep, importance=method, data=(x, y))
    groups = pruner.model_groups
    masks = pruner.step()
    counts = {name: int(mask.sum()) for name, mask in masks.items()}
    assert counts == pruner.keep_counts
    # recomputed independently of the pruner: Torch-Pruning's normalised scores
    scores = tp_group_scores(ModelGroups(copy.deepcopy(model), x), GLOBAL[method], (x, y))
    assert set(scores) == set(masks)  # ResNet-20: every group is scored
    # the really pruned model meets the budget, and its cost is the one predicted
    pruner.prune()
    real = count_params(pruner.model) / count_params(model)
    assert real == pytest.approx(groups.kept_fraction(counts), abs=1e-12)
    assert real <= keep
    # one threshold: no dropped unit scores above a kept one (floors aside: none bind here)
    assert min(counts.values()) > 1
    kept = np.concatenate([scores[g][masks[g]] for g in masks])
    dropped = np.concatenate([scores[g][~masks[g]] for g in masks])
    assert dropped.max() <= kept.min()
    # and the longest such prefix: keeping the best dropped unit too breaks the budget
    best = max(masks, key=lambda g: scores[g][~masks[g]].max() if (~masks[g]).any() else -1)
    assert groups.kept_fraction({**counts, best: counts[best] + 1}) > keep
    # the allocation is not uniform, unlike the uniform Torch-Pruning baseline's
    fractions = [counts[g.name] / g.size for g in groups.groups]
    assert max(fractions) - min(fractions) > 0.1
    assert counts != uniform_keep_counts(groups, keep)


@pytest.mark.parametrize("method", list(GLOBAL))
def test_global_baseline_equals_torch_pruning_global_metapruner(method):
    """Same per-group normalised scores, same global ranking: pruned to the same number of
    units, Torch-Pruning's MetaPruner(global_pruning=True) removes the same channels."""
    model, x, y = resnet20_and_batch(2)
    ours = ImportancePruner(copy.deepcopy(model), x, keep=0.4, importance=method, data=(x, y))
    masks = ours.step()
    ours.prune()
    total = sum(len(m) for m in masks.values())
    kept = sum(int(m.sum()) for m in masks.values())
    theirs = copy.deepcopy(model)
    if GLOBAL[method] == "tp-taylor":  # the gradients our Taylor scores came from
        nn.functional.cross_entropy(theirs(x), y).backward()
    # Torch-Pruning keeps int(total * (1 - ratio)) units: exactly ours at this ratio
    ratio = 1 - (kept + 0.5) / total
    tp.pruner.MetaPruner(
        theirs,
        x,
        importance=tp_importance(GLOBAL[method]),
        global_pruning=True,
        pruning_ratio=ratio,
        ignored_layers=[theirs.fc],
    ).step()
    assert same_weights(ours.model, theirs)
    # while the uniform baseline of the same importance is a different network
    uniform = ImportancePruner(copy.deepcopy(model), x, keep=0.4, importance="tp-magnitude")
    uniform.step()
    uniform.prune()
    assert shapes(uniform.model) != shapes(ours.model)


def small_convnet() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 6, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 4),
    ).eval()
    return model, torch.randn(2, 3, 8, 8)


@pytest.mark.parametrize("keep", [0.15, 0.3, 0.55, 0.8])
@pytest.mark.parametrize("min_keep", [0.0, 0.3])
def test_global_keep_counts_is_the_best_threshold_with_floors(keep, min_keep):
    """Against a scan of every threshold: counts = max(floor, units scoring >= t), the
    feasible one that keeps the most units. Group "0" scores lowest everywhere, so its
    floor binds."""
    model, x = small_convnet()
    groups = ModelGroups(model, x)
    rng = np.random.default_rng(0)
    scores = {
        g.name: rng.random(g.size) + (0.0 if k == 0 else 2.0) for k, g in enumerate(groups.groups)
    }
    floors = {g.name: max(1, math.ceil(min_keep * g.size)) for g in groups.groups}
    best = None
    for t in sorted({float(s) for v in scores.values() for s in v} | {np.inf}):
        counts = {g: max(floors[g], int((s >= t).sum())) for g, s in scores.items()}
        if groups.kept_fraction(counts) <= keep:
            if best is None or sum(counts.values()) > sum(best.values()):
                best = counts
    if best is None:
        with pytest.raises(ValueError, match="keep="):
            global_keep_counts(groups, scores, keep, min_keep=min_keep)
        return
    got = global_keep_counts(groups, scores, keep, min_keep=min_keep)
    assert got == best
    assert all(got[g] >= floors[g] for g in got)


def test_global_keep_counts_floor_and_bad_input():
    model, x = small_convnet()
    groups = ModelGroups(model, x)
    scores = {g.name: np.arange(g.size, dtype=float) for g in groups.groups}
    first = groups.groups[0].name
    low = {**scores, first: scores[first] - 100.0}  # every unit of the first group ranks last
    counts = global_keep_counts(groups, low, 0.3)
    assert counts[first] == 1  # the floor keeps the layer alive
    with pytest.raises(ValueError, match="keep must be"):
        global_keep_counts(groups, scores, 0.0)
    with pytest.raises(ValueError, match="min_keep"):
        global_keep_counts(groups, scores, 0.5, min_keep=1.5)
    with pytest.raises(ValueError, match="'nope'"):
        global_keep_counts(groups, {"nope": np.ones(3)}, 0.5)
    with pytest.raises(ValueError, match="shape"):
        global_keep_counts(groups, {first: np.ones(3)}, 0.5)
    with pytest.raises(ValueError, match="NaN"):
        global_keep_counts(groups, {first: np.full(8, np.nan)}, 0.5)
    with pytest.raises(ValueError, match="keep=0.001 is below"):
        global_keep_counts(groups, scores, 0.001)
    with pytest.raises(ValueError, match="'tp-nope'"):
        tp_importance("tp-nope")


def test_global_bn_leaves_groups_without_batchnorm_whole():
    """Torch-Pruning's BN-scale importance cannot score a group without BatchNorm; its
    MetaPruner leaves such a group whole, and so does the baseline."""
    model, x = small_convnet()
    pruner = ImportancePruner(copy.deepcopy(model), x, keep=0.5, importance="tp-global-bn")
    masks = pruner.step()
    no_bn = pruner.groups[2].name  # the third conv has no BatchNorm
    assert no_bn not in masks and len(masks) == 2
    pruner.prune()
    assert pruner.model[6].out_channels == 6
    assert count_params(pruner.model) <= 0.5 * count_params(model)


# ----- the Ising solution with Torch-Pruning's conventions ----------------------------------


@pytest.mark.parametrize(("ratio", "round_to"), [(0.4, 4), (0.45, None)])
def test_pruning_ratio_gives_torch_pruning_shapes_and_the_ising_channels(ratio, round_to):
    model, x, _ = resnet20_and_batch(4)
    ours = copy.deepcopy(model)
    pruner = IsingMetaPruner(
        ours, x, pruning_ratio=ratio, ignored_layers=[ours.fc], round_to=round_to, solver_params=SA
    )
    pruner.step()
    theirs = copy.deepcopy(model)
    tp.pruner.MetaPruner(
        theirs,
        x,
        importance=tp.importance.MagnitudeImportance(),
        pruning_ratio=ratio,
        ignored_layers=[theirs.fc],
        round_to=round_to,
    ).step()
    assert shapes(ours) == shapes(theirs)
    assert all(k % (round_to or 1) == 0 for k in pruner.keep_counts.values())
    # the channels removed are those the Ising solution drops
    assert pruner.masks is not None
    removed = {name: idxs for name, out, idxs in pruner.pruning_history() if out}
    for group in pruner.model_groups.groups:
        dropped = np.flatnonzero(~pruner.masks[group.name]).tolist()
        assert sorted(removed[group.root]) == dropped
    with torch.no_grad():
        assert ours(x).shape == (8, 10)


def test_keep_is_a_fraction_of_parameters_met_by_the_pruned_model():
    model, x, _ = resnet20_and_batch(5)
    pruned = copy.deepcopy(model)
    pruner = IsingMetaPruner(pruned, x, keep=0.3, solver_params=SA)  # None: fc protected
    counts = pruner.keep_counts
    pruner.step()
    real = count_params(pruned) / count_params(model)
    assert real == pytest.approx(pruner.model_groups.kept_fraction(counts), abs=1e-12)
    assert 0.28 < real <= 0.3
    assert pruned.fc.out_features == 10
    # the same channel fraction everywhere: keep=0.3 of the parameters is about 0.55 of
    # the channels (a conv's weights shrink with kept inputs times kept outputs)
    fractions = [counts[g.name] / g.size for g in pruner.model_groups.groups]
    assert max(fractions) - min(fractions) < 0.07
    assert np.mean(fractions) == pytest.approx(math.sqrt(0.3), abs=0.05)
    # and the pruning_ratio that removes as many channels gives Torch-Pruning's counts
    sizes = {g.name: g.size for g in pruner.model_groups.groups}
    by_ratio = tp_keep_counts(pruner.model_groups, pruning_ratio=0.45)
    assert by_ratio == {name: int(n * 0.55) for name, n in sizes.items()}


def test_ising_importance_makes_metapruner_remove_the_ising_drops():
    model, x, _ = resnet20_and_batch(6)
    reference = copy.deepcopy(model)
    IsingMetaPruner(
        reference, x, pruning_ratio=0.5, ignored_layers=[reference.fc], solver_params=SA
    ).step()
    local = copy.deepcopy(model)
    importance = IsingImportance(
        local, x, pruning_ratio=0.5, ignored_layers=[local.fc], solver_params=SA
    )
    tp.pruner.MetaPruner(
        local, x, importance=importance, pruning_ratio=0.5, ignored_layers=[local.fc]
    ).step()
    assert same_weights(local, reference)
    # global ranking too, when Torch-Pruning removes as many channels in all
    glob = copy.deepcopy(model)
    importance = IsingImportance(
        glob, x, pruning_ratio=0.5, ignored_layers=[glob.fc], solver_params=SA
    )
    assert importance.solve() is not None and importance.solution is not None
    kept = sum(int(m.sum()) for m in importance.solution.masks.values())
    total = sum(g.size for g in importance.problem.groups)
    tp.pruner.MetaPruner(
        glob,
        x,
        importance=importance,
        global_pruning=True,
        pruning_ratio=1 - (kept + 0.5) / total,
        ignored_layers=[glob.fc],
    ).step()
    assert same_weights(glob, reference)
    # it scores the model it solved, once
    again = copy.deepcopy(model)
    importance = IsingImportance(
        again, x, pruning_ratio=0.5, ignored_layers=[again.fc], solver_params=SA
    )
    pruner = tp.pruner.MetaPruner(
        again,
        x,
        importance=importance,
        pruning_ratio=0.5,
        iterative_steps=2,
        ignored_layers=[again.fc],
    )
    pruner.step()
    with pytest.raises(ValueError, match="iterative_steps=1"):
        pruner.step()


def test_interactive_step_yields_torch_pruning_groups():
    model, x, _ = resnet20_and_batch(7)
    direct = copy.deepcopy(model)
    IsingMetaPruner(direct, x, pruning_ratio=0.3, solver_params=SA).step()
    stepwise = copy.deepcopy(model)
    pruner = IsingMetaPruner(stepwise, x, pruning_ratio=0.3, solver_params=SA)
    groups = pruner.step(interactive=True)
    assert groups is not None
    for group in groups:
        assert isinstance(group, tp.dependency.Group)
        group.prune()
    assert same_weights(stepwise, direct)
    with pytest.warns(UserWarning, match="already pruned"):
        pruner.step()


def test_tp_keep_counts_and_pruner_bad_input():
    model, x, _ = resnet20_and_batch(8)
    groups = ModelGroups(model, x)
    with pytest.raises(ValueError, match="exactly one"):
        tp_keep_counts(groups, pruning_ratio=0.5, keep=0.5)
    with pytest.raises(ValueError, match="exactly one"):
        tp_keep_counts(groups)
    with pytest.raises(ValueError, match="pruning_ratio must"):
        tp_keep_counts(groups, pruning_ratio=1.0)
    with pytest.raises(ValueError, match="round_to"):
        tp_keep_counts(groups, pruning_ratio=0.5, round_to=0)
    with pytest.raises(ValueError, match="keep=1e-05 is below"):
        tp_keep_counts(groups, keep=1e-5)
    assert tp_keep_counts(groups, keep=1.0) == {g.name: g.size for g in groups.groups}
    assert tp_keep_counts(groups, pruning_ratio=0.0) == {g.name: g.size for g in groups.groups}
    # round_to larger than the surviving count: one round_to stays
    assert set(tp_keep_counts(groups, pruning_ratio=0.9, round_to=8).values()) == {8}
    with pytest.raises(ValueError, match="'nowhere'"):
        IsingMetaPruner(model, x, ignored_layers=["nowhere"])
    with pytest.raises(ValueError, match="'l9'"):
        IsingMetaPruner(model, x, importance="l9")
    with pytest.raises(ValueError, match="min_keep"):
        ImportancePruner(model, x, importance="tp-global-magnitude", min_keep=2.0).step()


# ----- ViT and ConvNeXt: Torch-Pruning's options prune them whole ---------------------------


def small_vit():
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(9)
    model = VisionTransformer(
        image_size=32,
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        mlp_dim=32,
        num_classes=10,
    ).eval()
    return model, torch.randn(1, 3, 32, 32)


def small_convnext():
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt

    torch.manual_seed(10)
    model = ConvNeXt([CNBlockConfig(16, 32, 1), CNBlockConfig(32, None, 1)], num_classes=10)
    return model.eval(), torch.randn(1, 3, 32, 32)


def vit_options(model) -> dict:
    heads = model.encoder.layers[0].self_attention.num_heads
    return {
        "unwrapped_parameters": [(model.encoder.pos_embedding, 2), (model.class_token, 2)],
        "round_to": heads,  # the attention's embedding must stay divisible by its heads
        "ignored_layers": [model.heads],
    }


def convnext_options(model) -> dict:
    return {
        "unwrapped_parameters": [
            (m.layer_scale, 0) for m in model.modules() if hasattr(m, "layer_scale")
        ],
        "ignored_layers": [model.classifier[2]],  # the last Linear (its LayerNorm is pruned)
    }


def prune_with(model, x, options, fix=None, **kw):
    """Pruned copy, its params fraction, the predicted one, the groups' root names."""
    pruned = copy.deepcopy(model)
    mapped = _map_options(model, pruned, options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the undeclared run warns about what stays whole
        pruner = IsingMetaPruner(pruned, x, solver_params=SA, **mapped, **kw)
    pruner.step()
    if fix is not None:
        fix(pruned)
    with torch.no_grad():
        assert pruned(x).shape == (1, 10)
    real = count_params(pruned) / count_params(model)
    return real, pruner.model_groups.kept_fraction(pruner.keep_counts), pruner


def _map_options(original, copied, options):
    """The same options on a deep copy (its own parameters and modules)."""
    params = {id(p): n for n, p in original.named_parameters()}
    modules = {id(m): n for n, m in original.named_modules()}
    new_params = dict(copied.named_parameters())
    new_modules = dict(copied.named_modules())
    out = dict(options)
    if "unwrapped_parameters" in options:
        out["unwrapped_parameters"] = [
            (new_params[params[id(p)]], d) for p, d in options["unwrapped_parameters"]
        ]
    if "ignored_layers" in options:
        out["ignored_layers"] = [new_modules[modules[id(m)]] for m in options["ignored_layers"]]
    return out


def vit_fix(model) -> None:
    model.hidden_dim = model.conv_proj.out_channels  # torchvision keeps it outside its layers


@pytest.mark.parametrize("net", ["vit", "convnext"])
def test_torch_pruning_options_prune_vit_and_convnext_whole(net):
    model, x = small_vit() if net == "vit" else small_convnext()
    options = vit_options(model) if net == "vit" else convnext_options(model)
    fix = vit_fix if net == "vit" else None
    undeclared = {k: v for k, v in options.items() if k == "ignored_layers"}
    if net == "vit":
        undeclared["round_to"] = options["round_to"]
    before, _, partial = prune_with(model, x, undeclared, fix, pruning_ratio=0.5)
    after, predicted, whole = prune_with(model, x, options, fix, pruning_ratio=0.5)
    stem = "conv_proj" if net == "vit" else "features.0.0"
    assert stem not in {g.name for g in partial.model_groups.groups}  # tied: left whole
    assert stem in {g.name for g in whole.model_groups.groups}
    assert after < before - 0.2
    assert after == pytest.approx(predicted, abs=1e-12)  # the cost model is exact here too
    # and a parameter budget is met on the really pruned model
    real, predicted, _ = prune_with(model, x, options, fix, keep=0.4)
    assert real == pytest.approx(predicted, abs=1e-12)
    assert 0.3 < real <= 0.4


@pytest.mark.slow
def test_torchvision_vit_b_16_and_convnext_tiny_with_torch_pruning_options():
    """The real networks (224x224, ten classes): about 100 s for both on one CPU thread."""
    import torchvision

    x = torch.randn(1, 3, 224, 224)
    torch.manual_seed(0)
    vit = torchvision.models.vit_b_16(num_classes=10).eval()
    real, predicted, _ = prune_with(vit, x, vit_options(vit), vit_fix, pruning_ratio=0.5)
    assert real == pytest.approx(predicted, abs=1e-12) and real < 0.3  # 0.67 undeclared
    convnext = torchvision.models.convnext_tiny(num_classes=10).eval()
    real, predicted, _ = prune_with(convnext, x, convnext_options(convnext), pruning_ratio=0.5)
    assert real == pytest.approx(predicted, abs=1e-12) and real < 0.3  # 0.53 undeclared


# ----- the command line ------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_method_tp_global_prunes_unevenly_at_the_budget(tmp_path, image_folder, capsys):
    from ising_qubo.cli.app import main

    def args(method: str, out) -> list[str]:
        return [
            *("train", "--method", method, "--model", "resnet20", "--dataset", "imagefolder"),
            *("--data-dir", str(image_folder), "--epochs", "0", "--finetune-epochs", "0"),
            *("--batch-size", "16", "--keep", "0.4", "--out", str(out), "--no-progress"),
        ]

    assert main(args("tp-global-taylor", tmp_path / "run")) == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    fractions = [kept / size for kept, size in report["pruning"]["kept"].values()]
    assert max(fractions) - min(fractions) > 0.1
    assert report["params"]["after"] <= 0.4 * report["params"]["before"]
    capsys.readouterr()
    assert main(args("tp-global-nope", tmp_path / "nope")) == 2
    assert "'tp-global-nope'" in capsys.readouterr().err
