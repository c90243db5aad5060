"""One-shot pruning: build the pruning problem once, solve it once, remove the channels.

No training happens: fine-tune the result, or use
:class:`~ising_qubo.pruning.pruners.IsingPruner` in a training loop for the paper's
Ising-dropout schedule.
"""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

from ising_qubo.pruning.energies import Energy
from ising_qubo.pruning.problem import PruningProblem
from ising_qubo.pruning.pruners.ising import seeded_params
from ising_qubo.pruning.refine import check_refine, check_refine_data
from ising_qubo.pruning.refine import refine as refine_masks
from ising_qubo.solvers.registry import resolve_sampler


def prune_model(
    model: nn.Module,
    example_inputs: Any,
    keep: float = 0.5,
    energy: str | Energy = "redundancy",
    solver: Any = "torch-sa",
    data: Any = None,
    keep_by: str = "params",
    inplace: bool = False,
    solver_params: dict | None = None,
    budget: str = "uniform",
    min_keep: float = 0.1,
    refine: int = 1,
    refine_data: Any = None,
    **energy_options: Any,
) -> nn.Module:
    """Solve the pruning problem once and return the physically pruned model.

    Works on a deep copy unless ``inplace=True`` (then ``model`` itself shrinks and is
    returned). ``budget="global"`` lets the solver decide how many units each layer keeps
    under one constraint over the whole network (at least ``max(1, ceil(min_keep * n))``
    per group); "uniform" keeps the same fraction in every group. ``energy_options`` go
    to :meth:`PruningProblem.from_model`
    (``importance``, ``similarity``, ``redundancy_weight``, ``seed``, ``ignored_layers``,
    and Torch-Pruning's ``unwrapped_parameters`` and ``customized_pruners``).

    Defaults that finish on large networks: groups of more than
    :data:`~ising_qubo.pruning.problem.STRUCTURED_GROUP_ABOVE` units are solved on their
    structured block by swap annealing (the budget met by every move) whatever the
    solver, and an exact solver (``"cpsat"``) gets a time limit per group
    (:func:`~ising_qubo.pruning.problem.exact_group_seconds`: 30 s shared by the groups,
    at least 0.5 s each) unless
    ``solver_params`` has a ``time_limit`` (see :attr:`PruningSolution.groups` for what
    each group got and whether optimality was proven).
    The result is the one :class:`~ising_qubo.pruning.pruners.IsingPruner` with
    ``every=0`` would prune to, with the energy built once instead of twice.

    ``refine=K > 1`` keeps, of the solution and the K - 1 best other distinct states the
    solver returned (each on the budget), the one whose pruned copy has the lowest loss on
    ``refine_data`` = (inputs, targets), a labelled batch held out from ``data`` (see
    :mod:`ising_qubo.pruning.refine`); K = 1 (the default) prunes to the solution.
    """
    k = check_refine(refine)
    if k > 1:
        check_refine_data(refine_data)
    target = model if inplace else copy.deepcopy(model)
    sampler = resolve_sampler(solver)
    problem = PruningProblem.from_model(
        target,
        example_inputs,
        energy=energy,
        keep=keep,
        data=data,
        keep_by=keep_by,
        budget=budget,
        min_keep=min_keep,
        **energy_options,
    )
    params = seeded_params(sampler, solver_params or {}, problem.seed, solve_index=0)
    solution = problem.solve(sampler, **params)
    masks = refine_masks(problem, solution, k, data=refine_data).masks if k > 1 else solution.masks
    problem.model_groups.prune(masks)
    return target
