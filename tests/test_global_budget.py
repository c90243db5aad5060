"""The whole-network budget: its cost against really pruned networks, every solver against
a brute-force optimum on a tiny network, the search that keeps the budget, and the
budget passed from the command line to the report."""

from __future__ import annotations

import copy
import itertools
import json
import time

import dimod
import numpy as np
import pytest
import torch
from conftest import resnet20_prune_args
from timing import timed
from torch import nn

from ising_qubo.cli import main
from ising_qubo.lowrank import LowRankIsing
from ising_qubo.nets.models import build
from ising_qubo.pruning.budget import GlobalBudget
from ising_qubo.pruning.global_search import (
    FieldState,
    GroupIndex,
    SearchCounts,
    budget_moves,
    meet_and_descend,
    repair,
)
from ising_qubo.pruning.groups import ModelGroups, count_macs, count_params
from ising_qubo.pruning.problem import PruningProblem
from ising_qubo.pruning.prune import prune_model
from ising_qubo.pruning.pruners import IsingPruner
from ising_qubo.solvers.count_budget import CountBudget
from ising_qubo.solvers.registry import list_solvers

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SA = {"num_reads": 4, "num_sweeps": 100, "seed": 0}
SEEDED = {
    "neal": {"seed": 0},
    "tabu": {"seed": 0},
    "de": {"seed": 0},
    "torch-sa": SA,
    "torch-sb": {"seed": 0},
    "sb-ref": {},
    "cpsat": {"num_workers": 1},
}


class Tiny3(nn.Module):
    """Three convs of 4, 4 and 3 channels (11 unit variables), a classifier kept whole."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.conv2, self.bn2 = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.conv3, self.bn3 = nn.Conv2d(4, 3, 3, padding=1), nn.BatchNorm2d(3)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.relu(self.bn3(self.conv3(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return Tiny3().eval(), torch.randn(4, 3, 8, 8)


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return build("resnet20").eval(), torch.randn(8, 3, 32, 32)


def random_masks(groups: ModelGroups, counts: dict, rng) -> dict:
    masks = {}
    for g in groups.groups:
        mask = np.zeros(g.size, dtype=bool)
        mask[rng.choice(g.size, counts[g.name], replace=False)] = True
        masks[g.name] = mask
    return masks


def really_pruned(model: nn.Module, inputs, masks: dict) -> nn.Module:
    """A copy of ``model`` with the channels of ``masks`` removed by real surgery."""
    copied = copy.deepcopy(model)
    ModelGroups(copied, inputs).prune(masks)
    return copied


# ----- the cost of the really pruned model ----------------------------------------------------


@pytest.mark.parametrize("name", ["tiny", "resnet20"])
def test_cost_is_the_really_pruned_models_params_and_macs(name, tiny, resnet):
    model = tiny[0] if name == "tiny" else resnet[0]
    inputs = torch.randn(1, 3, 8, 8) if name == "tiny" else torch.randn(1, 3, 32, 32)
    groups = ModelGroups(model, inputs)
    by_params = GlobalBudget.from_groups(groups, 0.5, "params", min_keep=0.0)
    by_macs = GlobalBudget.from_groups(groups, 0.5, "macs", min_keep=0.0)
    assert by_params.dense == count_params(model)
    assert by_macs.dense == count_macs(model, inputs)
    rng = np.random.default_rng(3)
    for _ in range(4):
        counts = {g.name: int(rng.integers(1, g.size + 1)) for g in groups.groups}
        pruned = really_pruned(model, inputs, random_masks(groups, counts, rng))
        assert by_params.cost(counts) == pytest.approx(count_params(pruned), abs=1e-6)
        assert by_macs.cost(counts) == pytest.approx(count_macs(pruned, inputs), abs=1e-6)
        # the same table as the uniform budget's kept_fraction
        assert by_params.fraction(counts) == pytest.approx(groups.kept_fraction(counts))


def test_budget_forms_agree_with_the_cost():
    rng = np.random.default_rng(0)
    sizes = [3, 4, 2]
    quadratic = np.triu(rng.random((3, 3)) * 5)
    budget = GlobalBudget(
        ["a", "b", "c"], sizes, 7.0, [1.0, 2.0, 0.5], quadratic, 0.6, "params", 0.3
    )
    assert budget.floors.tolist() == [1, 2, 1]  # max(1, ceil(0.3 n))
    index = [np.arange(0, 3), np.arange(3, 7), np.arange(7, 9)]
    labels = [[f"v{i}" for i in idx] for idx in index]
    parsed = CountBudget.parse(
        budget.as_count_budget(labels), {f"v{i}": i for i in range(9)}, "test"
    )
    linear, terms, constant = budget.unit_terms(index, 9)
    as_ising = LowRankIsing.from_binary(linear, (), terms, constant)
    for x in itertools.product([0, 1], repeat=9):
        x = np.array(x)
        k = np.array([x[i].sum() for i in index])
        direct = (
            7.0
            + k @ [1.0, 2.0, 0.5]
            + sum(quadratic[g, h] * k[g] * k[h] for g in range(3) for h in range(3))
        )
        assert budget.cost(k) == pytest.approx(direct)
        assert parsed.cost(parsed.counts(x))[0] == pytest.approx(direct)
        assert as_ising.energies(2 * x[None, :] - 1)[0] == pytest.approx(direct)
    assert parsed.limit == budget.limit and parsed.floors.tolist() == [1, 2, 1]
    k = np.array([2, 2, 1])
    for g in range(3):
        e = np.eye(3, dtype=int)[g]
        assert budget.drop_savings(k)[g] == pytest.approx(budget.cost(k) - budget.cost(k - e))
        assert budget.add_costs(k)[g] == pytest.approx(budget.cost(k + e) - budget.cost(k))


# ----- the search that keeps the budget -------------------------------------------------------


def random_structured(n: int, seed: int) -> LowRankIsing:
    rng = np.random.default_rng(seed)
    blocks = []
    for index in (np.arange(0, 5), np.arange(3, 9)):  # overlapping blocks
        J = rng.normal(size=(len(index), len(index)))
        J = J + J.T
        np.fill_diagonal(J, 0.0)
        blocks.append((index, J))
    return LowRankIsing(
        rng.normal(size=n), blocks, rng.normal(size=(2, n)), rng.normal(size=(2, n))
    )


def test_fields_give_exact_single_and_pair_flip_energies():
    model = random_structured(9, 1)
    spins = np.random.default_rng(2).choice([-1.0, 1.0], size=9)
    state = FieldState(model, spins)
    base = model.energies(spins[None, :])[0]
    deltas = state.flip_deltas()
    couplings = state.couplings(np.arange(9), np.arange(9))
    for i in range(9):
        flipped = spins.copy()
        flipped[i] *= -1
        assert deltas[i] == pytest.approx(model.energies(flipped[None, :])[0] - base)
        for j in range(9):
            if i == j:
                continue
            both = flipped.copy()
            both[j] *= -1
            pair = deltas[i] + deltas[j] + (-2 * spins[i]) * (-2 * spins[j]) * couplings[i, j]
            assert pair == pytest.approx(model.energies(both[None, :])[0] - base)
    state.flip(4)
    state.flip(7)
    spins[[4, 7]] *= -1
    assert np.allclose(state.flip_deltas(), FieldState(model, spins).flip_deltas())


def small_budget(min_keep: float = 0.34) -> GlobalBudget:
    quadratic = np.zeros((3, 3))
    quadratic[0, 1], quadratic[1, 2], quadratic[2, 2] = 4.0, 3.0, 1.0
    return GlobalBudget(
        ["a", "b", "c"], [3, 4, 2], 5.0, [1.0, 2.0, 3.0], quadratic, 0.5, "params", min_keep
    )


def test_search_meets_the_budget_from_any_state_and_ends_in_a_budget_local_minimum():
    model = random_structured(9, 5)
    budget = small_budget()
    index = [np.arange(0, 3), np.arange(3, 7), np.arange(7, 9)]
    groups = GroupIndex(index, 9)
    feasible = [
        np.array(x)
        for x in itertools.product([0, 1], repeat=9)
        if budget.meets([sum(x[i] for i in idx) for idx in index])
    ]
    energies = model.energies(2.0 * np.array(feasible) - 1.0)
    for start in itertools.islice(itertools.product([-1.0, 1.0], repeat=9), 0, 512, 7):
        spins, done = meet_and_descend(model, np.array(start), index, budget)
        k = groups.counts(spins > 0)
        assert budget.meets(k)
        state = FieldState(model, spins)
        moves = budget_moves(state, groups, budget, k, candidates=9)
        assert not moves or moves[0][0] >= -state.tolerance  # no budget move improves it
        # no swap inside a group improves it either
        for idx in index:
            for i, j in itertools.product(idx, idx):
                if spins[i] > 0 > spins[j]:
                    swapped = spins.copy()
                    swapped[[i, j]] *= -1
                    assert (
                        model.energies(swapped[None, :])[0]
                        >= model.energies(spins[None, :])[0] - 1e-9
                    )
    # from the all-kept state the repair alone meets it
    state = FieldState(model, np.ones(9))
    k = repair(state, groups, budget, SearchCounts())
    assert budget.meets(k) and budget.meets(groups.counts(state.kept))
    assert energies.min() <= model.energies(state.spins[None, :])[0] + 1e-9


# ----- every solver against brute force on a tiny network -----------------------------------


def brute_force(problem: PruningProblem, model: nn.Module, inputs, keep: float, min_keep: float):
    """The lowest energy over every state whose really pruned model keeps at most ``keep``
    of the parameters and every group at least max(1, ceil(min_keep n)) units; the real
    parameter count of each count vector comes from surgery, not from the cost model."""
    dense = count_params(model)
    sizes = [g.size for g in problem.groups]
    floors = [max(1, int(np.ceil(min_keep * n - 1e-9))) for n in sizes]
    real = {}
    for counts in itertools.product(*(range(f, n + 1) for f, n in zip(floors, sizes))):
        masks = {g.name: np.arange(g.size) < c for g, c in zip(problem.groups, counts)}
        real[counts] = count_params(really_pruned(model, inputs, masks))
    states = np.array(list(itertools.product([0, 1], repeat=problem.num_variables)))
    counts = np.stack([states[:, problem._group_index()[g]].sum(1) for g in range(len(sizes))], 1)
    allowed = np.array([real.get(tuple(c), np.inf) <= keep * dense for c in counts])
    energies = problem.structured(budget=False).energies(2.0 * states[allowed] - 1.0)
    return float(energies.min()), real, dense


@pytest.mark.parametrize("energy", ["redundancy", "ipruning"])
@pytest.mark.parametrize("keep,min_keep", [(0.5, 0.1), (0.35, 0.3)])
def test_every_solver_meets_the_budget_and_cpsat_finds_the_brute_force_optimum(
    tiny, energy, keep, min_keep
):
    model, inputs = tiny
    problem = PruningProblem.from_model(
        model, inputs, energy=energy, keep=keep, budget="global", min_keep=min_keep
    )
    assert problem.num_variables == 11 and problem.keep_counts is None
    optimum, real, dense = brute_force(problem, model, inputs, keep, min_keep)
    floors = problem.global_budget.floors
    reached = {}
    for solver in list_solvers():
        solution = problem.solve(solver, **SEEDED.get(solver, {}))
        counts = tuple(solution.kept[g.name] for g in problem.groups)
        assert all(c >= f for c, f in zip(counts, floors)), solver
        assert real[counts] <= keep * dense, solver  # on the really pruned model
        pruned = really_pruned(model, inputs, solution.masks)
        assert count_params(pruned) == real[counts]
        assert solution.budget["met"] == pytest.approx(real[counts] / dense)
        assert solution.budget["asked"] == keep and solution.budget["mode"] == "global"
        assert solution.energy == pytest.approx(problem.energy(solution.masks))
        assert solution.energy >= optimum - 1e-9, solver
        reached[solver] = solution.energy
    assert reached["cpsat"] == pytest.approx(optimum, abs=1e-6)
    for solver in ("neal", "torch-sa", "tabu", "exact"):
        assert reached[solver] == pytest.approx(optimum, abs=1e-6), solver


def test_any_dimod_sampler_gets_the_lagrangian_and_the_repair(tiny):
    model, inputs = tiny
    problem = PruningProblem.from_model(model, inputs, keep=0.4, budget="global")
    solution = problem.solve(dimod.RandomSampler(), num_reads=3, seed=1)
    assert problem.global_budget.meets(solution.kept)
    assert solution.budget["method"] == "lagrangian" and solution.budget["multipliers"]


class SlowSampler(dimod.Sampler):
    """A dimod sampler whose every call takes ``seconds`` and records the time limit it
    was given (a stand-in for a solver whose model building is slow)."""

    properties: dict = {}
    parameters = {"time_limit": []}

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.limits: list[float] = []

    def sample(self, bqm, time_limit=None, **parameters):
        self.limits.append(time_limit)
        time.sleep(self.seconds)
        return dimod.SampleSet.from_samples_bqm({v: 1 for v in bqm.variables}, bqm)


def test_the_lagrangian_search_keeps_the_time_limit_with_slow_solves(tiny):
    """Each solve gets a share of the time left (what it spends building counts), and the
    search stops once the limit is spent: 0.25 s solves under a 0.6 s limit make three
    calls, not the six the search would make otherwise."""
    model, inputs = tiny
    problem = PruningProblem.from_model(model, inputs, keep=0.4, budget="global")
    sampler = SlowSampler(0.25)
    with timed() as run:
        solution = problem.solve(sampler, time_limit=0.6)
    # the limit and one 0.25 s solve past it (sleeps: load does not stretch them), then
    # repairing the state onto the budget (CPU work, ~0.05 s idle; stretched by the
    # measured slowdown, tests/timing.py)
    run.assert_within(0.6 + 0.25, 0.5, "Lagrangian search, time_limit=0.6")
    assert 1 <= len(sampler.limits) <= 3
    assert sampler.limits[0] == pytest.approx(0.6 / 6, rel=0.2)  # an equal share of 6
    assert sum(sampler.limits) <= 0.6
    assert problem.global_budget.meets(solution.kept)


# ----- a real network ---------------------------------------------------------------------------


@pytest.mark.slow
def test_resnet20_global_allocates_per_layer_and_solvers_differ(resnet):
    model, inputs = resnet
    problem = PruningProblem.from_model(model, inputs, keep=0.5, budget="global")
    dense = count_params(model)
    solutions = {
        "torch-sa": problem.solve("torch-sa", **SA),
        "cpsat": problem.solve("cpsat", time_limit=3, num_workers=1, seed=0),
    }
    for name, solution in solutions.items():
        fractions = {g.name: solution.kept[g.name] / g.size for g in problem.groups}
        assert max(fractions.values()) - min(fractions.values()) > 0.2, name  # not uniform
        assert count_params(really_pruned(model, inputs, solution.masks)) <= 0.5 * dense
        assert solution.budget["met"] <= 0.5 + 1e-12
        assert solution.budget["met"] > 0.45  # it spends what it may, nearly
    distance = sum(
        int((solutions["torch-sa"].masks[g] != solutions["cpsat"].masks[g]).sum())
        for g in solutions["cpsat"].masks
    )
    print(f"torch-sa and cpsat masks differ in {distance} of {problem.num_variables} units")
    # different routes; the masks may still agree: CP-SAT starts from the polished
    # all-kept state, often where torch-sa's polished state ends too
    assert solutions["cpsat"].budget["method"] == "count_budget"
    assert solutions["torch-sa"].budget["method"] == "lagrangian"


def test_uniform_budget_is_unchanged_and_reported(tiny):
    model, inputs = tiny
    problem = PruningProblem.from_model(model, inputs, keep=0.5)
    assert problem.budget_mode == "uniform" and problem.global_budget is None
    solution = problem.solve("cpsat")
    assert solution.kept == problem.keep_counts
    assert solution.budget == {
        "mode": "uniform",
        "by": "params",
        "asked": 0.5,
        "met": pytest.approx(problem.model_groups.kept_fraction(problem.keep_counts)),
    }


# ----- bad values -------------------------------------------------------------------------------


def test_bad_budget_values_are_clear_errors(tiny):
    model, inputs = tiny
    with pytest.raises(ValueError, match="budget must be one of uniform, global, got 'x'"):
        PruningProblem.from_model(model, inputs, keep=0.5, budget="x")
    for bad in (1.0, -0.1, 1.5, "a"):
        with pytest.raises(ValueError, match="min_keep must be a fraction in"):
            PruningProblem.from_model(model, inputs, keep=0.5, budget="global", min_keep=bad)
    with pytest.raises(ValueError, match="min_keep=0.9: the floors alone .* above keep=0.2"):
        PruningProblem.from_model(model, inputs, keep=0.2, budget="global", min_keep=0.9)
    with pytest.raises(ValueError, match="budget='global' needs keep"):
        PruningProblem.from_model(model, inputs, keep=None, budget="global")
    from ising_qubo.pruning.pipeline import RunConfig

    with pytest.raises(ValueError, match="--budget must be one of"):
        RunConfig(out="x", budget="x")
    with pytest.raises(ValueError, match="--min-keep must be a fraction"):
        RunConfig(out="x", min_keep=1.0)


# ----- pass-through -----------------------------------------------------------------------------


def test_prune_model_and_the_pruner_pass_the_budget_on(tiny):
    model, inputs = tiny
    dense = count_params(model)
    pruned = prune_model(model, inputs, keep=0.4, budget="global", min_keep=0.3, solver="cpsat")
    assert count_params(pruned) <= 0.4 * dense
    assert count_params(model) == dense  # a copy was pruned
    pruner = IsingPruner(
        copy.deepcopy(model), inputs, keep=0.4, budget="global", min_keep=0.3, solver="cpsat"
    )
    assert pruner.problem.global_budget is not None and pruner.problem.min_keep == 0.3
    solution = pruner.step()
    assert pruner.energy_history[-1]["budget_met"] == solution.budget["met"] <= 0.4
    pruner.prune()
    assert count_params(pruner.model) <= 0.4 * dense


def test_a_warm_resolve_starts_from_the_last_multiplier_and_keeps_its_state(tiny):
    model, inputs = tiny
    problem = PruningProblem.from_model(model, inputs, energy="ipruning", keep=0.5, budget="global")
    first = problem.solve("torch-sa", **SA)
    multiplier = problem._multiplier
    assert multiplier is not None and multiplier >= 0
    again = problem.solve("torch-sa", initial=first.masks, **SA)
    assert again.budget["multipliers"][0]["lambda"] == multiplier
    assert again.energy <= first.energy + 1e-9  # the warm start competes, polished
    assert problem.global_budget.meets(again.kept)


def test_save_writes_the_global_budget_into_the_manifest(tmp_path, tiny):
    model, inputs = tiny
    problem = PruningProblem.from_model(model, inputs, keep=0.5, budget="global")
    problem.save(tmp_path, format="coo")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    budget = manifest["budget"]
    assert budget["mode"] == "global" and budget["limit"] == pytest.approx(0.5 * budget["dense"])
    labels = [[v["label"] for v in g["variables"]] for g in manifest["groups"]]
    index = {label: i for i, label in enumerate(problem.labels)}
    parsed = CountBudget.parse(
        {k: budget[k] for k in ("constant", "linear", "pairs", "limit", "floors")}
        | {"groups": labels},
        index,
        "manifest",
    )
    counts = np.array([[2, 3, 1], [4, 4, 3]])
    assert np.allclose(parsed.cost(counts), problem.global_budget.cost(counts))
    uniform = PruningProblem.from_model(model, inputs, keep=0.5).manifest()
    assert uniform["budget"] == {"mode": "uniform"}


@pytest.mark.slow
def test_cli_prune_with_a_global_budget_reports_it(tmp_path, image_folder, capsys):
    out = tmp_path / "run"
    code = main(
        [
            *resnet20_prune_args(image_folder),
            "--epochs",
            "0",
            "--finetune-epochs",
            "0",
            "--batch-size",
            "16",
            "--out",
            str(out),
            "--no-progress",
            "--budget",
            "global",
            "--min-keep",
            "0.2",
            "--keep",
            "0.4",
            "--solver-param",
            "num_reads=2",
            "--solver-param",
            "num_sweeps=50",
        ]
    )
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["budget"] == "global" and report["config"]["min_keep"] == 0.2
    budget = report["budget"]
    assert budget["mode"] == "global" and budget["asked"] == 0.4
    assert budget["met"] == report["params"]["kept_fraction"] <= 0.4
    kept = report["pruning"]["kept"]
    fractions = [k / n for k, n in kept.values()]
    assert min(k / n for k, n in kept.values()) >= 0.2 - 1e-9
    assert max(fractions) - min(fractions) > 0.1  # the layers keep different fractions
    capsys.readouterr()


def test_cli_export_writes_a_global_budget(tmp_path):
    out = tmp_path / "qubos"
    code = main(
        ["export", "--model", "resnet20", "--out", str(out), "--keep", "0.4"]
        + ["--budget", "global", "--min-keep", "0.25", "--calibration-size", "2"]
    )
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    budget = manifest["budget"]
    assert budget["mode"] == "global" and budget["keep"] == 0.4 and budget["min_keep"] == 0.25
    sizes = [g["size"] for g in manifest["groups"]]
    assert budget["floors"] == [int(np.ceil(0.25 * n)) for n in sizes]
    assert all(g["keep_count"] is None for g in manifest["groups"])


def test_a_macs_budget_is_met_on_the_really_pruned_model(tiny):
    model, _ = tiny
    inputs = torch.randn(1, 3, 8, 8)
    problem = PruningProblem.from_model(model, inputs, keep=0.5, keep_by="macs", budget="global")
    solution = problem.solve("cpsat", num_workers=1)
    pruned = really_pruned(model, inputs, solution.masks)
    assert count_macs(pruned, inputs) <= 0.5 * count_macs(model, inputs)
    assert solution.budget["by"] == "macs"
    assert solution.budget["met"] == pytest.approx(
        count_macs(pruned, inputs) / count_macs(model, inputs)
    )


def test_cli_rejects_a_bad_budget(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["prune", "--out", "x", "--budget", "x"])
    assert exit_info.value.code == 2
    assert "--budget" in capsys.readouterr().err
    assert main(["export", "--out", "x", "--budget", "global", "--min-keep", "1.5"]) == 2
    assert "min_keep must be a fraction in [0, 1), got 1.5" in capsys.readouterr().err


def test_anneal_defaults_bound_the_work_of_one_solve_whatever_the_size():
    from ising_qubo.pruning import problem as module

    small = module.anneal_defaults(448, 31_000)  # CIFAR ResNet-20's whole network
    large = module.anneal_defaults(20_160, 12_400_000)  # ResNet-101's
    assert small["num_reads"] * small["num_sweeps"] > large["num_reads"] * large["num_sweeps"]
    for entries, chosen in ((31_000, small), (12_400_000, large)):
        reads, sweeps = chosen["num_reads"], chosen["num_sweeps"]
        assert module.ANNEAL_READS[0] <= reads <= module.ANNEAL_READS[1]
        assert module.ANNEAL_SWEEPS[0] <= sweeps <= module.ANNEAL_SWEEPS[1]
        # the work stays within ANNEAL_WORK unless the sweeps are at their floor
        if sweeps > module.ANNEAL_SWEEPS[0]:
            assert reads * sweeps * entries <= module.ANNEAL_WORK
            assert reads * (sweeps + 1) * entries > module.ANNEAL_WORK
    assert large == {"num_reads": 1, "num_sweeps": module.ANNEAL_SWEEPS[0]}
    # reads the caller gave are kept, and the sweeps follow from them
    assert module.anneal_defaults(448, 31_000, num_reads=2)["num_reads"] == 2


def test_global_solve_scales_reads_and_sweeps_unless_the_caller_sets_them(tiny, monkeypatch):
    from ising_qubo.pruning import problem as module

    model, inputs = tiny
    problem = PruningProblem.from_model(model, inputs, energy="ipruning", keep=0.5, budget="global")
    entries = module.sweep_entries(problem.structured(budget=False))
    # a work bound that makes this tiny network a "large" one: 2 reads x 3 sweeps
    monkeypatch.setattr(module, "ANNEAL_READ_SCALE", 2 * problem.num_variables)
    monkeypatch.setattr(module, "ANNEAL_SWEEPS", (1, 1000))
    monkeypatch.setattr(module, "ANNEAL_WORK", 6 * entries + 1)

    def per_solve(solution):
        return {(ss.info["num_sweeps"], len(ss)) for ss in solution.samplesets}

    solution = problem.solve("torch-sa", seed=0)
    assert per_solve(solution) == {(3, 2)}
    assert problem.global_budget.meets(solution.kept)
    problem._multiplier = None
    assert per_solve(problem.solve("torch-sa", seed=0, num_sweeps=7)) == {(7, 2)}
    problem._multiplier = None
    assert per_solve(problem.solve("torch-sa", seed=0, num_reads=3)) == {(2, 3)}
    problem._multiplier = None  # a time limit: the sampler's own defaults (10 x 1000)
    assert per_solve(problem.solve("torch-sa", seed=0, time_limit=60)) == {(1000, 10)}
