"""What the PyTorch solvers share: device and dtype arguments, seeds, CUDA status."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def cuda_status() -> str:
    """The availability line of ``ising-qubo solvers`` for the torch solvers."""
    if torch.cuda.is_available():
        return f"yes (CPU; CUDA: {torch.cuda.get_device_name(0)})"
    return "yes (CPU; CUDA: not visible)"


def resolve_device(device: Any, solver: str) -> torch.device:
    """'auto' (CUDA when visible, else CPU), 'cpu', 'cuda' or 'cuda:k', checked."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"{solver}: device must be 'auto', 'cpu' or 'cuda[:k]', "
                         f"got {device!r}") from exc
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"{solver}: device must be 'auto', 'cpu' or 'cuda[:k]', got {device!r}")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{solver}: device={device!r} asked for, but CUDA is not available "
                         "to torch here; use device='cpu' or 'auto'")
    return resolved


def resolve_dtype(dtype: Any, solver: str) -> torch.dtype:
    try:
        resolved = {"float32": torch.float32, "float64": torch.float64,
                    torch.float32: torch.float32, torch.float64: torch.float64}.get(dtype)
    except TypeError:  # unhashable
        resolved = None
    if resolved is None:
        raise ValueError(f"{solver}: dtype must be 'float32' or 'float64', got {dtype!r}")
    return resolved


def torch_seed(seed: int | None) -> int:
    """A torch generator seed from a user seed (fresh entropy for None)."""
    if seed is None:
        return int(np.random.SeedSequence().generate_state(1)[0])
    return int(seed) % (2**63)
