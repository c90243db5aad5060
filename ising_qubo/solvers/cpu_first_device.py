"""``device=`` for solvers whose CPU path needs no torch: decided without importing torch
whenever the answer is the CPU.

Importing torch costs about 0.5 GiB of resident memory and a second or two, against some
180 MiB peak for a whole compiled CPU solve (numba's runtime included); a solver that runs
on the CPU should not pay it just to learn that there is no GPU. The rule, for ``'auto'``:

1. torch already imported (the caller uses it anyway): CUDA when ``torch.cuda.is_available()``,
   exactly as :func:`ising_qubo.devices.resolve_device`;
2. else the CPU, without importing torch, when no GPU can be visible: on Linux and other
   POSIX systems no GPU device node exists (``/dev/nvidia0``..., ``/dev/dxg`` under WSL2,
   ``/dev/kfd`` for ROCm), or ``CUDA_VISIBLE_DEVICES`` is set to ``""`` or ``"-1"`` (no
   devices for CUDA), or torch is not installed;
3. else (a GPU node exists, or Windows, where there is no cheap probe) torch is imported
   and asked, as in 1. So on a CUDA machine ``'auto'`` is still CUDA, as everywhere in the
   package.

``'cpu'`` never imports torch. Anything else (``'cuda'``, ``'cuda:k'``, a
``torch.device``, a bad value) goes to :func:`ising_qubo.devices.resolve_device`, which
imports torch and checks it.
"""

from __future__ import annotations

import functools
import glob
import importlib.util
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

#: Device nodes through which a GPU reaches CUDA (or ROCm's HIP, which torch calls CUDA).
GPU_NODE_PATTERNS = ("/dev/nvidia[0-9]*", "/dev/dxg", "/dev/kfd")


def gpu_may_be_visible() -> bool:
    """False only when CUDA surely sees no GPU here; True when torch has to be asked."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    if importlib.util.find_spec("torch") is None:
        return False
    if os.name != "posix":  # no device nodes to look at
        return True
    return _gpu_nodes_present()


@functools.lru_cache(maxsize=1)
def _gpu_nodes_present() -> bool:
    """Whether a GPU device node exists, looked up once per process (a driver's nodes do
    not appear under a running process; solvers ask on every call)."""
    return any(glob.glob(pattern) for pattern in GPU_NODE_PATTERNS)


def resolve_cpu_first(device: Any, who: str) -> str | torch.device:
    """``"cpu"`` (a string: no torch was needed) or the checked ``torch.device``.

    ``who`` begins every error message (see :func:`ising_qubo.devices.resolve_device`).
    """
    if isinstance(device, str) and device == "cpu":
        return "cpu"
    if isinstance(device, str) and device == "auto":
        if "torch" not in sys.modules and not gpu_may_be_visible():
            return "cpu"
    from ising_qubo.devices import resolve_device

    return resolve_device(device, who)


def is_cuda(device: str | torch.device) -> bool:
    """Whether a device from :func:`resolve_cpu_first` is a CUDA device."""
    return str(device).startswith("cuda")


__all__ = ["GPU_NODE_PATTERNS", "gpu_may_be_visible", "is_cuda", "resolve_cpu_first"]
