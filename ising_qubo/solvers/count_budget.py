"""The ``count_budget`` sampling parameter: read, checked and evaluated in one place.

A count budget is a hard limit on a quadratic function of how many variables are selected
(x = 1, or s = +1 for SPIN problems) in each of G disjoint groups, k_g::

    cost(k) = constant + sum_g linear[g] k_g + sum_(g, h, b) b k_g k_h <= limit,
    k_g >= floors[g]

The exact parameter or MAC count of a pruned network has this form (a convolution keeps
kept-in x kept-out x kh x kw weights). Solvers receive it as a mapping::

    {"groups": [[label, ...], ...], "constant": c0, "linear": [a_g, ...],
     "pairs": [(g, h, b_gh), ...], "limit": L, "floors": [f_g, ...]}

of which ``groups`` and ``limit`` are required; ``pairs`` may repeat a pair and may hold
g == h (a square).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ising_qubo.scaling import ScaledBudget, scale_bounded_budget

KEYS = ("groups", "constant", "linear", "pairs", "limit", "floors")


@dataclass(frozen=True)
class CountBudget:
    """A checked count budget over variables numbered by the solver (``index``).

    ``pairs`` holds each unordered pair (g <= h) once, coefficients of repeats summed.
    """

    groups: tuple[np.ndarray, ...]
    constant: float
    linear: np.ndarray
    pairs: tuple[tuple[int, int, float], ...]
    limit: float
    floors: np.ndarray

    @property
    def sizes(self) -> np.ndarray:
        return np.array([len(group) for group in self.groups], dtype=np.int64)

    def counts(self, states: np.ndarray) -> np.ndarray:
        """k per group of binary ``states`` (rows over the solver's variable numbering)."""
        states = np.atleast_2d(np.asarray(states))
        counts = np.zeros((len(states), len(self.groups)), dtype=np.int64)
        for g, group in enumerate(self.groups):
            counts[:, g] = states[:, group].sum(axis=1)
        return counts

    def cost(self, counts: np.ndarray) -> np.ndarray:
        """The real cost of each row of ``counts`` (shape (..., G))."""
        counts = np.asarray(counts, dtype=float)
        total = self.constant + counts @ self.linear
        for g, h, b in self.pairs:
            total = total + b * counts[..., g] * counts[..., h]
        return total

    def scaled(self) -> ScaledBudget:
        """The integer form, terms ordered [1, k_0 .. k_{G-1}, k_g k_h for each pair]."""
        sizes = self.sizes.astype(float)
        costs = [self.constant, *self.linear, *(b for _, _, b in self.pairs)]
        bounds = [1.0, *sizes, *(sizes[g] * sizes[h] for g, h, _ in self.pairs)]
        return scale_bounded_budget(np.array(costs, float), np.array(bounds), self.limit)

    @classmethod
    def parse(cls, spec: Any, index: Mapping[Hashable, int], solver: str) -> CountBudget:
        """Check ``spec`` against the problem's variables; ValueError names the key."""
        where = f"{solver}: count_budget"
        if not isinstance(spec, Mapping):
            raise ValueError(f"{where} must be a mapping with keys {KEYS}, got {spec!r}")
        unknown = [key for key in spec if key not in KEYS]
        if unknown:
            raise ValueError(f"{where} has unknown keys {unknown}; expected some of {KEYS}")
        for key in ("groups", "limit"):
            if key not in spec:
                raise ValueError(f"{where}[{key!r}] is required")
        groups = _groups(spec["groups"], index, f"{where}['groups']")
        count = len(groups)
        linear = _numbers(spec.get("linear", [0.0] * count), count, f"{where}['linear']")
        floors = _floors(spec.get("floors", [0] * count), groups, f"{where}['floors']")
        return cls(
            groups=groups,
            constant=_finite(spec.get("constant", 0.0), f"{where}['constant']"),
            linear=linear,
            pairs=_pairs(spec.get("pairs", ()), count, f"{where}['pairs']"),
            limit=_finite(spec["limit"], f"{where}['limit']"),
            floors=floors,
        )


def _finite(value: Any, where: str) -> float:
    if isinstance(value, (str, bytes, bool)):
        number = math.nan
    else:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
    if not math.isfinite(number):
        raise ValueError(f"{where} must be a finite number, got {value!r}")
    return number


def _integer(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float, np.floating)):
        raise ValueError(f"{where} must be an integer, got {value!r}")
    if not math.isfinite(value) or int(value) != value:
        raise ValueError(f"{where} must be an integer, got {value!r}")
    return int(value)


def _sequence(value: Any, where: str) -> list:
    if isinstance(value, (str, bytes, Mapping)):
        raise ValueError(f"{where} must be a list, got {value!r}")
    try:
        return list(value)
    except TypeError:
        raise ValueError(f"{where} must be a list, got {value!r}") from None


def _numbers(value: Any, count: int, where: str) -> np.ndarray:
    items = _sequence(value, where)
    if len(items) != count:
        raise ValueError(f"{where} must have one number per group ({count}), got {len(items)}")
    return np.array([_finite(item, f"{where}[{i}]") for i, item in enumerate(items)], float)


def _groups(value: Any, index: Mapping[Hashable, int], where: str) -> tuple[np.ndarray, ...]:
    owner: dict[int, int] = {}
    groups = []
    for g, group in enumerate(_sequence(value, where)):
        members = []
        for label in _sequence(group, f"{where}[{g}]"):
            try:
                i = index[label]
            except (KeyError, TypeError):
                raise ValueError(
                    f"{where}[{g}] names {label!r}, not a variable of the problem"
                ) from None
            if i in owner:
                raise ValueError(
                    f"{where}: variable {label!r} is in group {owner[i]} and group {g}; "
                    "groups must be disjoint"
                )
            owner[i] = g
            members.append(i)
        groups.append(np.array(members, dtype=np.int64))
    return tuple(groups)


def _pairs(value: Any, count: int, where: str) -> tuple[tuple[int, int, float], ...]:
    merged: dict[tuple[int, int], float] = {}
    for number, pair in enumerate(_sequence(value, where)):
        items = _sequence(pair, f"{where}[{number}]")
        if len(items) != 3:
            raise ValueError(f"{where}[{number}] must be (g, h, b), got {pair!r}")
        g, h = (_integer(item, f"{where}[{number}]") for item in items[:2])
        if not (0 <= g < count and 0 <= h < count):
            raise ValueError(f"{where}[{number}] = {pair!r}: groups g, h must be in 0..{count - 1}")
        key = (min(g, h), max(g, h))
        merged[key] = merged.get(key, 0.0) + _finite(items[2], f"{where}[{number}] b")
    return tuple((g, h, b) for (g, h), b in merged.items())


def _floors(value: Any, groups: tuple[np.ndarray, ...], where: str) -> np.ndarray:
    items = _sequence(value, where)
    if len(items) != len(groups):
        raise ValueError(f"{where} must have one floor per group ({len(groups)}), got {len(items)}")
    floors = np.array([_integer(f, f"{where}[{g}]") for g, f in enumerate(items)], np.int64)
    for g, (floor, group) in enumerate(zip(floors, groups)):
        if not 0 <= floor <= len(group):
            raise ValueError(
                f"{where}[{g}] = {floor} must be in 0..{len(group)} (the group's size)"
            )
    return floors
