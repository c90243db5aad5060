"""The :class:`Instance` record returned by ``read_instance`` / ``read_instances``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import dimod

_OBJECTIVE_NAMES = {"maxcut": "cut", "bqp": "bqp objective"}


@dataclass(frozen=True)
class Instance:
    """One problem read from a file, with what is needed to report its literature objective.

    Attributes:
        bqm: the problem as a minimisation BQM.
        name: ``"G1"``, ``"bqp50-3"`` or the file stem.
        kind: ``"maxcut"`` (Gset/rudy), ``"bqp"`` (Beasley OR-Library) or None.
        path: the file it came from.
        index: 1-based instance number inside a multi-instance file, else None.
        total_weight: sum of all edge weights W (max-cut only), else None.
    """

    bqm: dimod.BinaryQuadraticModel = field(repr=False)
    name: str
    kind: str | None = None
    path: Path | None = None
    index: int | None = None
    total_weight: float | None = None

    @property
    def sense(self) -> str | None:
        """``"max"`` for the literature kinds (cut and bqp objective are maximised)."""
        return "max" if self.kind in _OBJECTIVE_NAMES else None

    @property
    def objective_name(self) -> str | None:
        """``"cut"``, ``"bqp objective"`` or None."""
        return _OBJECTIVE_NAMES.get(self.kind) if self.kind else None

    def objective(self, energy: float) -> float | None:
        """The instance's own literature objective for an ``energy`` of :attr:`bqm`.

        Max-cut: cut = (W - energy) / 2. Beasley bqp: objective = -energy. Otherwise None.
        """
        if self.kind == "maxcut":
            if self.total_weight is None:
                raise ValueError(f"max-cut instance {self.name!r} has no total_weight")
            return (self.total_weight - float(energy)) / 2
        if self.kind == "bqp":
            # 0.0 - e rather than -e so that a zero energy gives 0.0, not -0.0.
            return 0.0 - float(energy)
        return None
