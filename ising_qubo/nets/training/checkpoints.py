"""Checkpoints and weights files that hold plain data only, so reading one cannot run code.

:func:`save_checkpoint` writes atomically and refuses, up front, anything a weights-only
``torch.load`` could not read back; :func:`load_checkpoint` reads with
``weights_only=True``; :func:`read_weights` / :func:`load_weights` take a state dict from a
checkpoint, a ``torch.save``-d state dict or a ``.safetensors`` file.
"""

from __future__ import annotations

import os
import pickle
import warnings
import zipfile
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ising_qubo.io._atomic import atomic_write

__all__ = [
    "CheckpointError",
    "load_checkpoint",
    "load_weights",
    "read_weights",
    "save_checkpoint",
    "torch_load_reason",
]


class CheckpointError(ValueError):
    """A checkpoint that cannot be written as plain data, or cannot be read back."""


_PLAIN_SCALARS = (
    str,
    bytes,
    bytearray,
    int,
    float,
    bool,
    complex,
    type(None),
    torch.Size,
    torch.device,
    torch.dtype,
)
_PLAIN_TENSORS = (torch.Tensor, nn.Parameter)
_PLAIN_MAPPINGS = (dict, OrderedDict, Counter)
_PLAIN_SEQUENCES = (list, tuple, set)


def _check_plain(
    obj: Any, where: str, path: tuple[int, ...] = (), checked: set[int] | None = None
) -> None:
    """Raise CheckpointError unless ``torch.load(weights_only=True)`` can read ``obj`` back.

    Checked at save time so a bad value (a numpy float in the history, a dataclass) fails
    the run that makes it, not the resume weeks later. Exact types: subclasses such as
    namedtuples or enums are pickled by class and refused by the weights-only loader.
    A container already checked (``checked``: their ids) is not walked again, so a
    structure that shares one list many times over costs one visit per distinct container,
    not one per reference (which could be exponentially many).
    """
    kind = type(obj)
    if kind in _PLAIN_SCALARS or kind in _PLAIN_TENSORS:
        return
    checked = set() if checked is None else checked
    if id(obj) in checked:
        return
    if id(obj) in path:
        raise CheckpointError(f"{where} refers to itself (cyclic containers)")
    path = path + (id(obj),)
    if kind in _PLAIN_MAPPINGS:
        for key, value in obj.items():
            _check_plain(key, f"{where} key {key!r}", path, checked)
            _check_plain(value, f"{where}[{key!r}]", path, checked)
        checked.add(id(obj))
        return
    if kind in _PLAIN_SEQUENCES:
        for i, value in enumerate(obj):
            _check_plain(value, f"{where}[{i}]", path, checked)
        checked.add(id(obj))
        return
    raise CheckpointError(
        f"{where} is a {kind.__module__}.{kind.__qualname__}, which a weights-only checkpoint "
        "cannot hold; store tensors, numbers, strings, None, and dicts/lists/tuples/sets of "
        "them (e.g. float(x), x.tolist(), obj.state_dict(), history.to_dict())"
    )


def save_checkpoint(path: str | os.PathLike[str], **state: Any) -> Path:
    """Write ``state`` (a dict of plain data: tensors, state dicts, numbers, lists...) to
    ``path`` atomically; return the path.

    The data goes to a temporary file in the same directory, is fsynced, then
    ``os.replace``-d over ``path`` (:func:`ising_qubo.io._atomic.atomic_write`): a crash or
    Ctrl-C mid-save leaves the previous checkpoint intact, and no temporary file behind
    (except after a hard kill). A new file gets the mode a plain ``open()`` would give it
    (``0o666`` less the umask). Values a weights-only load could not read back are refused
    up front (CheckpointError). Parent directories are created.
    """
    target = Path(path)
    checked: set[int] = set()  # ids of the containers found plain (all alive until the save)
    for key, value in state.items():
        _check_plain(value, f"checkpoint entry {key!r}", checked=checked)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(target, binary=True) as handle:
        torch.save(state, handle)
    return target


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device | None = "cpu"
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``torch.load(weights_only=True)``:
    plain data only, no arbitrary unpickling, so loading an untrusted file cannot run code).

    A missing file is FileNotFoundError; a truncated, corrupt or non-plain file is
    CheckpointError; both name the file.
    """
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"checkpoint {str(source)!r} not found")
    try:
        with warnings.catch_warnings():  # torch's protocol notice on a foreign pickle
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            state = torch.load(source, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refusals are UnpicklingErrors too; nothing in the file was run
        raise CheckpointError(
            f"checkpoint {str(source)!r} cannot be loaded as plain data "
            f"(not written by save_checkpoint, corrupt, or unsafe; nothing "
            f"in it was executed): {torch_load_reason(exc)}"
        ) from exc
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint {str(source)!r} is unreadable (truncated or "
            f"corrupt?): {torch_load_reason(exc)}"
        ) from exc
    if not isinstance(state, dict):
        raise CheckpointError(
            f"checkpoint {str(source)!r} holds a {type(state).__name__}, "
            "not the dict save_checkpoint writes"
        )
    return state


_TORCH_BOILERPLATE = (
    "Weights only load failed",
    "Please file an issue",
    "Check the documentation",
    "This is an internal miniz error",
)


def torch_load_reason(exc: BaseException) -> str:
    """The informative line of a ``torch.load`` (or safetensors) error, without torch's
    advice to retry with ``weights_only=False`` (which would run whatever the file asks for):
    what to show a user whose file was refused."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if not line.startswith(_TORCH_BOILERPLATE):
            line = line.removeprefix("WeightsUnpickler error:").strip()
            return line.split(". This is an internal miniz error")[0] or type(exc).__name__
    return type(exc).__name__


def read_weights(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The state dict in ``path``, read without running code: a ``.safetensors`` file, a
    ``torch.save``-d state dict, or a checkpoint of :func:`save_checkpoint` with a
    ``"model"`` entry. Every problem is a ``ValueError`` (or ``FileNotFoundError``) that
    names the file."""
    source = Path(path)
    state: dict[str, Any]  # checked entry by entry below
    if not source.is_file():
        raise FileNotFoundError(
            f"weights file {str(source)!r} not found"
            + (" (it is a directory)" if source.is_dir() else "")
        )
    if source.suffix == ".safetensors":
        import safetensors
        import safetensors.torch

        try:
            state = safetensors.torch.load_file(str(source))
        except (safetensors.SafetensorError, OSError) as exc:
            raise CheckpointError(
                f"weights file {str(source)!r} is not a readable safetensors file: {exc}"
            ) from exc
    else:
        state = load_checkpoint(source)
        if isinstance(state.get("model"), dict):
            state = state["model"]  # one of our own run checkpoints
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"weights file {str(source)!r} is not a state dict: entry "
                f"{key!r} is not a tensor ({type(value).__name__})"
            )
    return dict(state)


def load_weights(model: nn.Module, path: str | os.PathLike[str]) -> nn.Module:
    """Load the state dict in ``path`` (see :func:`read_weights`) into ``model``, strictly.

    A file from another architecture (or another number of classes) is a ValueError
    naming the file and the first key that does not fit, before any weight is copied.
    """
    state = read_weights(path)
    expected = model.state_dict()
    problems = []
    for key, tensor in expected.items():
        if key not in state:
            problems.append(f"{key!r} is missing from the file")
        elif tuple(state[key].shape) != tuple(tensor.shape):
            problems.append(
                f"{key!r} has shape {list(state[key].shape)} in the file but "
                f"{list(tensor.shape)} in the model"
            )
    problems += [
        f"{key!r} is in the file but not in the model" for key in state if key not in expected
    ]
    if problems:
        raise CheckpointError(
            f"weights file {str(path)!r} does not fit the "
            f"{type(model).__name__} model: {problems[0]} ({len(problems)} "
            f"mismatching key(s) in all); pass weights saved from the "
            f"same --model and number of classes"
        )
    model.load_state_dict(state)
    return model
