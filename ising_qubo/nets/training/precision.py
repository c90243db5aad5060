"""Mixed precision: which autocast dtype (and whether a GradScaler) a run on a device gets."""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass

import torch

__all__ = ["Amp", "amp_settings", "autocast"]


@dataclass(frozen=True)
class Amp:
    """How to run the forward pass: autocast dtype (None: full precision) and GradScaler."""

    dtype: torch.dtype | None = None
    scaler: bool = False


_AMP_CPU_WARNED = False


def amp_settings(amp: bool, device: torch.device) -> Amp:
    """bf16 autocast where the GPU supports it (bf16 has float32's range, so no loss
    scaling), else fp16 with a GradScaler; nothing on the CPU (warned once per process:
    CPU autocast is slow for convolutions and would only make runs irreproducible)."""
    global _AMP_CPU_WARNED
    if not amp:
        return Amp()
    if device.type != "cuda":
        if not _AMP_CPU_WARNED:
            _AMP_CPU_WARNED = True
            warnings.warn(
                f"amp=True is ignored on device {device} (mixed precision is used "
                "on CUDA only); training in float32",
                RuntimeWarning,
                stacklevel=3,
            )
        return Amp()
    if torch.cuda.is_bf16_supported():
        return Amp(dtype=torch.bfloat16)
    return Amp(dtype=torch.float16, scaler=True)


def autocast(settings: Amp) -> contextlib.AbstractContextManager:
    """The context to run the forward pass in: CUDA autocast, or nothing."""
    if settings.dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=settings.dtype)
