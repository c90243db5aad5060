"""Building binary quadratic models from matrices, and constraint penalties.

Conventions (stated once, used everywhere):

* QUBO form: ``E(x) = x^T Q x + offset`` over ``x in {0,1}^n``. ``Q`` may be upper
  triangular or full; ``Q_ij`` and ``Q_ji`` add up, and the diagonal is linear (x_i^2 = x_i).
* Ising form: ``E(s) = h^T s + s^T J s + offset`` over ``s in {-1,+1}^n``. ``J_ij`` and
  ``J_ji`` add up, and the diagonal is constant (s_i^2 = 1), so it goes to the offset.
* A penalty is itself a BINARY BQM on x (x = 1 means "selected" / "kept"; for spin
  problems x = (s + 1) / 2), to be added to a problem with ``bqm.update(penalty)``.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import dimod
import numpy as np

from ising_qubo.scaling import auto_resolution, scale_budget

__all__ = [
    "budget_penalty",
    "cardinality_penalty",
    "from_ising_matrix",
    "from_qubo_matrix",
    "safe_penalty_strength",
    "with_budget",
    "with_cardinality",
]


def _to_coo(matrix: Any, name: str) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """(n, rows, cols, values) of a square dense, scipy-sparse or torch matrix."""
    if hasattr(matrix, "detach") and hasattr(matrix, "layout"):  # torch.Tensor
        tensor = matrix.detach()
        if tensor.layout != _torch_strided():
            tensor = tensor.to_sparse_coo().coalesce().cpu()
            rows, cols = tensor.indices().numpy()
            values = tensor.values().double().numpy()
            shape = tuple(tensor.shape)
        else:
            dense = tensor.cpu().double().numpy()
            shape = dense.shape
            rows, cols, values = _dense_to_coo(dense, name)
    elif hasattr(matrix, "tocoo"):  # scipy.sparse; imported lazily by its owner
        coo = matrix.tocoo()
        shape = coo.shape
        rows, cols, values = (
            np.asarray(coo.row),
            np.asarray(coo.col),
            np.asarray(coo.data, dtype=float),
        )
    else:
        try:
            dense = np.asarray(matrix, dtype=float)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be a numeric matrix: {exc}") from None
        shape = dense.shape
        rows, cols, values = _dense_to_coo(dense, name)
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"{name} must be a square matrix, got shape {tuple(shape)}")
    bad = ~np.isfinite(values)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name}[{rows[k]}, {cols[k]}] is {values[k]}: coefficients must be finite"
        )
    return int(shape[0]), rows.astype(np.int64), cols.astype(np.int64), values


def _torch_strided():
    import torch  # only reached when the caller already passed a tensor

    return torch.strided


def _dense_to_coo(dense: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if dense.ndim != 2:
        raise ValueError(f"{name} must be a square matrix, got shape {dense.shape}")
    rows, cols = np.nonzero(dense)
    nonfinite = ~np.isfinite(dense)
    if nonfinite.any():  # NaN compares nonzero, but make sure every bad entry is reported
        r, c = np.argwhere(nonfinite)[0]
        raise ValueError(f"{name}[{r}, {c}] is {dense[r, c]}: coefficients must be finite")
    return rows, cols, dense[rows, cols]


def _to_vector(vector: Any, n: int, name: str) -> np.ndarray:
    if vector is None:
        return np.zeros(n)
    if hasattr(vector, "detach"):
        vector = vector.detach().cpu().double().numpy()
    values = np.asarray(vector, dtype=float)
    if values.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {values.shape}")
    if not np.all(np.isfinite(values)):
        k = int(np.flatnonzero(~np.isfinite(values))[0])
        raise ValueError(f"{name}[{k}] is {values[k]}: coefficients must be finite")
    return values


def _build(
    n: int,
    linear: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    values: np.ndarray,
    offset: float,
    vartype: dimod.Vartype,
    labels: Sequence[Hashable] | None,
) -> dimod.BinaryQuadraticModel:
    diagonal = rows == cols
    linear = linear.copy()
    offset = float(offset)
    if vartype is dimod.BINARY:
        np.add.at(linear, rows[diagonal], values[diagonal])
    else:
        offset += float(values[diagonal].sum())
    off = ~diagonal
    bqm = dimod.BinaryQuadraticModel.from_numpy_vectors(
        linear, (rows[off], cols[off], values[off]), offset, vartype
    )
    if labels is not None:
        labels = list(labels)
        if len(labels) != n:
            raise ValueError(f"labels has {len(labels)} entries for {n} variables")
        if len(set(labels)) != n:
            raise ValueError("labels must be unique")
        bqm.relabel_variables(dict(enumerate(labels)), inplace=True)
    return bqm


def from_qubo_matrix(
    Q: Any, offset: float = 0.0, labels: Sequence[Hashable] | None = None
) -> dimod.BinaryQuadraticModel:
    """BINARY BQM with energy ``x^T Q x + offset``.

    ``Q`` is a square numpy array (or nested list), a scipy sparse matrix, or a torch
    tensor (dense or sparse, any device). ``labels`` names the variables (default 0..n-1).
    """
    n, rows, cols, values = _to_coo(Q, "Q")
    return _build(n, np.zeros(n), rows, cols, values, offset, dimod.BINARY, labels)


def from_ising_matrix(
    h: Any, J: Any, offset: float = 0.0, labels: Sequence[Hashable] | None = None
) -> dimod.BinaryQuadraticModel:
    """SPIN BQM with energy ``h^T s + s^T J s + offset``; ``h=None`` means no fields."""
    n, rows, cols, values = _to_coo(J, "J")
    return _build(n, _to_vector(h, n, "h"), rows, cols, values, offset, dimod.SPIN, labels)


def _binary_degrees(bqm: dimod.BinaryQuadraticModel) -> float:
    """max_i |a_i| + sum_j |b_ij| in BINARY form: the most one flip can change the energy."""
    binary = bqm if bqm.vartype is dimod.BINARY else bqm.change_vartype(dimod.BINARY, False)
    if binary.num_variables == 0:
        return 0.0
    vectors = binary.to_numpy_vectors()
    linear, (rows, cols, values) = vectors.linear_biases, vectors.quadratic
    reach = np.abs(linear).astype(float)
    np.add.at(reach, rows, np.abs(values))
    np.add.at(reach, cols, np.abs(values))
    return float(reach.max())


def safe_penalty_strength(bqm: dimod.BinaryQuadraticModel) -> float:
    """A cardinality-penalty strength that makes the penalised minimum feasible.

    A state that misses the target count by m can be repaired with m flips, which raise
    the objective by at most m * max_i(|a_i| + sum_j |b_ij|); its penalty is at least
    strength * m. Any strength above that maximum therefore never prefers an infeasible
    state, so the minimum of the penalised problem satisfies the constraint.
    """
    reach = _binary_degrees(bqm)
    return reach * 1.01 if reach > 0 else 1.0


def _check_variables(variables: Iterable[Hashable]) -> list[Hashable]:
    variables = list(variables)
    if len(set(variables)) != len(variables):
        raise ValueError("constraint variables must be unique")
    return variables


_SENSES = ("==", "<=", ">=")


def cardinality_penalty(
    variables: Iterable[Hashable], k: int, strength: float, sense: str = "=="
) -> dimod.BinaryQuadraticModel:
    """BINARY penalty that is 0 exactly when ``sum(x) <sense> k``, at least ``strength`` otherwise.

    ``==`` is ``strength * (sum x - k)^2``; the inequalities add log-encoded slack
    variables (dimod's ``add_linear_inequality_constraint``), labelled ``slack_cardinality_*``.
    """
    variables = _check_variables(variables)
    if sense not in _SENSES:
        raise ValueError(f"sense must be one of {_SENSES}, got {sense!r}")
    if isinstance(k, bool) or int(k) != k or not 0 <= k <= len(variables):
        raise ValueError(f"k must be an integer in [0, {len(variables)}], got {k!r}")
    if not strength > 0:
        raise ValueError(f"strength must be positive, got {strength!r}")
    k = int(k)
    penalty = dimod.BinaryQuadraticModel(dimod.BINARY)
    penalty.add_variables_from((v, 0.0) for v in variables)
    if sense == "==":
        penalty.add_linear_equality_constraint(((v, 1.0) for v in variables), strength, -k)
    elif sense == "<=" and k < len(variables):
        penalty.add_linear_inequality_constraint(
            [(v, 1) for v in variables], strength, "cardinality", constant=-k
        )
    elif sense == ">=" and k > 0:
        # sum x >= k  <=>  -sum x + k <= 0
        penalty.add_linear_inequality_constraint(
            [(v, -1) for v in variables], strength, "cardinality", constant=k
        )
    return penalty


def budget_penalty(
    costs: Mapping[Hashable, float],
    budget: float,
    strength: float,
    resolution: float | None = None,
) -> dimod.BinaryQuadraticModel:
    """BINARY penalty for the weighted budget ``sum_i costs[i] * x_i <= budget``.

    Slack variables need integer coefficients, so real costs are rounded up and the budget
    down to multiples of ``resolution``; every state with zero penalty therefore also meets
    the real budget. The default resolution, about 1e-3 of the largest value, keeps the
    slack to ~12 binary variables (their number grows with log2(budget / resolution)).
    """
    variables = _check_variables(costs)
    if not strength > 0:
        raise ValueError(f"strength must be positive, got {strength!r}")
    cost_values = np.array([costs[v] for v in variables], dtype=float)
    if resolution is None:
        resolution = auto_resolution(np.append(cost_values, budget), relative_precision=1e-3)
    int_costs, int_budget, _ = scale_budget(cost_values, budget, resolution)
    penalty = dimod.BinaryQuadraticModel(dimod.BINARY)
    penalty.add_variables_from((v, 0.0) for v in variables)
    if int_costs[int_costs > 0].sum() <= int_budget and int_budget >= 0:
        return penalty  # no state can exceed the budget
    penalty.add_linear_inequality_constraint(
        [(v, int(c)) for v, c in zip(variables, int_costs)],
        strength,
        "budget",
        constant=-int_budget,
    )
    return penalty


def with_cardinality(
    bqm: dimod.BinaryQuadraticModel,
    k: int,
    sense: str = "==",
    strength: float | None = None,
    variables: Iterable[Hashable] | None = None,
) -> dimod.BinaryQuadraticModel:
    """A copy of ``bqm`` plus a cardinality penalty (default: all variables, safe strength)."""
    if strength is None:
        strength = safe_penalty_strength(bqm)
    penalty = cardinality_penalty(
        bqm.variables if variables is None else variables, k, strength, sense
    )
    combined = bqm.copy()
    combined.update(penalty)
    return combined


def with_budget(
    bqm: dimod.BinaryQuadraticModel,
    costs: Mapping[Hashable, float],
    budget: float,
    strength: float | None = None,
    resolution: float | None = None,
) -> dimod.BinaryQuadraticModel:
    """A copy of ``bqm`` plus a budget penalty.

    The default strength is ``safe_penalty_strength(bqm) / min positive cost``: removing
    one item lowers the overshoot by at least the smallest cost. Unlike the cardinality
    case this is a heuristic, not a guarantee; CP-SAT takes the budget as a hard constraint.
    """
    if strength is None:
        positive = [c for c in costs.values() if c > 0]
        strength = safe_penalty_strength(bqm) / (min(positive) if positive else 1.0)
    combined = bqm.copy()
    combined.update(budget_penalty(costs, budget, strength, resolution))
    return combined
