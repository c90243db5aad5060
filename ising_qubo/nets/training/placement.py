"""Where and how the model runs: the device (:func:`resolve_device`), moving the model
there (:func:`prepare_model`), and putting it in train or eval mode for a while."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from ising_qubo import devices

__all__ = ["in_mode", "model_device", "prepare_model", "resolve_device"]


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``None`` or ``"auto"``: CUDA when visible, else CPU; ``"cpu"``, ``"cuda"``, ``"cuda:k"``.

    Asking for CUDA where torch sees none is a ValueError (not a silent fall-back to the
    CPU, which would turn a misconfigured 200-epoch run into a days-long one).
    """
    # ising_qubo.devices: `--device` means one thing across the package.
    return devices.resolve_device("auto" if device is None else device, "training")


def model_device(model: nn.Module) -> torch.device:
    """Where the model's parameters (else buffers) live; CPU for a model with neither."""
    for tensor in model.parameters():
        return tensor.device
    for buffer in model.buffers():
        return buffer.device
    return torch.device("cpu")


def prepare_model(
    model: nn.Module, device: str | torch.device | None, channels_last: bool = False
) -> nn.Module:
    """Move ``model`` to ``device`` (see :func:`resolve_device`), in place; return it.

    ``channels_last`` switches 4-d weights to NHWC, which lets cuDNN use tensor-core
    kernels (notably with AMP). It is applied on CUDA only: on the CPU it is often slower
    and never needed, so the request is ignored there.
    """
    resolved = resolve_device(device)
    model.to(resolved)
    if channels_last and resolved.type == "cuda":
        model.to(memory_format=torch.channels_last)
    return model


@contextlib.contextmanager
def in_mode(model: nn.Module, training: bool) -> Iterator[None]:
    """Put the model in train/eval mode and give it back in the mode it had (per module, so
    a deliberately frozen submodule, e.g. BN kept in eval, stays as it was)."""
    previous = [(module, module.training) for module in model.modules()]
    model.train(training)
    try:
        yield
    finally:
        for module, was_training in previous:
            module.training = was_training
