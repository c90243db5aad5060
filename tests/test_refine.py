"""--refine K: the K best distinct states, each on the budget, judged by the loss of the
really pruned network on a held-out batch; checked against copies pruned by hand."""

from __future__ import annotations

import copy

import dimod
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ising_qubo.cli.app import build_parser
from ising_qubo.cli.pruning import _config
from ising_qubo.pruning.groups import ModelGroups
from ising_qubo.pruning.pipeline import RunConfig
from ising_qubo.pruning.problem import PruningProblem
from ising_qubo.pruning.pruners import IsingPruner, prune_model
from ising_qubo.pruning.refine import candidate_masks, onto_budget, refine

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SA = {"num_reads": 8, "num_sweeps": 30, "seed": 0}


class Tiny(nn.Module):
    """Three convs of 6, 6 and 5 channels, a classifier kept whole."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.conv2, self.bn2 = nn.Conv2d(6, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.conv3, self.bn3 = nn.Conv2d(6, 5, 3, padding=1), nn.BatchNorm2d(5)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        x = torch.relu(self.bn3(self.conv3(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = Tiny()
    with torch.no_grad():  # a trained-looking BatchNorm, so channels differ in what they do
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.2, 2.0)
                module.running_var.uniform_(0.5, 2.0)
    model.eval()
    calibration = torch.randn(6, 3, 8, 8), torch.randint(0, 3, (6,))
    held_out = torch.randn(16, 3, 8, 8), torch.randint(0, 3, (16,))
    return model, calibration, held_out


def loss_by_hand(model: nn.Module, inputs: torch.Tensor, masks: dict, batch) -> float:
    """The held-out loss of a copy of ``model`` pruned to ``masks`` by its own surgery."""
    copied = copy.deepcopy(model)
    ModelGroups(copied, inputs).prune(masks)
    copied.eval()
    with torch.no_grad():
        return float(F.cross_entropy(copied(batch[0]), batch[1]))


def key(problem: PruningProblem, masks: dict) -> bytes:
    return problem.state_from_masks(masks).tobytes()


def on_budget(problem: PruningProblem, masks: dict) -> bool:
    counts = {name: int(mask.sum()) for name, mask in masks.items()}
    if problem.global_budget is not None:
        return problem.global_budget.meets(counts)
    return counts == problem.keep_counts


def problem_of(tiny, budget: str, energy: str = "redundancy") -> PruningProblem:
    model, calibration, _ = tiny
    return PruningProblem.from_model(
        model, calibration[0][:1], energy=energy, keep=0.5, data=calibration, budget=budget
    )


def with_samples(problem: PruningProblem, solution, n: int, seed: int, on_counts: bool = False):
    """``solution`` with its samples replaced by ``n`` random whole-network states (with
    ``on_counts``: each keeping exactly the uniform budget's count of every group; a real
    solver on a problem this small returns its optimum in every read)."""
    rng = np.random.default_rng(seed)
    states = rng.integers(0, 2, size=(n, problem.num_variables))
    if on_counts:
        assert problem.keep_counts is not None
        for state in states:
            for g in problem.groups:
                mask = np.zeros(g.size, dtype=int)
                mask[rng.choice(g.size, problem.keep_counts[g.name], replace=False)] = 1
                start = problem.offsets[g.name]
                state[start : start + g.size] = mask
    bqm = problem.to_bqm(None, budget=False)
    sampleset = dimod.SampleSet.from_samples_bqm((states, problem.labels), bqm)
    solution.samplesets = [sampleset]
    return solution, states


@pytest.mark.parametrize(
    ("budget", "energy", "samples"),
    [
        ("uniform", "redundancy", "solver"),  # per-group samplesets
        ("uniform", "ipruning", "random"),  # whole-network states on the counts
        ("global", "redundancy", "random"),  # polished: the solver's all polish alike
        ("global", "ipruning", "random"),
    ],
)
def test_chosen_masks_have_the_least_loss_over_distinct_candidates_on_the_budget(
    tiny, budget, energy, samples
):
    model, calibration, held_out = tiny
    problem = problem_of(tiny, budget, energy)
    solution = problem.solve("torch-sa", **SA)
    if samples == "random":
        solution, _ = with_samples(problem, solution, 12, seed=2, on_counts=budget == "uniform")
    result = refine(problem, solution, 5, model, held_out)
    candidates = result.candidates
    assert 2 <= len(candidates) <= 5
    assert candidates[0].plain and key(problem, candidates[0].masks) == key(problem, solution.masks)
    assert len({key(problem, c.masks) for c in candidates}) == len(candidates)  # distinct
    losses = []
    for c in candidates:
        assert on_budget(problem, c.masks)
        assert c.energy == pytest.approx(problem.energy(c.masks))
        losses.append(loss_by_hand(model, calibration[0][:1], c.masks, held_out))
        assert c.loss == pytest.approx(losses[-1], rel=1e-5, abs=1e-6)
    others = [c.energy for c in candidates[1:]]
    assert others == sorted(others)
    best = int(np.argmin(losses))
    assert result.chosen == best and key(problem, result.masks) == key(
        problem, candidates[best].masks
    )
    assert min(losses) <= losses[0]  # never worse than the plain solution on the batch
    table = result.table()
    assert [row["chosen"] for row in table].count(True) == 1 and table[best]["chosen"]


@pytest.mark.parametrize(
    ("budget", "on_counts"), [("uniform", True), ("uniform", False), ("global", False)]
)
def test_candidates_are_the_lowest_energy_polished_samples(tiny, budget, on_counts):
    problem = problem_of(tiny, budget)
    solution = problem.solve("torch-sa", **SA)
    solution, states = with_samples(problem, solution, 12, seed=1, on_counts=on_counts)
    k = 4
    found = candidate_masks(problem, solution, k)
    # by hand: polish every sample onto the budget, drop repeats and the solution's masks
    pool: dict[bytes, float] = {}
    for state in states[: 4 * k]:
        masks = onto_budget(problem, state)
        assert on_budget(problem, masks)
        if on_counts:  # a state on the uniform budget is taken as it is
            assert key(problem, masks) == key(problem, problem.masks_from_state(state))
        pool.setdefault(key(problem, masks), problem.energy(masks))
    pool.pop(key(problem, solution.masks), None)
    expected = sorted(pool.values())[: k - 1]
    assert [c.energy for c in found[1:]] == pytest.approx(expected)
    assert all(on_budget(problem, c.masks) for c in found)


def test_k_one_is_the_plain_solution(tiny):
    model, calibration, held_out = tiny
    problem = problem_of(tiny, "uniform")
    solution = problem.solve("torch-sa", **SA)
    result = refine(problem, solution, 1, model)  # no data needed: nothing is evaluated
    assert result.chosen == 0 and result.candidates[0].loss is None
    assert key(problem, result.masks) == key(problem, solution.masks)
    plain = prune_model(model, calibration[0][:1], keep=0.5, data=calibration, solver_params=SA)
    same = prune_model(
        model, calibration[0][:1], keep=0.5, data=calibration, solver_params=SA, refine=1
    )
    assert [p.shape for p in plain.parameters()] == [p.shape for p in same.parameters()]
    assert torch.equal(plain(held_out[0]), same(held_out[0]))


def test_prune_model_prunes_to_the_refined_choice(tiny):
    model, calibration, held_out = tiny
    example = calibration[0][:1]
    problem = problem_of(tiny, "uniform")
    params = dict(SA)
    solution = problem.solve("torch-sa", **params)
    chosen = refine(problem, solution, 4, model, held_out)
    pruned = prune_model(
        model,
        example,
        keep=0.5,
        data=calibration,
        solver_params=params,
        refine=4,
        refine_data=held_out,
    )
    by_hand = copy.deepcopy(model)
    ModelGroups(by_hand, example).prune(chosen.masks)
    with torch.no_grad():
        assert torch.allclose(pruned(held_out[0]), by_hand(held_out[0]))
    assert sum(p.numel() for p in model.parameters()) > sum(p.numel() for p in pruned.parameters())


def test_pruner_refines_at_its_final_selection_only(tiny):
    model, calibration, held_out = tiny
    model = copy.deepcopy(model)
    pruner = IsingPruner(
        model,
        calibration[0][:1],
        keep=0.5,
        data=calibration,
        every=0,
        solver_params=SA,
        refine=3,
        refine_data=held_out,
    )
    pruner.step()
    plain = {k: v.copy() for k, v in pruner.masks.items()}
    assert pruner.refinement is None  # a re-solve does not refine
    pruner.prune()
    refinement = pruner.refinement
    assert refinement is not None and len(refinement.candidates) >= 2
    assert key(pruner.problem, refinement.candidates[0].masks) == key(pruner.problem, plain)
    assert key(pruner.problem, pruner.masks) == key(pruner.problem, refinement.masks)
    kept = {g.name: int(pruner.masks[g.name].sum()) for g in pruner.groups}
    assert model.conv1.out_channels == kept["conv1"]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_k_is_a_clear_error(tiny, bad):
    model, calibration, held_out = tiny
    problem = problem_of(tiny, "uniform")
    solution = problem.solve("torch-sa", **SA)
    with pytest.raises(ValueError, match="refine must be an integer >= 1"):
        refine(problem, solution, bad, model, held_out)
    with pytest.raises(ValueError, match="refine must be an integer >= 1"):
        prune_model(model, calibration[0][:1], keep=0.5, data=calibration, refine=bad)
    with pytest.raises(ValueError, match="--refine must be an integer >= 1"):
        RunConfig(out="x", refine=bad)


def test_refine_without_a_held_out_batch_or_for_a_baseline_is_a_clear_error(tiny):
    model, calibration, _ = tiny
    with pytest.raises(ValueError, match="refine_data must be"):
        prune_model(model, calibration[0][:1], keep=0.5, data=calibration, refine=2)
    with pytest.raises(ValueError, match="refine_data must be"):
        IsingPruner(copy.deepcopy(model), calibration[0][:1], data=calibration, refine=2)
    with pytest.raises(ValueError, match="--refine 3 applies to --method ising only"):
        RunConfig(out="x", method="l1", refine=3)


def test_cli_flag_parses_into_the_run_config():
    parser = build_parser()
    args = parser.parse_args(["prune", "--out", "run", "--refine", "4"])
    assert _config(args).refine == 4
    assert _config(parser.parse_args(["prune", "--out", "run"])).refine == 1
    args = parser.parse_args(["train", "--out", "run", "--method", "ising", "--refine", "2"])
    assert _config(args).refine == 2


@pytest.mark.slow
def test_a_run_refines_on_a_held_out_batch_and_reports_the_candidates(
    tmp_path, image_folder, monkeypatch
):
    from ising_qubo.pruning import pipeline

    seen = {}

    class Recording(IsingPruner):
        def __init__(self, *args, **kwargs):
            seen.update(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(pipeline, "IsingPruner", Recording)
    config = RunConfig(
        out=str(tmp_path / "run"),
        dataset="imagefolder",
        data_dir=str(image_folder),
        epochs=0,
        finetune_epochs=0,
        batch_size=16,
        resolve_every=0,
        calibration_size=32,
        progress=False,
        solver_params={"num_reads": 8, "num_sweeps": 20, "seed": 0},
        refine=3,
    )
    report = pipeline.run(config)
    calibration, held_out = seen["data"], seen["refine_data"]
    assert len(held_out[0]) == 32 == len(calibration[0])
    flat = calibration[0].flatten(1)
    for image in held_out[0].flatten(1):  # no calibration image is held out
        assert not (flat == image).all(dim=1).any()
    table = report["pruning"]["refine"]
    assert table["k"] == 3 and table["held_out"] == 32
    rows = table["candidates"]
    assert 1 <= len(rows) <= 3 and rows[0]["plain"]
    losses = [row["loss"] for row in rows]
    assert rows[int(np.argmin(losses))]["chosen"] and table["chosen"] == int(np.argmin(losses))
    kept = sum(k for k, _ in report["pruning"]["kept"].values())
    assert rows[table["chosen"]]["kept"] == kept
    assert report["budget"]["met"] <= report["budget"]["asked"] + 0.02
