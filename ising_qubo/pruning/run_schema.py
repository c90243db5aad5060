"""What a resumed run reads from its directory besides the checkpoint -- ``config.json`` and
``pruned_init/`` -- checked against the run before any of it is used.

(The checkpoint's own schema is :mod:`ising_qubo.nets.training.checkpoint_schema`.)

* :func:`read_run_config`: ``config.json`` must be a JSON object (at most
  :data:`MAX_CONFIG_BYTES`) whose keys are fields of the run's configuration class, each of
  the field's type (an integer for ``int``, a number or ``"inf"``/``"-inf"``/``"nan"`` for
  ``float``, ...). A field it lacks is fine (written before the field existed: the default
  counts); a key that is no field is refused.
* :func:`check_pruned_init`: ``pruned_init/architecture.json`` must describe the run's own
  architecture (the same spec: classes, input channels) with no layer larger than in the
  run's unpruned model -- pruning only removes -- before anything is built from it.

Every refusal is a one-line ``ValueError`` naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from pathlib import Path
from typing import Any

from torch import nn

from ising_qubo.nets.persist import ARCHITECTURE_FILE, read_architecture

__all__ = ["MAX_CONFIG_BYTES", "RunFileError", "check_pruned_init", "read_run_config"]

MAX_CONFIG_BYTES = 1 << 20  # a real config.json has about 1 kB
_NAMED_FLOATS = ("inf", "-inf", "nan")  # how ising_qubo.io.jsonvalues writes non-finite floats


class RunFileError(ValueError):
    """A file of a run directory that does not fit the run."""


def read_run_config(file: str | os.PathLike[str], config_class: type) -> dict[str, Any]:
    """The JSON object in ``file``, checked against the fields of the dataclass
    ``config_class`` (see the module docstring); RunFileError otherwise."""
    path = Path(file)
    with open(path, "rb") as handle:
        raw = handle.read(MAX_CONFIG_BYTES + 1)
    if len(raw) > MAX_CONFIG_BYTES:
        raise RunFileError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes; not a run's config")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise RunFileError(f"{path}: not valid JSON: {error}") from None
    except RecursionError:
        raise RunFileError(f"{path}: not valid JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise RunFileError(f"{path}: expected a JSON object of options, got {_json_kind(data)}")
    hints = typing.get_type_hints(config_class)
    fields = {f.name for f in dataclasses.fields(config_class)}
    for key, value in data.items():
        if key not in fields:
            raise RunFileError(
                f"{path}: key {key!r} is not an option of this version (written by another "
                f"version, or edited?)"
            )
        allowed = _allowed(hints[key])
        if not any(_fits(value, kind) for kind in allowed):
            raise RunFileError(
                f"{path}: key {key!r} must be {' or '.join(_NAMES[k] for k in allowed)}, "
                f"got {_shown(value)}"
            )
    return data


def check_pruned_init(
    folder: str | os.PathLike[str], spec: dict | None, unpruned: nn.Module
) -> None:
    """Refuse ``folder`` (a run's ``pruned_init/``) unless its architecture is ``spec`` and
    no recorded layer size exceeds the same layer's in ``unpruned``: a one-line RunFileError
    naming ``architecture.json`` and the key. Reads only the JSON file (size-capped and
    validated by :func:`ising_qubo.nets.persist.read_architecture`); builds nothing."""
    arch = read_architecture(folder)
    file = Path(folder) / ARCHITECTURE_FILE
    # both as JSON holds them: a spec's tuples are lists there
    found = _difference(json.loads(json.dumps(arch["spec"])), json.loads(json.dumps(spec)))
    if found is not None:
        where, recorded, expected = found
        raise RunFileError(
            f"{file}: key 'spec{where}' is {_short(recorded)}, but this run's model has "
            f"{_short(expected)}; pruned_init/ belongs to another run"
        )
    modules = dict(unpruned.named_modules(remove_duplicate=False))
    for name, entry in arch["modules"].items():
        module = modules.get(name)
        if module is None:
            raise RunFileError(
                f"{file}: key 'modules' names {name!r}, which this run's "
                f"{type(unpruned).__name__} does not have"
            )
        for attr, recorded in entry.items():
            if attr == "type" or not hasattr(module, attr):
                continue  # the loader refuses what the model lacks
            full = getattr(module, attr)
            if not _within(recorded, full):
                raise RunFileError(
                    f"{file}: key 'modules' entry {name!r} attribute {attr!r} is "
                    f"{_short(recorded)}, larger than the unpruned model's {_short(full)}"
                )


def _difference(recorded: Any, expected: Any, where: str = "") -> tuple[str, Any, Any] | None:
    """The first place where two JSON values differ (``.kwargs.num_classes``), with both
    values there; ``None`` when they are equal."""
    if isinstance(recorded, dict) and isinstance(expected, dict):
        for key in sorted({*recorded, *expected}):
            missing = "(missing)"
            found = _difference(
                recorded.get(key, missing), expected.get(key, missing), f"{where}.{key}"
            )
            if found is not None:
                return found
        return None
    return None if recorded == expected else (where, recorded, expected)


def _within(recorded: Any, full: Any) -> bool:
    """Whether a recorded size is no larger than the unpruned one (element by element)."""
    if isinstance(full, bool) or isinstance(recorded, bool):
        return recorded == full
    if isinstance(full, int) and isinstance(recorded, int):
        return recorded <= full
    if isinstance(full, (list, tuple)) and isinstance(recorded, list):
        return len(recorded) == len(full) and all(map(_within, recorded, full))
    return True  # not a size (the loader checks the rest)


_NAMES = {
    str: "a string",
    bool: "true or false",
    int: "an integer",
    float: "a number",
    dict: "an object",
    type(None): "null",
}


def _allowed(hint: Any) -> tuple[type, ...]:
    """The JSON-side types of a field annotated ``hint`` (``int | None`` -> int, None)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return tuple(kind for part in typing.get_args(hint) for kind in _allowed(part))
    origin = typing.get_origin(hint) or hint
    return (origin,) if origin in _NAMES else (object,)


def _fits(value: Any, kind: type) -> bool:
    if kind is object:
        return True
    if kind is float:  # an integer is a float in JSON; a non-finite one is written as a name
        return type(value) in (int, float) or value in _NAMED_FLOATS
    if kind is dict:
        return isinstance(value, dict)
    return type(value) is kind  # exact: true is not an integer, 1 is not true


def _json_kind(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _shown(value: Any) -> str:
    """A value in an error line: a container by its kind, a scalar as JSON (shortened)."""
    if isinstance(value, dict):
        return "an object"
    return "an array" if isinstance(value, list) else _short(value)


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 120 else f"{text[:117]}..."
