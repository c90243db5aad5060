"""Save a physically pruned network without pickle, and rebuild it.

(One job, one file, on purpose: the writer and the validating reader of the format sit
side by side so that what is written and what is accepted cannot drift apart; that is
why the module is long.)

A saved model is a directory with two files:

* ``model.safetensors``: the ``state_dict`` (parameters and persistent buffers, BatchNorm
  running statistics included) in the safetensors format, which holds tensors only and
  cannot run code when read;
* ``architecture.json``: ``{"format": "ising-qubo-pruned/1", "spec": ..., "modules": ...,
  "num_parameters": ..., "metadata": ..., "torch": ..., "save_id": ...,
  "shared_tensors": ...}``. ``spec`` rebuilds the unpruned architecture
  (:func:`ising_qubo.nets.models.from_spec`), or is ``null`` for a user's own architecture;
  ``modules`` maps the path of every module that owns tensors (or has a shape attribute)
  to its class name and its shape attributes after pruning (``in_channels``,
  ``out_channels``, ``groups``, ``in_features``, ``out_features``, ``num_features``, ...).

:func:`load_pruned` builds the unpruned skeleton, shrinks each recorded module to the
recorded attributes and the tensor shapes stored in the safetensors file, and then loads the
weights with ``load_state_dict(strict=True)``: the outputs are bit-identical to those of
the saved model. Nothing is ever unpickled and no name read from the JSON is used with
``setattr`` unless it is one of a fixed list of shape attributes.

Both files are written to temporary files in the target directory first and renamed over
the old ones only when both are complete and on disk
(:func:`ising_qubo.io._atomic.atomic_paths`), so an error or Ctrl-C never leaves a
half-written model over a good one. A random ``save_id`` stored in both files makes a
mismatched pair (a crash between the two renames) an error on loading rather than a silent
mix.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch
from torch import nn

from ising_qubo.io._atomic import atomic_paths
from ising_qubo.nets.models import from_spec, spec_of

__all__ = [
    "ARCHITECTURE_FILE",
    "FORMAT",
    "RUN_MODEL_DIR",
    "SHAPE_ATTRIBUTES",
    "WEIGHTS_FILE",
    "MissingModelFileError",
    "load_pruned",
    "read_architecture",
    "save_pruned",
]

FORMAT = "ising-qubo-pruned/1"
WEIGHTS_FILE = "model.safetensors"
ARCHITECTURE_FILE = "architecture.json"
#: The folder of a run directory (``ising-qubo prune --out RUN``) that holds its saved model;
#: the readers accept ``RUN`` for ``RUN/model``.
RUN_MODEL_DIR = "model"
_SAVE_ID_KEY = "ising_qubo_save_id"
_MAX_JSON_BYTES = 64 * 2**20

# The only attributes recorded and restored; Torch-Pruning changes these when it prunes
# (conv, linear, bilinear, norms, PReLU, embedding, RNN, multi-head attention).
SHAPE_ATTRIBUTES = (
    "in_channels",
    "out_channels",
    "groups",
    "in_features",
    "out_features",
    "in1_features",
    "in2_features",
    "num_features",
    "num_groups",
    "num_channels",
    "normalized_shape",
    "num_parameters",
    "num_embeddings",
    "embedding_dim",
    "input_size",
    "hidden_size",
    "proj_size",
    "embed_dim",
    "kdim",
    "vdim",
    "num_heads",
    "head_dim",
)
_TOP_LEVEL: dict[str, type | tuple[type, ...]] = {
    "format": str,
    "spec": (dict, type(None)),
    "modules": dict,
    "num_parameters": int,
    "metadata": dict,
    "torch": str,
    "save_id": str,
    "shared_tensors": list,
}


class MissingModelFileError(FileNotFoundError, ValueError):
    """A file of a saved model is missing (both a ``FileNotFoundError`` and a ``ValueError``)."""


# --------------------------------------------------------------------------------------------
# saving


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shape_value(value: Any) -> int | list[int] | None:
    """The JSON form of a shape attribute, or None if it is not an int or tuple of ints."""
    if _is_int(value):
        return int(value)
    if isinstance(value, (tuple, list)) and all(_is_int(v) for v in value):
        return [int(v) for v in value]
    return None


def _direct_state_names(module: nn.Module) -> list[str]:
    """Names of the tensors ``module`` itself contributes to a state_dict."""
    names = [name for name, p in module._parameters.items() if p is not None]
    skip: set[str] = getattr(module, "_non_persistent_buffers_set", set())
    names += [name for name, b in module._buffers.items() if b is not None and name not in skip]
    return names


def _describe(model: nn.Module) -> dict[str, dict[str, Any]]:
    modules: dict[str, dict[str, Any]] = {}
    for path, module in model.named_modules(remove_duplicate=False):
        entry: dict[str, Any] = {"type": type(module).__name__}
        for attr in SHAPE_ATTRIBUTES:
            value = _shape_value(getattr(module, attr, None))
            if value is not None:
                entry[attr] = value
        if len(entry) > 1 or _direct_state_names(module):
            modules[path] = entry
    return modules


def _tensors_to_save(model: nn.Module) -> tuple[dict[str, torch.Tensor], list[list[str]]]:
    """The state_dict as contiguous tensors that share no storage (safetensors refuses
    shared storage), and the groups of keys that did share storage (tied weights)."""
    state = model.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    by_storage: dict[tuple, list[str]] = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(
                f"state_dict entry {key!r} is a {type(value).__name__}, not a "
                f"tensor; only tensors can be saved without pickle"
            )
        value = value.detach()
        if value.is_sparse or value.layout != torch.strided:
            raise ValueError(
                f"state_dict entry {key!r} has layout {value.layout}; only dense "
                f"tensors can be saved"
            )
        if value.numel() and value.device.type != "meta":
            storage = (value.device.type, value.device.index, value.untyped_storage().data_ptr())
            by_storage.setdefault(storage, []).append(key)
        tensors[key] = value
    shared = [keys for keys in by_storage.values() if len(keys) > 1]
    for keys in shared:
        for key in keys:
            tensors[key] = tensors[key].clone(memory_format=torch.contiguous_format)
    for key, value in tensors.items():
        if not value.is_contiguous():
            tensors[key] = value.contiguous()
    return tensors, shared


def _json_text(obj: Any, what: str) -> str:
    try:
        return json.dumps(obj, indent=1, allow_nan=False) + "\n"
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{what} must be JSON-serialisable (dicts, lists, strings, finite "
            f"numbers, booleans, null): {error}"
        ) from error


def save_pruned(
    model: nn.Module,
    path: str | os.PathLike,
    spec: dict | None = None,
    metadata: dict | None = None,
) -> Path:
    """Save ``model`` (pruned in place, e.g. by :meth:`ModelGroups.prune`) to directory ``path``.

    ``spec`` rebuilds the unpruned architecture (default: :func:`spec_of` ``(model)``, set by
    :func:`ising_qubo.nets.models.build`); without one the loader needs ``model=``. ``metadata`` is
    any JSON-serialisable dict (the pruning history, accuracy, ...). Returns the directory.
    Tensors that share storage (tied weights) are stored as separate copies; loading into a
    skeleton with the same ties restores them.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if spec is None:
        spec = spec_of(model)
    if spec is not None and not isinstance(spec, dict):
        raise ValueError(f"spec must be a dict or None, got {type(spec).__name__}")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise ValueError(f"metadata must be a dict or None, got {type(metadata).__name__}")
    tensors, shared = _tensors_to_save(model)
    save_id = secrets.token_hex(16)
    architecture = {
        "format": FORMAT,
        "spec": spec,
        "modules": _describe(model),
        "num_parameters": int(sum(p.numel() for p in model.parameters())),
        "metadata": metadata,
        "torch": str(torch.__version__),
        "save_id": save_id,
        "shared_tensors": shared,
    }
    text = _json_text(architecture, "spec and metadata")

    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    # Both new files are complete (and fsynced) before either replaces an old one.
    with atomic_paths(directory / ARCHITECTURE_FILE, directory / WEIGHTS_FILE) as (
        tmp_architecture,
        tmp_weights,
    ):
        safetensors.torch.save_file(
            tensors, str(tmp_weights), metadata={"format": "pt", _SAVE_ID_KEY: save_id}
        )
        tmp_architecture.write_text(text, encoding="utf-8", newline="\n")
    return directory


# --------------------------------------------------------------------------------------------
# reading


def _model_directory(path: str | os.PathLike) -> Path:
    """``path`` when it holds an architecture file, else ``path/model`` when that does (a
    run directory); otherwise an error naming both places."""
    directory = Path(path)
    if not directory.is_dir():
        if directory.exists():
            raise ValueError(
                f"{directory} is not a directory; pass the directory that save_pruned wrote"
            )
        raise MissingModelFileError(f"no saved model at {directory}: the directory does not exist")
    if (directory / ARCHITECTURE_FILE).is_file():
        return directory
    run_model = directory / RUN_MODEL_DIR
    if (run_model / ARCHITECTURE_FILE).is_file():
        return run_model
    looked_at = (
        f"neither {directory / ARCHITECTURE_FILE} nor {run_model / ARCHITECTURE_FILE} "
        f"(where a run directory of 'ising-qubo prune --out' keeps it) exists"
    )
    if (directory / WEIGHTS_FILE).is_file():
        raise MissingModelFileError(f"saved model {directory} is incomplete: {looked_at}")
    raise MissingModelFileError(
        f"no saved model at {directory}: {looked_at}; pass the "
        f"directory that save_pruned wrote, or a run directory"
    )


def _files(path: str | os.PathLike, names: tuple[str, ...]) -> list[Path]:
    directory = _model_directory(path)
    files = [directory / name for name in names]
    for file in files:
        if not file.is_file():
            raise MissingModelFileError(
                f"saved model {directory} is incomplete: {file.name} is missing"
            )
    return files


def _reject_constant(name: str) -> None:
    raise ValueError(f"non-finite number {name}")


def _check_architecture(data: Any, file: Path) -> dict:
    def bad(message: str) -> ValueError:
        return ValueError(f"{file}: {message}")

    if not isinstance(data, dict):
        raise bad(f"expected a JSON object, got {type(data).__name__}")
    if data.get("format") != FORMAT:
        raise bad(f"format must be {FORMAT!r}, got {data.get('format')!r}")
    missing = sorted(set(_TOP_LEVEL) - set(data))
    if missing:
        raise bad(f"missing keys {missing}")
    for key, kind in _TOP_LEVEL.items():
        value = data[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise bad(f"{key!r} has the wrong type {type(value).__name__}")
    if data["num_parameters"] < 0:
        raise bad("'num_parameters' is negative")
    for group in data["shared_tensors"]:
        if not isinstance(group, list) or not all(isinstance(k, str) for k in group):
            raise bad("'shared_tensors' must be a list of lists of tensor names")
    for path, entry in data["modules"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
            raise bad(f"module {path!r}: entry must be an object with a string 'type'")
        for attr, value in entry.items():
            if attr == "type":
                continue
            if attr not in SHAPE_ATTRIBUTES:
                raise bad(
                    f"module {path!r}: unknown attribute {attr!r} (allowed: "
                    f"{', '.join(SHAPE_ATTRIBUTES)})"
                )
            ok = (_is_int(value) and value >= 0) or (
                isinstance(value, list) and all(_is_int(v) and v >= 0 for v in value)
            )
            if not ok:
                raise bad(
                    f"module {path!r}: attribute {attr!r} must be a non-negative "
                    f"integer or a list of them, got {value!r}"
                )
    return data


def _read_architecture(file: Path) -> dict:
    with open(file, "rb") as handle:
        raw = handle.read(_MAX_JSON_BYTES + 1)
    if len(raw) > _MAX_JSON_BYTES:
        raise ValueError(f"{file}: larger than {_MAX_JSON_BYTES} bytes; not an architecture file")
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as error:
        raise ValueError(f"{file}: not valid JSON: {error}") from error
    return _check_architecture(data, file)


def read_architecture(path: str | os.PathLike) -> dict:
    """The validated ``architecture.json`` of the model saved in directory ``path`` (or in
    ``path/model``, for a run directory of ``ising-qubo prune --out``)."""
    (arch,) = _files(path, (ARCHITECTURE_FILE,))
    return _read_architecture(arch)


# --------------------------------------------------------------------------------------------
# loading


def _device_name(map_location: Any) -> str:
    if isinstance(map_location, torch.device):
        return str(map_location)
    if isinstance(map_location, int) and not isinstance(map_location, bool):
        return f"cuda:{map_location}"
    if isinstance(map_location, str):
        return str(torch.device(map_location))
    raise ValueError(
        f"map_location must be a device, a device string or a CUDA index, got {map_location!r}"
    )


def _read_weights(file: Path, device: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safetensors.safe_open(str(file), framework="pt", device=device) as handle:
            header = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (safetensors.SafetensorError, OSError) as error:
        raise ValueError(f"{file}: not a readable safetensors file: {error}") from error
    return tensors, header


def _expected_shapes(module: nn.Module, attrs: Mapping[str, Any]) -> dict[str, tuple]:
    """Shapes the tensors of a known module type must have, given its shape attributes."""

    def get(name: str) -> Any:
        return attrs[name] if name in attrs else getattr(module, name)

    shapes: dict[str, tuple] = {}
    if isinstance(module, nn.modules.conv._ConvNd):
        out, inp, groups = get("out_channels"), get("in_channels"), get("groups")
        if groups < 1 or inp % groups or out % groups:
            raise ValueError(
                f"in_channels={inp} and out_channels={out} are not divisible by groups={groups}"
            )
        kernel = tuple(module.kernel_size)
        if module.transposed:
            shapes["weight"] = (inp, out // groups, *kernel)
        else:
            shapes["weight"] = (out, inp // groups, *kernel)
        shapes["bias"] = (out,)
    elif isinstance(module, nn.Linear):
        shapes["weight"] = (get("out_features"), get("in_features"))
        shapes["bias"] = (get("out_features"),)
    elif isinstance(module, nn.Bilinear):
        shapes["weight"] = (get("out_features"), get("in1_features"), get("in2_features"))
        shapes["bias"] = (get("out_features"),)
    elif isinstance(module, nn.modules.batchnorm._NormBase):
        n = get("num_features")
        shapes.update(
            weight=(n,), bias=(n,), running_mean=(n,), running_var=(n,), num_batches_tracked=()
        )
    elif isinstance(module, nn.GroupNorm):
        shapes.update(weight=(get("num_channels"),), bias=(get("num_channels"),))
    elif isinstance(module, nn.LayerNorm):
        shape = tuple(get("normalized_shape"))
        shapes.update(weight=shape, bias=shape)
    elif isinstance(module, nn.PReLU):
        shapes["weight"] = (get("num_parameters"),)
    elif isinstance(module, nn.Embedding):
        shapes["weight"] = (get("num_embeddings"), get("embedding_dim"))
    return shapes


def _new_value(attr: str, current: Any, recorded: Any, where: str) -> Any:
    if _is_int(current) and _is_int(recorded):
        return recorded
    if isinstance(current, (tuple, list)) and isinstance(recorded, list):
        return type(current)(recorded)
    raise ValueError(
        f"{where}: attribute {attr!r} is {current!r} in the model but {recorded!r} in the file"
    )


def load_pruned(
    path: str | os.PathLike,
    model: nn.Module | None = None,
    map_location: str | torch.device | int = "cpu",
) -> nn.Module:
    """Rebuild the pruned model saved in directory ``path`` by :func:`save_pruned`.

    ``path`` may also be a run directory of ``ising-qubo prune --out RUN`` (which keeps its
    model in ``RUN/model``): when ``path`` holds no ``architecture.json`` but
    ``path/model`` does, that model is loaded.

    The unpruned skeleton comes from the recorded spec, or is ``model`` (an instance of the
    user's own architecture, unpruned, which is then shrunk and loaded in place). Returns the
    model on ``map_location``, in eval mode, with outputs bit-identical to the saved one.
    Raises ``ValueError`` (naming the module or tensor and the file) when the files do not
    fit each other or the skeleton; :class:`MissingModelFileError` (also a ValueError) when a
    file is missing.
    """
    arch_file, weights_file = _files(path, (ARCHITECTURE_FILE, WEIGHTS_FILE))
    arch = _read_architecture(arch_file)
    device = _device_name(map_location)
    tensors, header = _read_weights(weights_file, device)
    if header.get(_SAVE_ID_KEY) != arch["save_id"]:
        raise ValueError(
            f"{weights_file} and {arch_file.name} come from different saves "
            f"(an interrupted or mixed-up save); save the model again"
        )

    if model is None:
        if arch["spec"] is None:
            raise ValueError(
                f"{arch_file} records no spec (the model was not built by "
                f"ising_qubo.nets.models.build); pass model= with an unpruned "
                f"instance of its architecture"
            )
        # The skeleton is built on the meta device: no memory, so a tampered spec (say
        # num_classes=10**9) cannot make loading allocate; every tensor the file holds
        # replaces its meta placeholder below.
        model = _skeleton(arch["spec"], arch_file, "meta")
        _check_keys(model, arch, tensors, arch_file, weights_file)
        plan = _resize_plan(model, arch, tensors, arch_file, weights_file)
        _apply(plan, tensors, device)
        if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
            # a non-persistent buffer (not in the file) needs the real construction
            model = _skeleton(arch["spec"], arch_file, None)
            plan = _resize_plan(model, arch, tensors, arch_file, weights_file)
            _apply(plan, tensors, device)
    elif not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    else:
        _check_keys(model, arch, tensors, arch_file, weights_file)
        plan = _resize_plan(model, arch, tensors, arch_file, weights_file)
        _apply(plan, tensors, device)

    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as error:  # not expected after the checks above
        raise ValueError(f"{weights_file}: cannot load the weights: {error}") from error
    count = sum(p.numel() for p in model.parameters())
    if count != arch["num_parameters"]:
        raise ValueError(
            f"{arch_file}: records {arch['num_parameters']} parameters, the "
            f"rebuilt model has {count}"
        )
    model.to(device)
    return model.eval()


def _skeleton(spec: dict, arch_file: Path, device: str | None) -> nn.Module:
    try:
        with torch.device(device) if device else contextlib.nullcontext():
            return from_spec(spec)
    except ValueError as error:
        raise ValueError(f"{arch_file}: cannot rebuild the architecture: {error}") from error


def _check_keys(
    model: nn.Module,
    arch: dict,
    tensors: Mapping[str, torch.Tensor],
    arch_file: Path,
    weights_file: Path,
) -> None:
    modules = dict(model.named_modules(remove_duplicate=False))
    for name, entry in arch["modules"].items():
        if name not in modules:
            raise ValueError(
                f"{arch_file}: module {name!r} does not exist in the "
                f"{type(model).__name__} skeleton"
            )
        found = type(modules[name]).__name__
        if found != entry["type"]:
            raise ValueError(
                f"{arch_file}: module {name!r} is recorded as {entry['type']} "
                f"but the skeleton has a {found}"
            )
    expected = set(model.state_dict().keys())
    stored = set(tensors)
    missing, unexpected = sorted(expected - stored), sorted(stored - expected)
    if missing or unexpected:
        raise ValueError(
            f"{weights_file} does not fit the {type(model).__name__} skeleton: "
            f"missing tensors {missing[:10]}, unexpected tensors "
            f"{unexpected[:10]}"
        )
    for key in sorted(stored):
        owner = key.rsplit(".", 1)[0] if "." in key else ""
        if owner not in arch["modules"]:
            raise ValueError(
                f"{arch_file}: tensor {key!r} of {weights_file.name} belongs to "
                f"module {owner!r}, which is not recorded"
            )


def _resize_plan(
    model: nn.Module,
    arch: dict,
    tensors: Mapping[str, torch.Tensor],
    arch_file: Path,
    weights_file: Path,
) -> list:
    """Validate everything and list the changes, before touching the model."""
    modules = dict(model.named_modules(remove_duplicate=False))
    plan = []
    seen: set[int] = set()
    tied: dict[int, str] = {}  # id of a skeleton tensor -> the first key that names it
    for name, entry in arch["modules"].items():
        module = modules[name]
        where = f"{arch_file}: module {name!r}"
        attrs = {}
        for attr, recorded in entry.items():
            if attr == "type":
                continue
            if not hasattr(module, attr):
                raise ValueError(
                    f"{where}: the skeleton's {type(module).__name__} has no attribute {attr!r}"
                )
            attrs[attr] = _new_value(attr, getattr(module, attr), recorded, where)
        try:
            expected = _expected_shapes(module, attrs)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from error
        owned = []
        for tname in _direct_state_names(module):
            key = f"{name}.{tname}" if name else tname
            source = tensors[key]
            shape = tuple(source.shape)
            if tname in expected and expected[tname] != shape:
                raise ValueError(
                    f"{weights_file}: tensor {key!r} has shape {list(shape)}, "
                    f"but module {name!r} as recorded in {arch_file.name} needs "
                    f"{list(expected[tname])}"
                )
            first = tied.setdefault(id(getattr(module, tname)), key)
            other = tensors[first]
            if other.shape != source.shape or other.dtype != source.dtype:
                raise ValueError(
                    f"{weights_file}: tensors {first!r} and {key!r} are tied in "
                    f"the skeleton but differ in shape or dtype in the file"
                )
            owned.append((tname, key))
        if id(module) in seen:
            continue  # the same module object under a second path: resized once
        seen.add(id(module))
        plan.append((module, attrs, owned))
    return plan


def _apply(plan: list, tensors: Mapping[str, torch.Tensor], device: str) -> None:
    replaced: dict[int, tuple] = {}  # id of a skeleton tensor -> (it, its replacement)
    for module, attrs, owned in plan:
        for attr, value in attrs.items():
            if getattr(module, attr) != value:
                try:
                    setattr(module, attr, value)
                except (AttributeError, TypeError) as error:
                    raise ValueError(
                        f"cannot set {attr!r} of a {type(module).__name__}: {error}"
                    ) from error
        for tname, key in owned:
            old = getattr(module, tname)
            source = tensors[key]
            new = replaced.get(id(old), (None, None))[1]  # tied: replaced already
            if new is None:
                fresh = torch.empty(source.shape, dtype=source.dtype, device=device)
                if isinstance(old, nn.Parameter):
                    new = nn.Parameter(fresh, requires_grad=old.requires_grad)
                else:
                    new = fresh
                replaced[id(old)] = (old, new)  # holding old keeps its id unique
            setattr(module, tname, new)
