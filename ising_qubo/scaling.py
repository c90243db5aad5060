"""Integer scaling of real coefficients, for tools that only accept integers.

CP-SAT and dimod's slack-variable constraints need integer coefficients. Objective
coefficients are rounded to the nearest multiple of a resolution (and the error is
reported); constraint coefficients are rounded conservatively, so that every state that
satisfies the integer constraint also satisfies the real one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# CP-SAT works on int64; keep the scaled objective far from overflow even when summed.
_MAX_SCALED = 2**40


def is_integral(values: np.ndarray) -> bool:
    values = np.asarray(values, dtype=float)
    return bool(np.all(np.isfinite(values)) and np.all(values == np.round(values)))


def auto_resolution(values: np.ndarray, relative_precision: float = 1e-9) -> float:
    """A power of ten close to ``relative_precision * max|values|`` (1 for integers)."""
    values = np.asarray(values, dtype=float)
    if values.size == 0 or is_integral(values) and np.max(np.abs(values), initial=0) < 2**53:
        return 1.0
    largest = float(np.max(np.abs(values)))
    if largest == 0:
        return 1.0
    return 10.0 ** math.floor(math.log10(largest * relative_precision))


@dataclass(frozen=True)
class ScaledObjective:
    """Integer coefficients ``round(value / resolution)`` and what the rounding cost."""

    integers: np.ndarray
    resolution: float
    max_coefficient_error: float
    energy_error_bound: float


def scale_objective(values: np.ndarray, resolution: float | None = None) -> ScaledObjective:
    """Round ``values`` to integer multiples of ``resolution``.

    ``energy_error_bound`` bounds |scaled energy - true energy| for every state, since each
    coefficient contributes at most its own rounding error.
    """
    values = np.asarray(values, dtype=float)
    if resolution is None:
        resolution = auto_resolution(values)
    if not resolution > 0 or not math.isfinite(resolution):
        raise ValueError(f"resolution must be a positive finite number, got {resolution!r}")
    scaled = np.round(values / resolution)
    if scaled.size and np.max(np.abs(scaled)) > _MAX_SCALED:
        raise ValueError(
            f"resolution {resolution:g} is too fine for coefficients up to "
            f"{np.max(np.abs(values)):g}: scaled values exceed 2**40; use a coarser resolution"
        )
    errors = np.abs(scaled * resolution - values)
    return ScaledObjective(
        integers=scaled.astype(np.int64),
        resolution=float(resolution),
        max_coefficient_error=float(errors.max(initial=0.0)),
        energy_error_bound=float(errors.sum()),
    )


def scale_budget(
    costs: np.ndarray, budget: float, resolution: float | None = None
) -> tuple[np.ndarray, int, float]:
    """Integer costs and budget for ``sum c_i x_i <= budget``, rounded conservatively.

    Costs are rounded up and the budget down, so any x with
    ``sum ceil(c_i/r) x_i <= floor(B/r)`` also satisfies the real constraint. Returns
    ``(integer_costs, integer_budget, resolution)``.
    """
    costs = np.asarray(costs, dtype=float)
    if not np.all(np.isfinite(costs)) or not math.isfinite(budget):
        raise ValueError("budget costs and limit must be finite numbers")
    if resolution is None:
        resolution = auto_resolution(np.append(costs, budget), relative_precision=1e-6)
    int_costs = np.ceil(costs / resolution - 1e-12).astype(np.int64)
    int_budget = int(math.floor(budget / resolution + 1e-12))
    return int_costs, int_budget, float(resolution)


@dataclass(frozen=True)
class ScaledBudget:
    """``sum integers[i] * t_i <= integer_limit`` in units of ``resolution``.

    ``margin`` bounds how much the rounding tightens the constraint: every t whose real cost
    is at most ``limit - margin`` is still accepted (0 when nothing had to be rounded).
    """

    integers: np.ndarray
    integer_limit: int
    resolution: float
    margin: float


def scale_bounded_budget(
    costs: np.ndarray,
    bounds: np.ndarray,
    limit: float,
    relative_precision: float = 1e-6,
) -> ScaledBudget:
    """Integer form of ``sum costs[i] * t_i <= limit`` for terms ``0 <= t_i <= bounds[i]``.

    Like :func:`scale_budget`, costs are rounded up and the limit down, so that a t accepted
    by the integer constraint meets the real one (t >= 0 makes rounding a cost up only ever
    raise the total). Here the terms may be large (a product of two counts), so the
    resolution is chosen from the largest possible total, ``max(|limit|, |c_i| bounds[i])``,
    shared among the terms: the rounding then tightens the constraint by at most about
    ``relative_precision`` of it (``margin`` reports by how much). Integer costs and limit are
    kept exactly (resolution 1).
    """
    costs = np.asarray(costs, dtype=float)
    bounds = np.asarray(bounds, dtype=float)
    if costs.shape != bounds.shape or costs.ndim != 1:
        raise ValueError("budget costs and term bounds must be 1-d arrays of one length")
    if not np.all(np.isfinite(costs)) or not math.isfinite(limit):
        raise ValueError("budget costs and limit must be finite numbers")
    if np.any(bounds < 0) or not np.all(np.isfinite(bounds)):
        raise ValueError("budget term bounds must be finite and non-negative")
    largest = max(abs(limit), float(np.max(np.abs(costs) * bounds, initial=0.0)))
    if is_integral(np.append(costs, limit)) and largest < 2**53:
        resolution = 1.0
    elif largest == 0:
        resolution = 1.0
    else:
        share = relative_precision * largest / (1.0 + float(bounds.sum()))
        resolution = 10.0 ** math.floor(math.log10(share))
    integers = np.ceil(costs / resolution).astype(np.int64)
    integers += integers * resolution < costs  # float division may land one below
    integer_limit = math.floor(limit / resolution)
    if integer_limit * resolution > limit:
        integer_limit -= 1
    if float(np.abs(integers).astype(float) @ bounds) + abs(integer_limit) > 2.0**62:
        raise ValueError(
            f"budget terms too large to scale to integers (costs up to "
            f"{np.max(np.abs(costs), initial=0.0):g}, limit {limit:g})"
        )
    excess = (integers * resolution - costs) @ bounds + (limit - integer_limit * resolution)
    return ScaledBudget(integers, int(integer_limit), float(resolution), float(max(excess, 0.0)))
