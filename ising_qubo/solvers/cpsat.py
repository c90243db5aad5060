"""``cpsat``: OR-Tools CP-SAT, an exact solver with optional hard constraints.

CP-SAT needs integer coefficients, so real biases are rounded to multiples of a
resolution; ``info`` reports the resolution and a bound on the energy error it causes.
Products x_i x_j become auxiliary Booleans y_ij (the standard exact linearisation
y <= x_i, y <= x_j, y >= x_i + x_j - 1, keeping only the side the objective's sign needs).
A ``count_budget`` is modelled on integer counts k_g = sum of a group's Booleans, with one
bounded integer product variable per k_g k_h (CP-SAT's multiplication constraint), so its
size grows with the number of groups and pairs, not with the pairs of variables.

``initial_states`` become CP-SAT's solution hint (the first state, completed with the values
of the auxiliary variables it implies) and the fallback answer: when the time limit ends
before CP-SAT finds a solution, the best given state that meets every constraint is
returned (the all-zeros state too when there is no constraint), rather than an error.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from typing import Any

import dimod
import numpy as np
from ortools.sat.python import cp_model

from ising_qubo.scaling import ScaledBudget, scale_budget, scale_objective
from ising_qubo.solvers._common import (
    ArrayModel,
    Stop,
    check_bqm,
    check_seed,
    optional_positive,
    optional_time_limit,
    parse_initial_states,
    positive_int,
    sampleset_from_states,
    wall_timer,
)
from ising_qubo.solvers.capabilities import Capability as C
from ising_qubo.solvers.count_budget import CountBudget

_SENSES = ("==", "<=", ">=")
# How many products are added between two checks of the time limit while building.
_BUILD_CHECK_EVERY = 4096
# Setting the objective costs about this fraction of the time spent adding the products.
_OBJECTIVE_SHARE = 0.5
_COMPARE = {"==": np.equal, "<=": np.less_equal, ">=": np.greater_equal}

# which rows of a (m, n) binary array meet one hard constraint, computed in the integers
# the model holds (so exactly the states CP-SAT itself accepts)
Check = Callable[[np.ndarray], np.ndarray]


class CPSATSampler(dimod.Sampler, dimod.Initialized):
    """Minimises a BQM with CP-SAT; ``info["status"]`` is OPTIMAL (proven) or FEASIBLE
    (UNKNOWN only for a fallback state, see ``initial_states``).

    Parameters:
        time_limit: seconds from the call, building the model included (CP-SAT gets what
            is left); on expiry the best state found is returned with FEASIBLE. When the
            model itself cannot be built in time (about 10 us per product term in Python:
            a dense 1,120-variable problem took 6-9 s idle, 50 s on a busy machine), the
            building stops, nothing is solved and the fallback below answers (status
            UNKNOWN, ``info["model_built"]`` says how far it got).
        num_reads: how many of the improving solutions found to return (best first).
        seed: CP-SAT's random seed.
        num_workers: CP-SAT search workers (default: the CPU count).
        resolution: coefficients are rounded to multiples of it (default: exact for
            integer problems, else about 1e-9 of the largest coefficient).
        cardinality, cardinality_sense: hard constraint ``sum x <sense> cardinality``.
        cardinalities: hard constraints ``sum x[variables] == k``, a list of
            (variables, k) pairs (e.g. "keep k_g units of group g" for every group).
        budget_costs, budget: hard constraint ``sum costs[v] x_v <= budget`` (real costs
            rounded conservatively, so solutions always meet the real budget).
        count_budget: hard constraint on the numbers k_g of selected variables in disjoint
            groups (e.g. the exact parameter count of a pruned network), a mapping
            ``{"groups": [[label, ...], ...], "constant": c0, "linear": [a_g, ...],
            "pairs": [(g, h, b_gh), ...], "limit": L, "floors": [f_g, ...]}`` meaning
            ``c0 + sum_g a_g k_g + sum b_gh k_g k_h <= L`` and ``k_g >= f_g`` (``groups``
            and ``limit`` required; g == h allowed; repeated pairs add up). Real
            coefficients are rounded conservatively (every returned state meets the real
            limit); ``info["count_budget"]`` reports the limit, the resolution, the
            ``margin`` by which rounding may tighten it, and the real ``costs`` of the
            returned rows. Unmeetable budgets raise ValueError with the least cost the
            floors allow.
        variables of a SPIN problem count as selected where s = +1.
        initial_states: known states (dimod's forms: an (array, labels) pair, a list of
            dicts, a SampleSet, ...). The first is CP-SAT's solution hint, with the
            auxiliary variables set to match it (y_ij = x_i x_j, the group counts and
            their products), so a hint that meets the constraints is a complete solution.
            If CP-SAT ends without any solution (status UNKNOWN: the time limit, building
            the model included, ran out first), the sampler returns the one lowest-energy
            state among the given states that meet every constraint (checked in the
            model's own integers: exactly the states CP-SAT accepts) and, for a problem
            with no constraint, the all-zeros state; ``info["fallback"]`` then says which
            ("initial_state" or "zeros"), ``info["status"]`` is CP-SAT's ("UNKNOWN") and
            ``info["bound"]`` is CP-SAT's lower bound if it had proven one, else -inf.
            Only when no such state is known does it raise RuntimeError.

    Ctrl-C during the search stops CP-SAT (the search runs in a worker thread while this
    one waits, so Python sees the signal at once; CP-SAT's own SIGINT handler is off) and
    returns the best state found with its status (FEASIBLE unless optimality was proven)
    and ``info["interrupted"] = True``; with no state found yet, the fallback state (above)
    is returned so marked, or KeyboardInterrupt is raised when there is none.
    """

    parameters = {
        "time_limit": [],
        "num_reads": [],
        "seed": [],
        "num_workers": [],
        "resolution": [],
        "cardinality": [],
        "cardinality_sense": ["cardinality_senses"],
        "cardinalities": [],
        "budget_costs": [],
        "budget": [],
        "count_budget": [],
        "initial_states": [],
        "log_search_progress": [],
    }
    properties = {"cardinality_senses": _SENSES, "exact": True}
    capabilities = frozenset(
        {
            C.CARDINALITY,
            C.CARDINALITIES,
            C.BUDGET,
            C.COUNT_BUDGET,
            C.INITIAL_STATES,
            C.TIME_LIMIT,
            C.INTERRUPT,
        }
    )

    def sample(
        self,
        bqm: dimod.BinaryQuadraticModel,
        time_limit: float | None = None,
        num_reads: int = 1,
        seed: int | None = None,
        num_workers: int | None = None,
        resolution: float | None = None,
        cardinality: int | None = None,
        cardinality_sense: str = "==",
        cardinalities: Any = None,
        budget_costs: Mapping[Hashable, float] | None = None,
        budget: float | None = None,
        count_budget: Mapping[str, Any] | None = None,
        initial_states: Any = None,
        log_search_progress: bool = False,
        **parameters: Any,
    ) -> dimod.SampleSet:
        seconds = optional_time_limit(time_limit, "cpsat")
        stop = Stop(seconds)
        check_bqm(bqm, "cpsat")
        self.remove_unknown_kwargs(**parameters)
        # No memory check on num_reads: the collector keeps at most the solutions found.
        num_reads = positive_int(num_reads, "num_reads", "cpsat")
        seed = check_seed(seed, "cpsat")
        if num_workers is not None:
            num_workers = positive_int(num_workers, "num_workers", "cpsat")
        resolution = optional_positive(resolution, "resolution", "cpsat", refuse_bool=True)
        model_arrays = ArrayModel.from_bqm(bqm, dimod.BINARY)
        n = model_arrays.num_variables
        index = {v: i for i, v in enumerate(model_arrays.labels)}
        starts = self._initial_states(bqm, initial_states)

        scaled = scale_objective(
            np.concatenate([model_arrays.linear, model_arrays.data]), resolution
        )
        int_linear, int_quadratic = scaled.integers[:n], scaled.integers[n:]

        model = cp_model.CpModel()
        x = [model.new_bool_var(f"x{i}") for i in range(n)]
        objective_terms = [(int(c), x[i]) for i, c in enumerate(int_linear) if c]
        products = []  # (i, j, y_ij)
        # Building costs about 10 us per product in Python (6-9 s for a dense 1,120-variable
        # problem, more on a busy machine) and setting the objective about half as much
        # again: the limit is checked as it goes, and a model that cannot be built in time
        # is not solved (the fallback below answers).
        began = time.perf_counter()

        def out_of_time() -> bool:
            left = stop.deadline.remaining()
            return left is not None and left < _OBJECTIVE_SHARE * (time.perf_counter() - began)

        built = True
        for k, ((i, j), c) in enumerate(
            zip(zip(model_arrays.rows, model_arrays.cols), int_quadratic)
        ):
            if k % _BUILD_CHECK_EVERY == 0 and k and out_of_time():
                built = False
                break
            if not c:
                continue
            y = model.new_bool_var(f"y{i}_{j}")
            products.append((int(i), int(j), y))
            # Minimisation pushes y down when c > 0 and up when c < 0, so only the bound
            # that stops it from cheating is needed; the other side holds at every optimum.
            if c > 0:
                model.add_bool_or([x[i].Not(), x[j].Not(), y])
            else:
                model.add_implication(y, x[i])
                model.add_implication(y, x[j])
            objective_terms.append((int(c), y))
        built = built and not out_of_time()
        if built:
            model.minimize(
                cp_model.LinearExpr.weighted_sum(
                    [var for _, var in objective_terms], [c for c, _ in objective_terms]
                )
            )

        info: dict[str, Any] = {
            "resolution": scaled.resolution,
            "max_coefficient_error": scaled.max_coefficient_error,
            "energy_error_bound": scaled.energy_error_bound,
        }
        checks: list[Check] = []
        if cardinality is not None:
            checks.append(
                self._add_cardinality(model, x, np.arange(n), cardinality, cardinality_sense)
            )
            info["cardinality"] = (cardinality_sense, int(cardinality))
        if cardinalities is not None:
            info["cardinalities"] = self._add_cardinalities(model, x, index, cardinalities, checks)
        if budget_costs is not None or budget is not None:
            info["budget"] = self._add_budget(model, x, index, budget_costs, budget, checks)
        counted = None
        count_terms: list = []
        if count_budget is not None:
            counted = CountBudget.parse(count_budget, index, "cpsat")
            info["count_budget"], count_terms = _add_count_budget(model, x, counted, checks)
        if len(starts) and built:
            _add_hint(model, x, products, counted, count_terms, starts[0])

        solver = cp_model.CpSolver()
        solver.parameters.num_workers = int(num_workers or os.cpu_count() or 1)
        if seed is not None:
            solver.parameters.random_seed = int(seed) % (2**31)
        solver.parameters.log_search_progress = bool(log_search_progress)
        solver.parameters.catch_sigint_signal = False  # _solve handles Ctrl-C

        collector = _SolutionCollector(x, num_reads)
        bounds: list[float] = []  # CP-SAT's proven lower bounds, as it reports them
        solver.best_bound_callback = bounds.append
        with stop, wall_timer(info):
            building = stop.deadline.elapsed()
            remaining = stop.deadline.remaining()  # None exactly when seconds is None
            if remaining is not None:
                # at least a little: CP-SAT then still returns any solution it has found
                solver.parameters.max_time_in_seconds = max(remaining, 0.01)
            if built:
                status = _solve(solver, model, collector, stop)
            else:  # a part of the objective is no model to solve: the fallback answers
                status = cp_model.UNKNOWN
                info["model_built"] = f"{len(products)} of {len(int_quadratic)} products"
        status_name = solver.status_name(status) if built else "UNKNOWN"
        if status == cp_model.INFEASIBLE:
            if counted is not None:
                _explain_infeasible_count_budget(counted, info)
            raise ValueError(
                f"cpsat: the constraints cannot be met (INFEASIBLE): {_constraints(info)}"
            )
        if status == cp_model.MODEL_INVALID:
            raise RuntimeError(f"cpsat: CP-SAT found the model invalid: {model.validate()}")
        info["status"] = status_name
        if collector.solutions:
            # The proven lower bound (exact up to energy_error_bound); a solution exists,
            # so CP-SAT's bound is set.
            lower = solver.best_objective_bound
            states = np.array(collector.solutions[::-1][:num_reads], dtype=np.int8)
        else:
            # CP-SAT's response holds 0 where it has no bound: only a reported one counts
            lower = max(bounds) if bounds else -np.inf
            fallback = _fallback(bqm, starts, checks)
            if fallback is None:
                if stop.interrupted:
                    raise KeyboardInterrupt
                given = (
                    f"none of the {len(starts)} initial_states meets the constraints"
                    if len(starts)
                    else "no initial_states given"
                )
                raise RuntimeError(
                    f"cpsat: no solution found (status {status_name}; building the model "
                    f"took {building:.2f} s) and {given}; raise time_limit or pass "
                    "initial_states that meet the constraints"
                )
            states, info["fallback"] = fallback
        stop.report(info)
        info["bound"] = lower * scaled.resolution + model_arrays.offset
        info["wall_time_cpsat_s"] = solver.wall_time if built else 0.0
        if counted is not None:
            info["count_budget"]["costs"] = counted.cost(counted.counts(states)).tolist()
        sampleset = sampleset_from_states(states, dimod.BINARY, bqm, info)
        return sampleset

    def _initial_states(self, bqm: dimod.BinaryQuadraticModel, given: Any) -> np.ndarray:
        """``given`` initial states as (m, n) BINARY rows in ``bqm.variables`` order (m = 0
        for None or no states; dimod's parser does the checks)."""
        n = len(bqm.variables)
        if given is None:
            return np.zeros((0, n), dtype=np.int8)
        rows = len(dimod.as_samples(given)[0])
        if rows == 0:  # dimod would make up a random state instead
            return np.zeros((0, n), dtype=np.int8)
        states = parse_initial_states(self, bqm, initial_states=given, num_reads=rows)
        if bqm.vartype is dimod.SPIN:
            states = (states + 1) // 2
        return np.asarray(states, dtype=np.int8)

    @staticmethod
    def _add_cardinality(model: Any, x: list, columns: np.ndarray, k: Any, sense: str) -> Check:
        """``sum x[columns] <sense> k``."""
        if sense not in _SENSES:
            raise ValueError(f"cpsat: cardinality_sense must be one of {_SENSES}, got {sense!r}")
        number = isinstance(k, (int, float, np.integer, np.floating)) and not isinstance(k, bool)
        if not number or not float(k).is_integer() or k < 0:
            raise ValueError(f"cpsat: cardinality must be a non-negative integer, got {k!r}")
        k = int(k)
        total = sum(x[i] for i in columns)
        if sense == "==":
            model.add(total == k)
        elif sense == "<=":
            model.add(total <= k)
        else:
            model.add(total >= k)
        compare = _COMPARE[sense]
        return lambda states: compare(states[:, columns].sum(axis=1), k)

    @classmethod
    def _add_cardinalities(
        cls, model: Any, x: list, index: dict, constraints: Any, checks: list[Check]
    ) -> int:
        try:
            pairs = [(list(variables), k) for variables, k in constraints]
        except (TypeError, ValueError):
            raise ValueError(
                "cpsat: cardinalities must be a list of (variables, k) pairs"
            ) from None
        for number, (variables, k) in enumerate(pairs):
            unknown = [v for v in variables if v not in index]
            if unknown:
                raise ValueError(
                    f"cpsat: cardinalities[{number}] names variables not in "
                    f"the model: {unknown[:5]}"
                )
            columns = np.array([index[v] for v in variables], dtype=np.int64)
            checks.append(cls._add_cardinality(model, x, columns, k, "=="))
        return len(pairs)

    @staticmethod
    def _add_budget(
        model: Any, x: list, index: dict, costs: Any, budget: Any, checks: list[Check]
    ) -> dict:
        if costs is None or budget is None:
            raise ValueError("cpsat: a budget needs both budget_costs and budget")
        unknown = [v for v in costs if v not in index]
        if unknown:
            raise ValueError(
                f"cpsat: budget_costs names variables not in the problem: {unknown[:5]!r}"
            )
        labels = list(costs)
        int_costs, int_budget, res = scale_budget(
            np.array([costs[v] for v in labels], float), float(budget)
        )
        model.add(sum(int(c) * x[index[v]] for v, c in zip(labels, int_costs)) <= int_budget)
        columns = np.array([index[v] for v in labels], dtype=np.int64)
        # int64 is exact here: CP-SAT refuses (MODEL_INVALID) a sum that could overflow it
        checks.append(lambda states: states[:, columns].astype(np.int64) @ int_costs <= int_budget)
        return {"limit": float(budget), "resolution": res}


def _add_count_budget(
    model: Any, x: list, budget: CountBudget, checks: list[Check]
) -> tuple[dict, list]:
    """Adds ``budget`` on counts k_g (floors as their lower bounds); returns its report and
    its terms (:func:`_count_terms`)."""
    scaled = budget.scaled()
    terms = _count_terms(model, budget)
    for k, group in zip(terms[1 : 1 + len(budget.groups)], budget.groups):
        model.add(k == sum(x[i] for i in group))
    model.add(_integer_cost(scaled, terms) <= scaled.integer_limit)

    def check(states: np.ndarray) -> np.ndarray:
        # int64 is exact: scaling keeps sum |integers| x term bounds below 2^62
        counts = budget.counts(states)
        values = _count_term_values(budget, counts) @ scaled.integers
        return np.all(counts >= budget.floors, axis=1) & (values <= scaled.integer_limit)

    checks.append(check)
    report = {
        "limit": budget.limit,
        "resolution": scaled.resolution,
        "margin": scaled.margin,
        "groups": len(budget.groups),
    }
    return report, terms


def _count_term_values(budget: CountBudget, counts: np.ndarray) -> np.ndarray:
    """The values of :func:`_count_terms` (rows of [1, k_g..., k_g k_h...]) at ``counts``."""
    counts = np.asarray(counts, dtype=np.int64)
    ones = np.ones((len(counts), 1), dtype=np.int64)
    products = np.array(
        [[row[g] * row[h] for g, h, _ in budget.pairs] for row in counts], dtype=np.int64
    ).reshape(len(counts), len(budget.pairs))
    return np.hstack([ones, counts, products])


def _add_hint(
    model: Any,
    x: list,
    products: list,
    budget: CountBudget | None,
    count_terms: list,
    state: np.ndarray,
) -> None:
    """Hints binary ``state`` with every auxiliary variable at the value it implies
    (y_ij = x_i x_j, counts and their products), so that a state meeting the constraints
    is a complete solution CP-SAT can take as it is."""
    for var, value in zip(x, state):
        model.add_hint(var, int(value))
    for i, j, y in products:
        model.add_hint(y, int(state[i] & state[j]))
    if budget is not None:
        values = _count_term_values(budget, budget.counts(state))[0]
        for term, value in zip(count_terms[1:], values[1:]):  # terms[0] is the constant 1
            model.add_hint(term, int(value))


def _fallback(
    bqm: dimod.BinaryQuadraticModel, starts: np.ndarray, checks: list[Check]
) -> tuple[np.ndarray, str] | None:
    """With no solution from CP-SAT: the lowest-energy known state meeting every constraint
    (of ``starts`` and, without constraints, all zeros) as a (1, n) binary array, and where
    it came from ("initial_state" or "zeros"); None if no such state is known."""
    feasible = np.ones(len(starts), dtype=bool)
    for check in checks:
        feasible &= check(starts)
    candidates = [starts[feasible]]
    if not checks:  # any assignment is feasible
        candidates.append(np.zeros((1, starts.shape[1]), dtype=np.int8))
    states = np.concatenate(candidates)
    if not len(states):
        return None
    spins = 2 * states - 1 if bqm.vartype is dimod.SPIN else states
    energies = bqm.energies((spins, list(bqm.variables)))
    best = int(np.argmin(energies))  # the first of equals: a given state before zeros
    return states[best : best + 1], "initial_state" if best < feasible.sum() else "zeros"


def _count_terms(model: Any, budget: CountBudget) -> list:
    """The terms [1, k_0 .. k_{G-1}, k_g k_h for each pair] of ``budget`` as CP-SAT
    variables: counts bounded by floors and group sizes, products tied to their factors."""
    sizes, floors = budget.sizes, budget.floors
    counts = [model.new_int_var(int(floors[g]), int(sizes[g]), f"k{g}") for g in range(len(sizes))]
    terms: list = [1, *counts]
    for g, h, _ in budget.pairs:
        low, high = int(floors[g] * floors[h]), int(sizes[g] * sizes[h])
        product = model.new_int_var(low, high, f"k{g}_k{h}")
        model.add_multiplication_equality(product, [counts[g], counts[h]])
        terms.append(product)
    return terms


def _integer_cost(scaled: ScaledBudget, terms: list) -> Any:
    return sum(int(c) * term for c, term in zip(scaled.integers, terms) if c)


def _explain_infeasible_count_budget(budget: CountBudget, info: dict) -> None:
    """Raises ValueError naming the least cost the floors allow when it already exceeds the
    limit (CP-SAT on the counts alone); returns when the budget alone can be met, so that
    the caller reports the constraints together."""
    scaled = budget.scaled()
    model = cp_model.CpModel()
    terms = _count_terms(model, budget)
    model.minimize(_integer_cost(scaled, terms))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = 10.0
    if solver.solve(model) != cp_model.OPTIMAL:
        return
    counts = np.array([solver.value(k) for k in terms[1 : 1 + len(budget.groups)]])
    least = float(budget.cost(counts))
    if round(solver.objective_value) <= scaled.integer_limit:
        info["count_budget"]["least_cost"] = least
        return
    rounded = solver.objective_value * scaled.resolution
    shown = f"{least:g}" if rounded == least else f"{least:g} ({rounded:g} as rounded up)"
    raise ValueError(
        f"cpsat: count_budget cannot be met (INFEASIBLE): the least cost the floors allow is "
        f"{shown} at k = {counts.tolist()}, above the limit {budget.limit:g}"
    )


def _constraints(info: dict) -> str:
    """The hard constraints of a call, in one line for an INFEASIBLE error."""
    parts = []
    if "cardinality" in info:
        sense, k = info["cardinality"]
        parts.append(f"cardinality {sense} {k}")
    if "cardinalities" in info:
        parts.append(f"{info['cardinalities']} group cardinalities")
    if "budget" in info:
        parts.append(f"budget <= {info['budget']['limit']:g}")
    if "count_budget" in info:
        budget = info["count_budget"]
        least = budget.get("least_cost")
        alone = "" if least is None else f" (alone its least cost is {least:g})"
        parts.append(f"count_budget <= {budget['limit']:g}{alone}")
    return ", ".join(parts) or "none"


def _solve(solver: Any, model: Any, collector: Any, stop: Stop) -> Any:
    """``solver.solve(model, collector)`` in a worker thread; Ctrl-C stops the search.

    The solve releases the GIL, so this thread keeps running Python: a Ctrl-C (``stop``'s
    flag, or a KeyboardInterrupt where its handler is not installed) calls
    ``solver.stop_search()``, and CP-SAT returns what it has found.
    """
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["status"] = solver.solve(model, collector)
        except BaseException as exc:  # re-raised in the calling thread
            result["error"] = exc

    worker = threading.Thread(target=target, name="cpsat-solve", daemon=True)
    worker.start()
    stopped = False
    while worker.is_alive():
        try:
            worker.join(0.05)
        except KeyboardInterrupt:
            if not stop.interrupt():
                solver.stop_search()
                raise
        if stop.interrupted and not stopped:
            solver.stop_search()
            stopped = True
    if "error" in result:
        raise result["error"]
    return result["status"]


class _SolutionCollector(cp_model.CpSolverSolutionCallback):
    """Keeps the last ``keep`` improving solutions CP-SAT reports."""

    def __init__(self, variables: list, keep: int) -> None:
        super().__init__()
        self.variables = variables
        self.keep = keep
        self.solutions: list[list[int]] = []

    def on_solution_callback(self) -> None:
        self.solutions.append([int(self.boolean_value(v)) for v in self.variables])
        del self.solutions[: -self.keep]
