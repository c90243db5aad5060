"""What the PyTorch solvers share: device and dtype arguments, seeds, CUDA status, and
running replicas in chunks when the GPU runs out of memory.

``resolve_device`` is :func:`ising_qubo.devices.resolve_device` (one meaning of ``device``
across the package), re-exported here for the solvers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ising_qubo.devices import resolve_device

__all__ = [
    "cuda_status",
    "free_memory",
    "gib",
    "in_chunks",
    "on_device",
    "out_of_memory",
    "resolve_device",
    "resolve_dtype",
    "torch_seed",
]


def cuda_status() -> str:
    """The availability line of ``ising-qubo solvers`` for the torch solvers."""
    if torch.cuda.is_available():
        return f"yes (CPU; CUDA: {torch.cuda.get_device_name(0)})"
    return "yes (CPU; CUDA: not visible)"


def resolve_dtype(dtype: Any, solver: str) -> torch.dtype:
    try:
        resolved = {
            "float32": torch.float32,
            "float64": torch.float64,
            torch.float32: torch.float32,
            torch.float64: torch.float64,
        }.get(dtype)
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


def gib(size: float) -> str:
    return f"{size / 2**30:.2f} GiB ({int(size)} bytes)"


def free_memory(device: torch.device) -> int | None:
    """Bytes free on a CUDA device (after returning cached blocks), else None."""
    if device.type != "cuda":
        return None
    torch.cuda.empty_cache()
    return int(torch.cuda.mem_get_info(device)[0])


def out_of_memory(
    solver: str, device: torch.device, what: str, asked: float, error: str
) -> ValueError:
    free = free_memory(device)
    free_text = gib(free) if free is not None else "unknown (not a CUDA device)"
    return ValueError(
        f"{solver}: out of GPU memory on {device} (asked for about "
        f"{gib(asked)} for {what}; {free_text} free; {error}); use "
        "device='cpu' or a smaller problem"
    )


def on_device(
    build: Callable[[], Any], solver: str, device: torch.device, what: str, size: float
) -> Any:
    """``build()``, with a CUDA out-of-memory error turned into a ValueError with sizes
    (``size``: the bytes ``what`` needs)."""
    try:
        return build()
    except torch.cuda.OutOfMemoryError as exc:
        error = str(exc).splitlines()[0] if str(exc) else "CUDA out of memory"
    raise out_of_memory(solver, device, what, size, error)


def in_chunks(
    run: Callable[[int, int], Any],
    total: int,
    stop: Callable[[], bool],
    solver: str,
    device: torch.device,
    bytes_for: Callable[[int], float],
) -> tuple[list[Any], int]:
    """``run(a, b)`` over consecutive ranges of ``total`` replicas; halves on CUDA OOM.

    The first try is one chunk of all replicas. When it raises
    ``torch.cuda.OutOfMemoryError``, the chunk size is halved and the same replicas are
    tried again, down to one replica; then a ValueError states the memory asked
    (``bytes_for(1)``) and free. Chunks run one after another, and no new chunk starts
    once ``stop()`` is true (the replicas of chunks not run are not returned). Returns
    the results of the chunks run and the chunk size used.
    """
    results: list[Any] = []
    chunk = total
    start = 0
    while start < total:
        if results and stop():
            break
        end = min(total, start + chunk)
        try:
            results.append(run(start, end))
        except torch.cuda.OutOfMemoryError as exc:
            error = str(exc).splitlines()[0] if str(exc) else "CUDA out of memory"
        else:
            start = end
            continue
        # out of the except block: the failed try's tensors are free to be collected
        if chunk == 1:
            raise out_of_memory(solver, device, "the problem and one replica", bytes_for(1), error)
        chunk = max(1, (end - start) // 2)
        free_memory(device)
    return results, chunk
