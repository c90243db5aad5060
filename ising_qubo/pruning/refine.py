"""Choose among a solve's good states by the true loss (``--refine K``).

The energy only approximates what pruning costs the network. A solver returns many
low-energy states; :func:`refine` brings them onto the budget, keeps the distinct ones,
prunes a copy of the model for each of the K best (by energy) and keeps the masks whose
pruned copy has the lowest cross-entropy on a held-out labelled batch, in eval mode and
without any training. The candidates are:

* the solution's own masks (always, first: K = 1 is exactly the plain solution, and the
  chosen masks never lose to it on the batch);
* the K - 1 lowest-energy other distinct masks among the solver's samples, each brought
  onto the budget by the repair the problem's own polish starts with (:func:`onto_budget`:
  the per-group counts met, or the global limit and floors), but not by the descent that
  follows it there, which takes most samples to the same local minimum. Every candidate
  meets the budget as the plain solution does. A sampleset over every variable (a whole-network
  solve) gives whole states; a per-group sampleset gives the solution's state with that
  group replaced by one of its samples. At most :data:`POOL_PER_SAMPLESET` x K samples
  per sampleset are polished, in the sampleset's energy order.

Ties (equal energy, equal loss) go to the earlier candidate, so the choice is
deterministic for deterministic solves.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import dimod
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ising_qubo.lowrank import LowRankIsing
from ising_qubo.pruning.global_search import meet_and_descend
from ising_qubo.pruning.groups import ModelGroups
from ising_qubo.solvers.budgeted import budgeted_descent

if TYPE_CHECKING:  # the problem module imports nothing of this one
    from ising_qubo.pruning.problem import PruningProblem, PruningSolution

#: the most samples of one sampleset polished per candidate asked for
POOL_PER_SAMPLESET = 4
#: inputs per forward pass when the loss is measured
LOSS_CHUNK = 256


@dataclass
class Candidate:
    """One state :func:`refine` evaluated: its masks, energy (no budget penalty) and loss."""

    masks: dict[str, np.ndarray]
    energy: float
    loss: float | None = None  # None when nothing was evaluated (K = 1)
    plain: bool = False  # the solution's own masks

    def row(self) -> dict[str, Any]:
        return {
            "energy": self.energy,
            "loss": self.loss,
            "plain": self.plain,
            "kept": int(sum(int(np.sum(m)) for m in self.masks.values())),
        }


@dataclass
class Refinement:
    """What :func:`refine` returns: the chosen masks and every candidate's numbers."""

    masks: dict[str, np.ndarray]
    chosen: int  # index into candidates
    candidates: list[Candidate] = field(default_factory=list)

    def table(self) -> list[dict[str, Any]]:
        """One row per candidate (energy, loss, plain, kept units, chosen), for reports."""
        return [dict(c.row(), chosen=i == self.chosen) for i, c in enumerate(self.candidates)]


def check_refine(refine: Any) -> int:
    """``refine`` as an int >= 1, else a one-line ValueError naming it."""
    if isinstance(refine, bool) or not isinstance(refine, (int, np.integer)) or refine < 1:
        raise ValueError(f"refine must be an integer >= 1 (candidates to evaluate), got {refine!r}")
    return int(refine)


def check_refine_data(data: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs, targets)`` of the held-out batch, else a one-line ValueError."""
    if (
        not isinstance(data, (tuple, list))
        or len(data) != 2
        or not all(isinstance(t, torch.Tensor) for t in data)
    ):
        raise ValueError(
            "refine_data must be (inputs, targets), a held-out labelled batch of tensors, "
            f"when refine > 1; got {type(data).__name__}"
        )
    inputs, targets = data
    if len(inputs) == 0 or len(inputs) != len(targets):
        raise ValueError(
            f"refine_data: {len(inputs)} inputs and {len(targets)} targets; "
            "they must be as many, and at least one"
        )
    return inputs, targets


def refine(
    problem: PruningProblem,
    solution: PruningSolution,
    k: int,
    model: nn.Module | None = None,
    data: Any = None,
) -> Refinement:
    """The candidate (module docstring) whose pruned copy of ``model`` has the lowest
    cross-entropy on ``data`` = (inputs, targets).

    ``model``: the unpruned network the problem was built on (default: the problem's own);
    it is not changed. ``k = 1`` returns the solution's masks without evaluating anything.
    """
    k = check_refine(k)
    plain = Candidate(_copied(solution.masks), float(solution.energy), plain=True)
    if k == 1:
        return Refinement(plain.masks, 0, [plain])
    inputs, targets = check_refine_data(data)
    model = problem.model_groups.model if model is None else model
    candidates = candidate_masks(problem, solution, k)
    for candidate in candidates:
        candidate.loss = pruned_loss(problem.model_groups, model, candidate.masks, inputs, targets)
    losses = [
        c.loss if c.loss is not None and math.isfinite(c.loss) else math.inf for c in candidates
    ]
    chosen = int(np.argmin(losses))  # the first of equal losses
    return Refinement(_copied(candidates[chosen].masks), chosen, candidates)


def candidate_masks(problem: PruningProblem, solution: PruningSolution, k: int) -> list[Candidate]:
    """The solution's masks, then up to ``k - 1`` other distinct masks in increasing energy,
    each polished onto the budget (see the module docstring)."""
    k = check_refine(k)
    plain = Candidate(_copied(solution.masks), float(solution.energy), plain=True)
    seen = {_key(problem, plain.masks)}
    others: list[Candidate] = []
    if k > 1:
        energy = problem.structured(budget=False)
        for state in _sampled_states(problem, solution, POOL_PER_SAMPLESET * k):
            masks = onto_budget(problem, state, energy)
            key = _key(problem, masks)
            if key in seen:
                continue
            seen.add(key)
            others.append(Candidate(masks, problem.energy(masks)))
    order = sorted(range(len(others)), key=lambda i: (others[i].energy, i))
    return [plain] + [others[i] for i in order[: k - 1]]


def onto_budget(
    problem: PruningProblem, state: np.ndarray, energy: LowRankIsing | None = None
) -> dict[str, np.ndarray]:
    """The masks of binary ``state`` repaired onto the budget, without the descent that
    follows the repair in :meth:`~ising_qubo.pruning.problem.PruningProblem.polish` (it
    would take most samples to the same local minimum, leaving nothing to choose from):
    under a uniform budget the repair of :func:`~ising_qubo.solvers.budgeted.
    budgeted_descent` (``max_moves=0``: each group's count met by its cheapest flips), under
    a global one :func:`~ising_qubo.pruning.global_search.repair` (through
    :func:`~ising_qubo.pruning.global_search.meet_and_descend` with no round of descent):
    floors, then under the limit, then improving additions while the limit allows. A state
    already on a uniform budget is unchanged. ``energy``: ``problem.structured(budget=False)``
    if already built. Without a budget: :meth:`polish` (at least one unit per group)."""
    if problem.global_budget is None and problem.keep_counts is None:
        return problem.polish(problem.masks_from_state(state))[0]
    if energy is None:
        energy = problem.structured(budget=False)
    spins = 2.0 * np.asarray(state, dtype=float).reshape(-1) - 1.0
    index = [
        np.arange(problem.offsets[g.name], problem.offsets[g.name] + g.size) for g in problem.groups
    ]
    if problem.global_budget is not None:
        spins, _ = meet_and_descend(energy, spins, index, problem.global_budget, rounds=0)
    else:
        counts = problem.keep_counts
        assert counts is not None  # the uniform budget (no budget returned above)
        targets = [counts[g.name] for g in problem.groups]
        spins = budgeted_descent(energy, spins, index, targets, max_moves=0)[0]
    return problem.masks_from_state((np.asarray(spins) > 0).astype(np.int8))


def _sampled_states(problem: PruningProblem, solution: PruningSolution, per_set: int):
    """Binary whole-network states from the solution's samplesets (module docstring)."""
    base = problem.state_from_masks(solution.masks)
    position = {label: i for i, label in enumerate(problem.labels)}
    for sampleset in solution.samplesets:
        labels = [v for v in sampleset.variables if v in position]
        if not labels:
            continue
        index = np.array([position[v] for v in labels], dtype=np.int64)
        taken = 0
        seen: set[bytes] = set()
        for sample in sampleset.data(["sample"], sorted_by="energy"):
            values = np.array([sample.sample[v] for v in labels], dtype=np.int8)
            if sampleset.vartype is dimod.SPIN:
                values = (values + 1) // 2
            key = values.tobytes()
            if key in seen:
                continue
            seen.add(key)
            state = base.copy()
            state[index] = values
            yield state
            taken += 1
            if taken >= per_set:
                break


def pruned_loss(
    groups: ModelGroups,
    model: nn.Module,
    masks: Mapping[str, np.ndarray],
    inputs: torch.Tensor,
    targets: torch.Tensor,
) -> float:
    """Mean cross-entropy on (inputs, targets) of a copy of ``model`` pruned to ``masks``
    (Torch-Pruning surgery on the copy, found anew as ``groups`` found the model's), in eval
    mode without gradients; ``model`` itself is not changed."""
    clone = copy.deepcopy(model)
    by_name = dict(clone.named_parameters())
    names = {id(p): name for name, p in model.named_parameters()}
    unwrapped = [
        (by_name[names[pid]], dim) for pid, dim in groups._declared.items() if pid in names
    ]
    ModelGroups(clone, groups.example_inputs, groups.ignored, unwrapped or None).prune(masks)
    clone.eval()
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(inputs), LOSS_CHUNK):
            x = inputs[start : start + LOSS_CHUNK]
            y = targets[start : start + LOSS_CHUNK]
            total += float(F.cross_entropy(clone(x), y, reduction="sum"))
    return total / len(inputs)


def _key(problem: PruningProblem, masks: Mapping[str, np.ndarray]) -> bytes:
    return problem.state_from_masks(masks).astype(np.int8).tobytes()


def _copied(masks: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: np.asarray(mask, dtype=bool).copy() for name, mask in masks.items()}


__all__ = [
    "Candidate",
    "Refinement",
    "candidate_masks",
    "check_refine",
    "check_refine_data",
    "onto_budget",
    "pruned_loss",
    "refine",
]
