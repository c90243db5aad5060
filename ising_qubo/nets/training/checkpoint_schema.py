"""What a resumed run's ``checkpoint.pt`` must hold, checked before any of it is used.

A weights-only ``torch.load`` (:func:`~ising_qubo.nets.training.load_checkpoint`) runs no
code, but it rebuilds whatever plain structure the file describes: any keys, any types, and
containers shared by reference. The pickle memo lets a few hundred bytes describe a list
referenced ten times in each of nine nested levels (a "billion laughs"): loading it is
instant, but anything that walks it as a tree (the report's JSON writer, the next
checkpoint's plainness check) never ends. :func:`check_run_checkpoint` therefore

* measures the size of every entry *as a tree* -- each container is walked once and its
  size remembered, so a shared one costs one visit however often it is referenced -- and
  refuses one larger than :data:`MAX_ENTRIES`, nested deeper than :data:`MAX_DEPTH`, or
  containing itself;
* then checks the layout the pipeline writes: required keys, their types and ranges, and
  a history of equal-length columns of scalars.

Every refusal is a :class:`CheckpointSchemaError` (a ``ValueError``) of one line that names
the file and the key: ``runs/x/checkpoint.pt: key 'epoch' must be an integer >= -1, got
'abc'``.
"""

from __future__ import annotations

import os
from collections import Counter, OrderedDict
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import torch

from ising_qubo.nets.training.checkpoints import CheckpointError

__all__ = [
    "MAX_DEPTH",
    "MAX_ENTRIES",
    "CheckpointSchemaError",
    "check_run_checkpoint",
    "check_tree_size",
]

#: Entries (containers and scalars, counted as a tree) a run checkpoint may hold. A real run
#: stays far below: its largest entry, the pruner's masks, has one boolean per prunable unit.
MAX_ENTRIES = 1_000_000
#: Nesting levels; the pipeline's deepest entry (report -> pruning -> refine -> ...) has < 10.
MAX_DEPTH = 32

_CONTAINERS = (dict, OrderedDict, Counter, list, tuple, set)
_METRIC_SCALARS = (type(None), bool, int, float, str)
# the measurements of the report's stages (_final_report indexes every one of them)
_STAGE_KEYS = {"top1": float, "top5": float, "loss": float, "params": int, "macs": int}
_STAGES = ("initial", "before_pruning", "after_pruning", "final")


class CheckpointSchemaError(CheckpointError):
    """A checkpoint whose content does not have the layout the pipeline writes."""


def check_tree_size(
    value: Any,
    file: str | os.PathLike[str],
    key: str,
    limit: int = MAX_ENTRIES,
    used: int = 0,
) -> int:
    """The number of entries of ``value`` (the entry ``key`` of ``file``) counted as a tree
    (a container referenced twice counts twice), in time proportional to its *distinct*
    containers; raise :class:`CheckpointSchemaError` naming ``file`` and ``key`` when,
    added to the ``used`` entries of the file's other keys, it exceeds ``limit``, or when
    it nests deeper than :data:`MAX_DEPTH` or contains itself."""
    sizes: dict[int, int] = {}  # id of a walked container -> its size as a tree
    active: set[int] = set()  # the containers on the current path (a cycle returns to one)

    def bad(message: str) -> CheckpointSchemaError:
        return CheckpointSchemaError(f"{file}: key {key!r} {message}")

    def size(obj: Any, depth: int) -> int:
        if type(obj) not in _CONTAINERS:
            return 1
        ident = id(obj)  # the objects stay alive for the whole walk, so ids are stable
        known = sizes.get(ident)
        if known is not None:
            return known
        if ident in active:
            raise bad("contains itself (a cyclic structure); not a checkpoint this tool wrote")
        if depth > MAX_DEPTH:
            raise bad(f"is nested deeper than {MAX_DEPTH} levels; not a checkpoint this tool wrote")
        active.add(ident)
        children = (
            (item for pair in obj.items() for item in pair) if isinstance(obj, dict) else iter(obj)
        )
        total = 1
        for child in children:
            total += size(child, depth + 1)
            if used + total > limit:  # stops the walk within `limit` distinct visits
                raise bad(
                    f"is too large: the checkpoint would hold over {limit:,} entries (a "
                    f"shared reference counts each time it appears); not a checkpoint this "
                    f"tool wrote"
                )
        active.discard(ident)
        sizes[ident] = total
        return total

    return size(value, 0)


def check_run_checkpoint(
    state: Mapping[str, Any], file: str | os.PathLike[str], phases: Collection[str]
) -> dict[str, Any]:
    """``state`` (a :func:`load_checkpoint` result) if it has the layout of a run
    checkpoint -- ``phase`` (one of ``phases``), ``epoch``, ``model``, ``optimizer``,
    ``scheduler``, ``history``, ``timing``, and optionally ``pruner`` and ``report`` --
    else a one-line :class:`CheckpointSchemaError` naming ``file`` and the key."""
    path = Path(file)

    def bad(key: str, message: str) -> CheckpointSchemaError:
        return CheckpointSchemaError(f"{path}: key {key!r} {message}")

    required = ("phase", "epoch", "model", "optimizer", "scheduler", "history", "timing")
    missing = [key for key in required if key not in state]
    if missing:
        raise bad(missing[0], "is missing; not a checkpoint of a pruning run")
    used = 0  # one budget for the whole file, walked key by key to name the culprit
    for key, value in state.items():
        used += check_tree_size(value, path, str(key), used=used)

    phase = state["phase"]
    if type(phase) is not str or phase not in phases:
        raise bad("phase", f"must be one of {', '.join(map(repr, phases))}, got {phase!r}")
    epoch = state["epoch"]
    if type(epoch) is not int or epoch < -1:
        raise bad("epoch", f"must be an integer >= -1, got {_shown(epoch)}")

    model = state["model"]
    if not isinstance(model, dict):
        raise bad("model", f"must be a state dict, got {_kind(model)}")
    for name, tensor in model.items():
        if type(name) is not str or not isinstance(tensor, torch.Tensor):
            raise bad(
                "model", f"must map names to tensors; entry {_shown(name)} is {_kind(tensor)}"
            )

    _check_optimizer(state["optimizer"], bad)
    scheduler = state["scheduler"]
    if not isinstance(scheduler, dict) or not all(type(k) is str for k in scheduler):
        raise bad("scheduler", f"must be a dict with string keys, got {_kind(scheduler)}")
    if "optimizer" in scheduler:  # load_state_dict copies every key onto the scheduler
        raise bad("scheduler", "must not hold an 'optimizer' entry")

    _check_history(state["history"], bad)
    timing = state["timing"]
    if not isinstance(timing, dict):
        raise bad("timing", f"must be a dict of seconds, got {_kind(timing)}")
    for name, seconds in timing.items():
        if type(name) is not str or not _is_real(seconds):
            raise bad(
                "timing", f"entry {_shown(name)} must be a number of seconds, got {_shown(seconds)}"
            )

    pruner = state.get("pruner")
    if pruner is not None and not isinstance(pruner, dict):
        raise bad("pruner", f"must be a dict or None, got {_kind(pruner)}")
    _check_report(state.get("report"), bad)
    return dict(state)


def _check_optimizer(optimizer: Any, bad) -> None:
    if not isinstance(optimizer, dict) or not isinstance(optimizer.get("state"), dict):
        raise bad("optimizer", "must be an optimizer state dict with a 'state' dict")
    groups = optimizer.get("param_groups")
    if not isinstance(groups, list) or not groups:
        raise bad("optimizer", "must have a non-empty 'param_groups' list")
    for i, group in enumerate(groups):
        params = group.get("params") if isinstance(group, dict) else None
        if not isinstance(params, list) or not all(type(p) is int and p >= 0 for p in params):
            raise bad(
                "optimizer", f"param_groups[{i}] must be a dict whose 'params' is a list of indices"
            )


def _check_history(history: Any, bad) -> None:
    if not isinstance(history, dict):
        raise bad("history", f"must be a dict of metric columns, got {_kind(history)}")
    length = None
    for column, values in history.items():
        if type(column) is not str:
            raise bad("history", f"column names must be strings, got {_shown(column)}")
        if type(values) is not list:
            raise bad("history", f"column {column!r} must be a list, got {_kind(values)}")
        if length is not None and len(values) != length:
            raise bad(
                "history",
                f"column {column!r} has {len(values)} rows, the columns before it have {length}",
            )
        length = len(values)
        for row, value in enumerate(values):
            if type(value) not in _METRIC_SCALARS:
                raise bad(
                    "history",
                    f"column {column!r} row {row} must be a number, string or None, got "
                    f"{_kind(value)}",
                )


def _check_report(report: Any, bad) -> None:
    if report is None:
        return
    if not isinstance(report, dict):
        raise bad("report", f"must be a dict or None, got {_kind(report)}")
    for stage in _STAGES:
        if stage not in report:
            continue
        measured = report[stage]
        if not isinstance(measured, dict):
            raise bad("report", f"stage {stage!r} must be a dict, got {_kind(measured)}")
        for name, kind in _STAGE_KEYS.items():
            value = measured.get(name)
            ok = _is_real(value) if kind is float else type(value) is int and value >= 0
            if not ok:
                raise bad(
                    "report",
                    f"stage {stage!r} entry {name!r} must be "
                    f"{'a number' if kind is float else 'a non-negative integer'}, got "
                    f"{_shown(value)}",
                )
    for name in ("pruning", "latency"):
        if report.get(name) is not None and not isinstance(report[name], dict):
            raise bad("report", f"entry {name!r} must be a dict, got {_kind(report[name])}")


def _is_real(value: Any) -> bool:
    return type(value) in (int, float)


def _kind(value: Any) -> str:
    return type(value).__name__


def _shown(value: Any) -> str:
    """A scalar as ``repr`` (short), anything else by its type: an error line stays short."""
    if isinstance(value, (str, int, float, bool, type(None))):
        text = repr(value)
        return text if len(text) <= 40 else f"{text[:37]}..."
    return f"a {_kind(value)}"
