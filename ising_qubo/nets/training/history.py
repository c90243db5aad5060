"""Per-epoch metrics of a run as plain, JSON-friendly columns (:class:`History`)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["History"]


def _plain_metric(key: str, value: Any) -> Any:
    """A JSON-friendly scalar: 0-d tensors and numpy scalars become Python numbers."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(
                f"metric {key!r} must be a scalar, got a tensor of shape {tuple(value.shape)}"
            )
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item"):  # numpy scalar, without importing numpy here
        return value.item()
    raise ValueError(f"metric {key!r} must be a number, string or None, got {type(value).__name__}")


@dataclass
class History:
    """Per-epoch metrics as a dict of equal-length lists (one row per :meth:`append`).

    A metric missing from a row (e.g. validation every 5 epochs) is ``None`` there, so all
    columns stay aligned. ``to_dict`` is plain JSON (and fits in a checkpoint).
    """

    columns: dict[str, list[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        lengths = {len(v) for v in self.columns.values()}
        if len(lengths) > 1:
            raise ValueError(
                f"History columns must have equal lengths, got "
                f"{ {k: len(v) for k, v in self.columns.items()} }"
            )
        self.columns = {str(k): list(v) for k, v in self.columns.items()}

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def __getitem__(self, key: str) -> list[Any]:
        return self.columns[key]

    def __contains__(self, key: object) -> bool:
        return key in self.columns

    def keys(self) -> list[str]:
        return list(self.columns)

    def append(self, **metrics: Any) -> None:
        """Add one row, e.g. ``history.append(epoch=3, loss=0.41, top1=87.2)``."""
        rows = len(self)
        for key, value in metrics.items():
            if key not in self.columns:
                self.columns[key] = [None] * rows
            self.columns[key].append(_plain_metric(key, value))
        for column in self.columns.values():
            if len(column) == rows:
                column.append(None)

    def last(self, key: str, default: Any = None) -> Any:
        """The most recent non-None value of ``key``, else ``default``."""
        for value in reversed(self.columns.get(key, ())):
            if value is not None:
                return value
        return default

    def to_dict(self) -> dict[str, list[Any]]:
        return {k: list(v) for k, v in self.columns.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Sequence[Any]]) -> History:
        return cls({k: list(v) for k, v in data.items()})

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> History:
        return cls.from_dict(json.loads(text))
