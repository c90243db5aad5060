"""Network architectures by name, with a spec that rebuilds the unpruned architecture.

``build(name, num_classes=10, in_channels=3)`` returns a freshly initialised network:

* ``resnet18``, ``resnet34``, ``resnet50``, ``resnet101``: CIFAR-form ResNets (3x3 stride-1
  stem, no max-pool) as in Salehinejad & Valaee (2021) / kuangliu/pytorch-cifar;
* ``resnet20``, ``resnet56``: He et al.'s 16-32-64 CIFAR ResNets with 1x1-projection shortcuts;
* ``alexnet``, ``squeezenet1_1``: adapted to 32x32 inputs;
* ``torchvision.<name>``: ``torchvision.models.get_model(<name>, weights=None,
  num_classes=...)``, unchanged (three input channels only).

Every network accepts 1- or 3-channel inputs of 28x28 or 32x32 (pooling before the classifier
is adaptive). Each built model carries ``model._ising_qubo_spec``, a JSON-serialisable dict
``{"builder": "ising_qubo.nets.models.build", "name": ..., "kwargs": {"num_classes": ...,
"in_channels": ...}}``; ``spec_of(model)`` reads it and ``from_spec(spec)`` builds the same
architecture again, untrained and unpruned (for example to reload a pruned checkpoint's origin).
The attribute survives in-place pruning, ``copy.deepcopy`` and whole-model pickling, not
``state_dict``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from ising_qubo.nets.models.alexnet import alexnet
from ising_qubo.nets.models.cifar_resnet import resnet18, resnet34, resnet50, resnet101
from ising_qubo.nets.models.resnet_cifar_he import resnet20, resnet56
from ising_qubo.nets.models.squeezenet import squeezenet1_1

__all__ = [
    "BUILDER",
    "SPEC_ATTR",
    "TORCHVISION_PREFIX",
    "available",
    "build",
    "from_spec",
    "spec_of",
]

BUILDER = "ising_qubo.nets.models.build"
# models saved before the network side moved to ising_qubo.nets name the old path
_LEGACY_BUILDERS = ("ising_qubo.models.build",)
SPEC_ATTR = "_ising_qubo_spec"
TORCHVISION_PREFIX = "torchvision."

_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "resnet101": resnet101,
    "resnet20": resnet20,
    "resnet56": resnet56,
    "alexnet": alexnet,
    "squeezenet1_1": squeezenet1_1,
}

_KWARGS = ("num_classes", "in_channels")


def available() -> list[str]:
    """Names ``build`` knows besides ``torchvision.<name>``."""
    return list(_REGISTRY)


def _check_count(label: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{label} must be a positive integer, got {value!r}")
    return int(value)


def _unknown(name: str) -> ValueError:
    return ValueError(
        f"unknown model {name!r}; available: {', '.join(available())}, "
        f"or {TORCHVISION_PREFIX}<name> for a torchvision model"
    )


def _build_torchvision(name: str, tv_name: str, num_classes: int, in_channels: int) -> nn.Module:
    if in_channels != 3:
        raise ValueError(
            f"{name!r}: torchvision models take 3 input channels, got in_channels={in_channels}"
        )
    import torchvision

    if tv_name not in torchvision.models.list_models():
        raise ValueError(
            f"unknown model {name!r}: torchvision has no model {tv_name!r}; "
            f"available here: {', '.join(available())}"
        )
    return torchvision.models.get_model(tv_name, weights=None, num_classes=num_classes)


def build(name: str, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """A freshly initialised network ``name`` with ``num_classes`` outputs.

    Raises ``ValueError`` for an unknown name (listing the valid ones), for a non-positive
    ``num_classes`` or ``in_channels``, and for ``in_channels != 3`` with a torchvision model.
    """
    if not isinstance(name, str):
        raise ValueError(f"model name must be a string, got {name!r}")
    num_classes = _check_count("num_classes", num_classes)
    in_channels = _check_count("in_channels", in_channels)
    if name.startswith(TORCHVISION_PREFIX):
        tv_name = name[len(TORCHVISION_PREFIX) :]
        model = _build_torchvision(name, tv_name, num_classes, in_channels)
    elif name in _REGISTRY:
        model = _REGISTRY[name](num_classes=num_classes, in_channels=in_channels)
    else:
        raise _unknown(name)
    setattr(
        model,
        SPEC_ATTR,
        {
            "builder": BUILDER,
            "name": name,
            "kwargs": {"num_classes": num_classes, "in_channels": in_channels},
        },
    )
    return model


def spec_of(model: nn.Module) -> dict | None:
    """A copy of the spec ``build`` attached to ``model``, or ``None`` if it has none."""
    spec = getattr(model, SPEC_ATTR, None)
    if not isinstance(spec, dict):
        return None
    copied = dict(spec)
    if isinstance(copied.get("kwargs"), dict):
        copied["kwargs"] = dict(copied["kwargs"])
    return copied


def from_spec(spec: dict) -> nn.Module:
    """Build the (unpruned, freshly initialised) architecture a spec describes.

    The spec must be a dict with exactly the keys ``builder`` (``"ising_qubo.nets.models.build"``),
    ``name`` (a string) and ``kwargs`` (a dict with some of ``num_classes``, ``in_channels``);
    anything else raises ``ValueError``.
    """
    if not isinstance(spec, dict):
        raise ValueError(f"model spec must be a dict, got {type(spec).__name__}")
    expected = {"builder", "name", "kwargs"}
    missing, extra = expected - spec.keys(), spec.keys() - expected
    if missing or extra:
        raise ValueError(
            f"model spec needs exactly the keys {sorted(expected)}; "
            f"missing {sorted(missing)}, unexpected {sorted(map(str, extra))}"
        )
    if spec["builder"] != BUILDER and spec["builder"] not in _LEGACY_BUILDERS:
        raise ValueError(f"model spec builder must be {BUILDER!r}, got {spec['builder']!r}")
    if not isinstance(spec["name"], str):
        raise ValueError(f"model spec name must be a string, got {spec['name']!r}")
    kwargs = spec["kwargs"]
    if not isinstance(kwargs, dict):
        raise ValueError(f"model spec kwargs must be a dict, got {type(kwargs).__name__}")
    unknown = set(kwargs) - set(_KWARGS)
    if unknown:
        raise ValueError(
            f"model spec kwargs: unexpected {sorted(map(str, unknown))}; allowed: {list(_KWARGS)}"
        )
    return build(spec["name"], **kwargs)
