"""What ``--device`` / ``device=`` means, in one place for the solvers and the networks.

``"auto"`` is CUDA when torch sees a GPU, else the CPU; ``"cpu"``, ``"cuda"`` and
``"cuda:k"`` are taken as they are. Asking for CUDA where torch sees none is a ValueError,
never a silent fall-back to the CPU (which would turn a misconfigured long run into a
days-long one).

The lowest layer of the package, beside ``io``: torch is imported inside the functions,
so importing this module (or ``ising_qubo``) never loads it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["resolve_device"]


def resolve_device(device: Any, who: str) -> torch.device:
    """``device`` (``'auto'``, ``'cpu'``, ``'cuda'``, ``'cuda:k'`` or a ``torch.device``)
    as a checked ``torch.device``; ``'auto'`` is CUDA when visible, else the CPU.

    ``who`` (a solver's name, ``"training"``) begins every error message, so the user
    knows which option was wrong.
    """
    import torch

    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"{who}: device must be 'auto', 'cpu' or 'cuda[:k]', got {device!r}"
        ) from exc
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"{who}: device must be 'auto', 'cpu' or 'cuda[:k]', got {device!r}")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"{who}: device={device!r} asked for, but CUDA is not available "
            "to torch here; use device='cpu' or 'auto'"
        )
    return resolved
