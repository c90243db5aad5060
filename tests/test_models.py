"""Model zoo: shapes, sizes, specs, errors, torchvision pass-through, Torch-Pruning."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch_pruning as tp
import torchvision
from torch import nn

from ising_qubo.nets import models
from ising_qubo.nets.models import available, build, from_spec, spec_of

NAMES = [
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet20",
    "resnet56",
    "alexnet",
    "squeezenet1_1",
]
SLOW_NAMES = {"resnet34", "resnet50", "resnet101"}

# Exact parameter counts with 10 classes (option-B shortcuts for resnet20/56).
PARAMS = {
    "resnet18": 11_173_962,
    "resnet34": 21_282_122,
    "resnet50": 23_520_842,
    "resnet101": 42_512_970,
    "resnet20": 272_474,
    "resnet56": 855_770,
    "alexnet": 23_272_266,
    "squeezenet1_1": 727_626,
}


def _maybe_slow(names):
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_NAMES else n for n in names]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def on_meta(name: str, **kwargs) -> nn.Module:
    """Build without allocating or initialising real storage (fast, for shapes and counts)."""
    with torch.device("meta"):
        return build(name, **kwargs)


def head(model: nn.Module) -> nn.Module:
    """The classifier: ``fc``, the last Linear of ``classifier``, or ``classifier.1``."""
    if hasattr(model, "fc"):
        return model.fc
    last = model.classifier[-1]
    return last if isinstance(last, nn.Linear) else model.classifier[1]


def test_available_lists_every_family():
    assert available() == NAMES
    available().append("mutated")
    assert "mutated" not in available()


@pytest.mark.parametrize("name", _maybe_slow(NAMES))
def test_output_shape_cifar(name):
    torch.manual_seed(0)
    model = build(name).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["resnet18", "resnet20", "alexnet", "squeezenet1_1"])
def test_output_shape_fashion_mnist(name):
    torch.manual_seed(0)
    model = build(name, num_classes=7, in_channels=1)
    model.train()  # BatchNorm in training mode must cope with a batch of 2 as well
    out = model(torch.randn(2, 1, 28, 28))
    assert out.shape == (2, 7)
    out.sum().backward()


@pytest.mark.parametrize("name", NAMES)
def test_parameter_counts(name):
    assert n_params(on_meta(name)) == PARAMS[name]


def test_parameter_counts_match_the_literature():
    assert n_params(on_meta("resnet20")) == pytest.approx(0.27e6, rel=0.05)
    assert n_params(on_meta("resnet56")) == pytest.approx(0.85e6, rel=0.05)
    assert n_params(on_meta("resnet18")) == pytest.approx(11.17e6, rel=0.02)


def test_num_classes_and_in_channels_reach_the_layers():
    model = on_meta("resnet56", num_classes=100, in_channels=1)
    assert model.conv1.in_channels == 1 and model.fc.out_features == 100
    assert model.layer3[0].downsample[0].kernel_size == (1, 1)  # option B projection
    assert len(model.layer1) == len(model.layer2) == len(model.layer3) == 9
    assert not hasattr(model, "layer4")
    model = on_meta("squeezenet1_1", num_classes=100, in_channels=1)
    assert model.features[0].in_channels == 1
    assert isinstance(model.classifier[1], nn.Conv2d) and model.classifier[1].out_channels == 100
    model = on_meta("alexnet", num_classes=100, in_channels=1)
    assert model.features[0].in_channels == 1 and head(model).out_features == 100
    assert sum(isinstance(m, nn.Linear) for m in model.classifier) == 3


def test_module_paths_are_conventional():
    names = dict(on_meta("resnet18").named_modules())
    for path in [
        "conv1",
        "bn1",
        "layer1.0.conv1",
        "layer2.0.conv1",
        "layer2.0.downsample.0",
        "layer4.1.bn2",
        "fc",
    ]:
        assert path in names
    names = dict(on_meta("resnet50").named_modules())
    assert "layer3.5.conv3" in names and names["fc"].in_features == 2048
    assert isinstance(dict(on_meta("squeezenet1_1").named_modules())["classifier.1"], nn.Conv2d)


def test_resnet_cifar_stem_has_no_maxpool():
    model = on_meta("resnet18")
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())


def test_weight_initialisation():
    torch.manual_seed(0)
    model = build("resnet20")
    conv = model.layer3[1].conv2  # 64 -> 64, 3x3: fan_out = 64 * 9
    assert conv.weight.std().item() == pytest.approx((2 / (64 * 9)) ** 0.5, rel=0.1)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert torch.all(module.weight == 1) and torch.all(module.bias == 0)
    squeeze = build("squeezenet1_1")
    assert squeeze.classifier[1].weight.std().item() == pytest.approx(0.01, rel=0.2)
    assert torch.all(squeeze.features[0].bias == 0)


@pytest.mark.parametrize("name", NAMES + ["torchvision.resnet18"])
def test_spec_round_trip(name):
    model = on_meta(name, num_classes=100)
    spec = spec_of(model)
    assert spec == {
        "builder": "ising_qubo.nets.models.build",
        "name": name,
        "kwargs": {"num_classes": 100, "in_channels": 3},
    }
    assert json.loads(json.dumps(spec)) == spec
    with torch.device("meta"):
        again = from_spec(json.loads(json.dumps(spec)))
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert shapes == {k: v.shape for k, v in again.state_dict().items()}
    assert list(shapes) == list(again.state_dict())
    assert spec_of(again) == spec


def test_spec_of_returns_a_copy_and_survives_copies():
    model = on_meta("resnet20", in_channels=1)
    spec = spec_of(model)
    spec["kwargs"]["num_classes"] = 3
    spec["name"] = "alexnet"
    assert spec_of(model)["kwargs"] == {"num_classes": 10, "in_channels": 1}
    assert spec_of(copy.deepcopy(model)) == spec_of(model)
    assert spec_of(nn.Linear(2, 2)) is None


def test_spec_survives_pruning():
    torch.manual_seed(0)
    model = build("resnet20")
    example = torch.randn(1, 3, 32, 32)
    pruner = tp.pruner.MagnitudePruner(
        model,
        example,
        tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=0.5,
        ignored_layers=[model.fc],
    )
    pruner.step()
    spec = spec_of(model)
    assert spec["name"] == "resnet20"
    assert n_params(from_spec(spec)) == PARAMS["resnet20"] > n_params(model)


def test_unknown_name_is_named_and_valid_names_listed():
    with pytest.raises(ValueError) as info:
        build("resnet19")
    message = str(info.value)
    assert "resnet19" in message
    for name in NAMES:
        assert name in message
    with pytest.raises(ValueError, match="resnet"):
        build("")
    with pytest.raises(ValueError, match="string"):
        build(18)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_classes": 0},
        {"num_classes": -1},
        {"num_classes": 2.0},
        {"num_classes": True},
        {"in_channels": 0},
        {"in_channels": -3},
        {"in_channels": "3"},
    ],
)
def test_bad_counts_are_rejected(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        build("resnet20", **kwargs)


def test_torchvision_pass_through():
    torch.manual_seed(0)
    model = build("torchvision.resnet18", num_classes=10)
    assert isinstance(model, torchvision.models.ResNet)
    assert model.fc.out_features == 10 and model.conv1.stride == (2, 2)  # untouched ImageNet stem
    assert spec_of(model)["name"] == "torchvision.resnet18"
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert n_params(model) == n_params(
        torchvision.models.get_model("resnet18", weights=None, num_classes=10)
    )


def test_torchvision_errors():
    with pytest.raises(ValueError, match="in_channels"):
        build("torchvision.resnet18", in_channels=1)
    with pytest.raises(ValueError, match="torchvision.nonexistent_net"):
        build("torchvision.nonexistent_net")
    with pytest.raises(ValueError, match="num_classes"):
        build("torchvision.resnet18", num_classes=0)


@pytest.mark.parametrize(
    "spec, match",
    [
        ("resnet20", "dict"),
        ({"name": "resnet20", "kwargs": {}}, "builder"),
        ({"builder": "ising_qubo.nets.models.build", "name": "resnet20"}, "kwargs"),
        (
            {"builder": "ising_qubo.nets.models.build", "name": "resnet20", "kwargs": {}, "x": 1},
            "'x'",
        ),
        ({"builder": "somewhere.else", "name": "resnet20", "kwargs": {}}, "somewhere.else"),
        ({"builder": "ising_qubo.nets.models.build", "name": 20, "kwargs": {}}, "name"),
        ({"builder": "ising_qubo.nets.models.build", "name": "resnet20", "kwargs": []}, "kwargs"),
        (
            {
                "builder": "ising_qubo.nets.models.build",
                "name": "resnet20",
                "kwargs": {"depth": 20},
            },
            "depth",
        ),
        (
            {
                "builder": "ising_qubo.nets.models.build",
                "name": "resnet20",
                "kwargs": {"num_classes": 0},
            },
            "num_classes",
        ),
        ({"builder": "ising_qubo.nets.models.build", "name": "vgg16", "kwargs": {}}, "vgg16"),
    ],
)
def test_from_spec_rejects_bad_content(spec, match):
    with pytest.raises(ValueError, match=match):
        from_spec(spec)


def test_from_spec_defaults_missing_kwargs():
    spec = {"builder": models.BUILDER, "name": "resnet20", "kwargs": {}}
    with torch.device("meta"):
        model = from_spec(spec)
    assert spec_of(model)["kwargs"] == {"num_classes": 10, "in_channels": 3}


def _prune_half(model: nn.Module, in_channels: int, size: int = 32) -> nn.Module:
    example = torch.randn(1, in_channels, size, size)
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    assert len(list(graph.get_all_groups(root_module_types=[nn.Conv2d, nn.Linear]))) > 0
    classifier = head(model)
    out_features = (
        classifier.out_features if isinstance(classifier, nn.Linear) else classifier.out_channels
    )
    before = n_params(model)
    pruner = tp.pruner.MagnitudePruner(
        model,
        example,
        tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=0.5,
        ignored_layers=[classifier],
    )
    pruner.step()
    after = n_params(model)
    assert after < 0.5 * before  # about a quarter of the weights survive halving both sides
    with torch.no_grad():
        out = model.eval()(torch.randn(2, in_channels, size, size))
    assert out.shape == (2, out_features)
    assert torch.isfinite(out).all()
    return model


@pytest.mark.parametrize("name", ["resnet20", "alexnet", "squeezenet1_1"])
def test_torch_pruning_halves_the_network(name):
    torch.manual_seed(0)
    model = _prune_half(build(name), 3)
    if name == "resnet20":  # the residual coupling is respected: stage widths stay consistent
        assert model.layer1[0].conv2.out_channels == model.conv1.out_channels == 8
        assert model.layer3[0].downsample[0].out_channels == model.fc.in_features == 32
    if name == "squeezenet1_1":  # Fire concatenation: the head conv sees both expand halves
        last = model.features[-1]
        assert model.classifier[1].in_channels == (
            last.expand1x1.out_channels + last.expand3x3.out_channels
        )
        assert model.classifier[1].out_channels == 10


def test_torch_pruning_single_channel_28x28():
    torch.manual_seed(0)
    model = _prune_half(build("resnet20", in_channels=1), 1, size=28)
    assert model.conv1.in_channels == 1


@pytest.mark.slow
def test_torch_pruning_resnet18():
    torch.manual_seed(0)
    model = _prune_half(build("resnet18"), 3)
    assert model.layer2[0].conv1.out_channels == 64
