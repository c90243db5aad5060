"""The Ising pruner: a hook in any training loop, Ising-dropout, then real channel removal.

:class:`IsingPruner` follows the paper's schedule: while training, the state is re-solved
every ``every`` iterations (warm-started from the previous one, with the energy rebuilt
from the current weights), and the dropped units are zeroed in the forward pass, their
gradients masked and their weights restored after each step (:class:`UnitDropout`). The
state freezes at ``freeze_epoch`` or when the energy stops improving; :meth:`prune` then
removes the dropped channels for real (Torch-Pruning) and the caller fine-tunes.

:class:`~ising_qubo.pruning.pruners.importance.ImportancePruner` is the baseline with the
same interface and the same budget.

In a hand-written loop::

    pruner = IsingPruner(model, example_inputs, keep=0.5, data=calibration_batch)
    for epoch in range(epochs):
        for it, (x, y) in enumerate(loader):
            pruner.before_forward(it)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(); loss.backward()
            pruner.after_backward(it)
            optimizer.step()
            pruner.after_step(it, loss.item())      # re-solves every ``every`` calls
        pruner.on_epoch_end(epoch)
    pruner.prune()                                  # model is now physically smaller
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from torch import nn

from ising_qubo.nets.training import TrainingHook, UnitDropout
from ising_qubo.pruning.energies import Energy
from ising_qubo.pruning.problem import PruningProblem, PruningSolution
from ising_qubo.pruning.refine import Refinement, check_refine, check_refine_data, refine
from ising_qubo.solvers.registry import resolve_sampler


class IsingPruner(TrainingHook):
    """Ising-dropout training hook (see the module docstring).

    ``every``: iterations between re-solves (0: solve once, at the start). ``patience``:
    freeze after this many consecutive re-solves whose energy improved by less than
    ``tolerance`` (relative); ``freeze_epoch``: freeze at the end of that epoch (0-based)
    whatever the energy does. ``data``: the calibration batch the energy is rebuilt with
    (feature maps, Taylor importance); :meth:`step` accepts a fresh one. ``budget``:
    "uniform" (every group keeps the same fraction) or "global" (one constraint over the
    whole network, at least ``max(1, ceil(min_keep * n))`` units per group; see
    :mod:`ising_qubo.pruning.problem`).

    ``run_on_main`` (data-parallel training): a function that runs a zero-argument callable
    on the main process only and returns its result on every process, such as
    :meth:`ising_qubo.nets.distributed.Context.run_on_main`. Each :meth:`step` then rebuilds the
    energy and solves on the main process only; the masks and the new ``energy_history``
    row are broadcast, so every process holds the same state and takes the same freeze
    decisions, and sets its own dropout slices from the broadcast masks. ``None``: solve
    here (one process).

    ``refine=K > 1``: at the final selection only (:meth:`refine_selection`, which
    :meth:`prune` calls), not at every re-solve, keep of the last solve's solution and the
    K - 1 best other distinct states its solver returned the one whose pruned copy has the
    lowest loss on ``refine_data`` = (inputs, targets), a labelled batch held out from
    ``data`` (see :mod:`ising_qubo.pruning.refine`). After :meth:`load_state_dict` without
    a solve since, the last solve's samples are gone and only its masks are a candidate.
    """

    def __init__(
        self,
        model: nn.Module,
        example_inputs: Any,
        keep: float | None = 0.5,
        energy: str | Energy = "redundancy",
        solver: Any = "torch-sa",
        solver_params: dict | None = None,
        every: int = 50,
        patience: int = 5,
        tolerance: float = 1e-3,
        freeze_epoch: int | None = None,
        data: Any = None,
        keep_by: str = "params",
        ignored_layers: Any = None,
        budget: str = "uniform",
        min_keep: float = 0.1,
        run_on_main: Callable[[Callable[[], Any]], Any] | None = None,
        refine: int = 1,
        refine_data: Any = None,
        **energy_options: Any,
    ) -> None:
        self.refine = check_refine(refine)
        if self.refine > 1:
            check_refine_data(refine_data)
        self.refine_data = refine_data
        #: the final selection's candidates (None until refine_selection() ran with K > 1)
        self.refinement: Refinement | None = None
        self._solution: PruningSolution | None = None  # the last solve's, with samplesets
        self.model = model
        self.run_on_main = run_on_main
        self.problem = PruningProblem.from_model(
            model,
            example_inputs,
            energy=energy,
            keep=keep,
            data=data,
            keep_by=keep_by,
            ignored_layers=ignored_layers,
            budget=budget,
            min_keep=min_keep,
            **energy_options,
        )
        self.solver = solver
        self._sampler = resolve_sampler(solver)
        self.solver_params = dict(solver_params or {})
        self.every = int(every)
        self.patience = int(patience)
        self.tolerance = float(tolerance)
        self.freeze_epoch = freeze_epoch
        self.data = data
        self.dropout = UnitDropout()
        self.masks: dict[str, np.ndarray] | None = None
        self.frozen = False
        self.calls = 0
        self.stalled = 0
        self.energy_history: list[dict] = []  # one row per solve: iteration, energy, seconds

    @property
    def groups(self):
        return self.problem.groups

    # ----- solving -------------------------------------------------------------------
    def step(self, data: Any = None) -> PruningSolution:
        """Rebuild the energy from the current weights and re-solve (warm start).

        With ``run_on_main``, the main process solves and every process gets its result
        (the other processes' solution has no ``samplesets``).
        """
        if data is not None:
            self.data = data
        self.dropout.restore()  # measure the real weights, not the zeroed copies
        if self.run_on_main is None:
            solution, row = self._solve()
        else:
            full = None

            def solve_and_share():
                nonlocal full
                full, row = self._solve()
                return dataclasses.replace(full, samplesets=[]), row

            solution, row = self.run_on_main(solve_and_share)
            solution = full if full is not None else solution
        self._solution = solution
        self.refinement = None  # a new solve: the final selection is still to be made
        previous = self.energy_history[-1]["energy"] if self.energy_history else None
        self.masks = solution.masks
        self.dropout.set_slices(self.problem.model_groups.dropped_slices(self.masks))
        self.energy_history.append(row)
        if previous is not None:
            improvement = (previous - solution.energy) / max(abs(previous), 1e-12)
            self.stalled = self.stalled + 1 if improvement < self.tolerance else 0
        return solution

    def _solve(self) -> tuple[PruningSolution, dict]:
        """Refresh the energy and solve: the solution and its ``energy_history`` row."""
        started = time.perf_counter()
        self.problem.refresh(self.data)
        params = seeded_params(
            self._sampler, self.solver_params, self.problem.seed, len(self.energy_history)
        )
        solution = self.problem.solve(self._sampler, initial=self.masks, **params)
        row = {
            "iteration": self.calls,
            "energy": solution.energy,
            "solver_seconds": solution.seconds,
            "seconds": time.perf_counter() - started,
            "kept": int(sum(solution.kept.values())),
            "budget_met": solution.budget.get("met"),
        }
        return solution, row

    def freeze(self) -> None:
        if self.masks is None:
            self.step()
        self.frozen = True

    # ----- hook points ------------------------------------------------------------------
    def before_forward(self, iteration: int | None = None) -> None:
        if self.masks is None:
            self.step()
        self.dropout.before_forward(iteration)

    def after_backward(self, iteration: int | None = None) -> None:
        self.dropout.after_backward(iteration)

    def after_step(self, iteration: int | None = None, loss: float | None = None) -> None:
        self.dropout.after_step(iteration, loss)
        self.calls += 1
        if not self.frozen and self.every > 0 and self.calls % self.every == 0:
            self.step()
            if self.patience > 0 and self.stalled >= self.patience:
                self.frozen = True

    def on_epoch_end(self, epoch: int) -> None:
        if self.freeze_epoch is not None and epoch >= self.freeze_epoch:
            self.frozen = True

    def on_error(self, iteration: int | None, error: BaseException) -> None:
        self.dropout.on_error(iteration, error)

    # ----- the end ---------------------------------------------------------------------
    def refine_selection(self) -> Refinement | None:
        """The final selection by the true loss (``refine`` > 1; else nothing, None): the
        masks become the chosen candidate's. Runs once per solve; with ``run_on_main`` the
        main process evaluates (it holds the samples) and every process gets its choice."""
        if self.refine <= 1:
            return None
        if self.masks is None:
            self.step()
        if self.refinement is not None:
            return self.refinement
        self.dropout.restore()  # the real weights, not the zeroed copies
        masks = self.masks
        assert masks is not None  # step() above
        solution = self._solution
        if solution is None or solution.masks is not masks:  # resumed: the masks alone
            solution = PruningSolution(masks, self.problem.energy(masks), str(self.solver), 0.0)
        chosen = solution

        def evaluate() -> Refinement:
            return refine(self.problem, chosen, self.refine, self.model, self.refine_data)

        result = evaluate() if self.run_on_main is None else self.run_on_main(evaluate)
        self.refinement = result
        self.masks = result.masks
        self.dropout.set_slices(self.problem.model_groups.dropped_slices(self.masks))
        return result

    def prune(self) -> list[tuple[str, list[int]]]:
        """Remove the dropped channels from the model, in place; returns the history
        (after :meth:`refine_selection` when ``refine`` > 1)."""
        if self.masks is None:
            self.step()
        self.refine_selection()
        masks = self.masks
        assert masks is not None  # step() above
        self.dropout.restore()
        self.dropout.set_slices([])
        return self.problem.model_groups.prune(masks)

    def state_dict(self) -> dict:
        return {
            "masks": None
            if self.masks is None
            else {k: v.astype(bool).tolist() for k, v in self.masks.items()},
            "frozen": self.frozen,
            "calls": self.calls,
            "stalled": self.stalled,
            "energy_history": list(self.energy_history),
        }

    def load_state_dict(self, state: dict) -> None:
        masks = state.get("masks")
        if masks is not None:
            masks = {k: np.asarray(v, dtype=bool) for k, v in masks.items()}
            unknown = set(masks) - {g.name for g in self.groups}
            if unknown:
                raise ValueError(f"pruner state names unknown groups: {sorted(unknown)}")
            self.problem.state_from_masks(masks)  # checks every shape before anything changes
        self.masks = masks
        self._solution = None  # its samples are not in the state
        self.refinement = None
        self.dropout.set_slices(
            [] if masks is None else self.problem.model_groups.dropped_slices(masks)
        )
        self.frozen = bool(state.get("frozen", False))
        self.calls = int(state.get("calls", 0))
        self.stalled = int(state.get("stalled", 0))
        self.energy_history = list(state.get("energy_history", []))


def seeded_params(sampler: Any, params: dict, seed: int, solve_index: int) -> dict:
    """``params`` with a seed for solve number ``solve_index`` of a run seeded ``seed``,
    unless they carry one or the sampler takes none: a resumed run solves identically."""
    params = dict(params)
    if "seed" not in params and "seed" in getattr(sampler, "parameters", {}):
        params["seed"] = seed * 100_003 + solve_index
    return params
