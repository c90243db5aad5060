"""The measured-latency budget (keep_by="latency"): the fit against a stubbed clock with known
answers, the cost it gives the whole-network budget recomputed layer by layer, the real
clock end to end (solve, budget met by the model, surgery), and the clear errors."""

from __future__ import annotations

import copy
import itertools
import json

import numpy as np
import pytest
import torch
from torch import nn

from ising_qubo.cli import main
from ising_qubo.pruning import latency
from ising_qubo.pruning.budget import GlobalBudget
from ising_qubo.pruning.groups import ModelGroups, uniform_keep_counts
from ising_qubo.pruning.latency import (
    Probe,
    latency_model,
    measured_latency_fraction,
)
from ising_qubo.pruning.problem import PruningProblem

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class LatencyNet(nn.Module):
    """Groups conv1 (8, with the depthwise conv tied to it), conv2 (6) and conv3 (4); the
    classifier sees conv3's 4 channels x 2 x 2 positions after a flatten."""

    def __init__(self, width: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8 * width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8 * width)
        self.depthwise = nn.Conv2d(8 * width, 8 * width, 3, padding=1, groups=8 * width)
        self.conv2, self.bn2 = (
            nn.Conv2d(8 * width, 6 * width, 3, padding=1),
            nn.BatchNorm2d(6 * width),
        )
        self.conv3 = nn.Conv2d(6 * width, 4 * width, 3, stride=2, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(4 * width * 2 * 2, 3)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.depthwise(x))
        x = torch.relu(self.bn2(self.conv2(x)))
        x = self.pool(torch.relu(self.conv3(x)))
        return self.fc(torch.flatten(x, 1))


# layer: (out channels, in channels, group shrinking the output, the input; -1: none)
LAYERS = {
    "conv1": (8, 3, 0, -1),
    "depthwise": (8, 8, 0, 0),  # one group on both sides: its kept in = kept out
    "conv2": (6, 8, 1, 0),
    "conv3": (4, 6, 2, 1),
    "fc": (3, 16, -1, 2),  # 4 inputs per channel of conv3
}
# the stub clock: t = t0 + a k_out + b k_in + c k_out k_in per layer (the depthwise conv is
# linear in its one count), and the whole model's latency
STUB = {
    "conv1": (3e-5, 2e-6, 5e-7, 1e-7),
    "depthwise": (1e-5, 4e-6, 0.0, 0.0),
    "conv2": (2e-5, 1e-6, 3e-6, 4e-7),
    "conv3": (5e-6, 6e-6, 2e-6, 8e-7),
    "fc": (2e-6, 1e-7, 3e-7, 5e-8),
}
WHOLE_MODEL_SECONDS = 1e-3
SIZES = (8, 6, 4)


def stub_seconds(name: str, kept_out: float, kept_in: float) -> float:
    t0, a, b, c = STUB[name]
    return t0 + a * kept_out + b * kept_in + c * kept_out * kept_in


def make_stub(asked: list[Probe], whole: float = WHOLE_MODEL_SECONDS):
    def timer(probe: Probe) -> float:
        asked.append(probe)
        if probe.name == "":
            return whole
        output = probe.run()  # the cut layer really runs, with the channels it claims
        assert output.shape[-1 if probe.name == "fc" else 1] == probe.kept_out
        return stub_seconds(probe.name, probe.kept_out, probe.kept_in)

    return timer


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return LatencyNet().eval(), torch.randn(1, 3, 4, 4)


def reference_cost(counts, whole: float = WHOLE_MODEL_SECONDS) -> float:
    """The stub's latency of the pruned network, layer by layer, plus the rest at dense."""

    def layer_seconds(name: str, counts) -> float:
        out, inp, g, h = LAYERS[name]
        kept_out = out * counts[g] / SIZES[g] if g >= 0 else out
        kept_in = inp * counts[h] / SIZES[h] if h >= 0 else inp
        return stub_seconds(name, kept_out, kept_in)

    rest = whole - sum(layer_seconds(name, SIZES) for name in LAYERS)
    return sum(layer_seconds(name, counts) for name in LAYERS) + max(rest, 0.0)


# ----- the fit against a known clock -----------------------------------------------------------


def test_the_fit_recovers_a_bilinear_clock_exactly_and_the_cost_has_its_structure(net):
    model, inputs = net
    groups = ModelGroups(model, inputs)
    assert [(g.name, g.size) for g in groups.groups] == [("conv1", 8), ("conv2", 6), ("conv3", 4)]
    asked: list[Probe] = []
    fitted = latency_model(groups, timer=make_stub(asked))
    layers = {layer.name: layer for layer in fitted.layers}
    assert set(layers) == set(LAYERS)
    for name in ("conv2", "conv3"):  # both sides shrunk: all four coefficients
        layer = layers[name]
        got = (layer.constant, layer.per_out, layer.per_in, layer.per_pair)
        assert got == pytest.approx(STUB[name], rel=1e-9, abs=1e-15), name
        assert not layer.clipped
    # one side shrunk: the other side's terms fold into the constant / the varied side
    t0, a, b, c = STUB["conv1"]
    assert layers["conv1"].constant == pytest.approx(t0 + b * 3)
    assert layers["conv1"].per_out == pytest.approx(a + c * 3)
    t0, a, b, c = STUB["fc"]
    assert layers["fc"].constant == pytest.approx(t0 + a * 3)
    assert layers["fc"].per_in == pytest.approx(b + c * 3)
    assert layers["depthwise"].per_out == pytest.approx(STUB["depthwise"][1])
    assert layers["depthwise"].in_group == -1  # linear in its group's count
    # probes: full and half of every shrunk side, the depthwise conv with in = out
    points = {(p.name, p.kept_out, p.kept_in) for p in asked}
    assert {(o, i) for n, o, i in points if n == "conv2"} == {(6, 8), (6, 4), (3, 8), (3, 4)}
    assert {(o, i) for n, o, i in points if n == "depthwise"} == {(8, 8), (4, 4)}
    assert {(o, i) for n, o, i in points if n == "fc"} == {(3, 16), (3, 8)}

    # the cost: b_gh only for the pairs a layer shrinks on both sides; everything >= 0
    assert np.all(fitted.linear >= 0) and fitted.constant >= 0
    assert np.flatnonzero(fitted.quadratic).tolist() == [1, 5]  # (0, 1) and (1, 2) of 3 x 3
    rest = WHOLE_MODEL_SECONDS - sum(layer.dense_seconds for layer in fitted.layers)
    assert fitted.remainder_seconds == pytest.approx(rest) and rest > 0
    budget = GlobalBudget(
        ["a", "b", "c"], SIZES, *fitted.terms(), keep=1.0, by="latency", min_keep=0.0
    )
    assert budget.dense == pytest.approx(WHOLE_MODEL_SECONDS)
    for counts in itertools.product(*(range(1, n + 1) for n in SIZES)):
        assert budget.cost(counts) == pytest.approx(reference_cost(counts), rel=1e-9)


def test_layers_no_group_shrinks_are_not_timed_and_fall_into_the_constant(net):
    model, inputs = net
    groups = ModelGroups(model, inputs, ignored_layers=["conv1", "fc"])
    assert [g.name for g in groups.groups] == ["conv2", "conv3"]
    asked: list[Probe] = []
    fitted = latency_model(groups, timer=make_stub(asked))
    assert {p.name for p in asked} == {"", "conv2", "conv3", "fc"}  # not conv1, depthwise
    timed = stub_seconds("conv2", 6, 8) + stub_seconds("conv3", 4, 6) + stub_seconds("fc", 3, 16)
    assert fitted.remainder_seconds == pytest.approx(WHOLE_MODEL_SECONDS - timed)
    # layers alone timed slower than the whole model: no negative rest
    slow = latency_model(groups, timer=make_stub([], whole=1e-5))
    assert slow.remainder_seconds == 0.0
    assert slow.constant == pytest.approx(sum(layer.constant for layer in slow.layers))


def test_a_negative_coefficient_gives_the_best_nonnegative_fit():
    scipy_optimize = pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(0)
    points = [(o, i) for o in (16, 8) for i in (32, 16)]
    matrix = np.array([[1.0, o, i, o * i] for o, i in points])
    negative = 0
    for _ in range(50):
        times = matrix @ np.array([-2e-5, 1e-6, 5e-7, 2e-7]) + rng.normal(0, 3e-6, 4)
        times = np.abs(times)
        fitted, exact = latency._nonnegative_fit(matrix, times)
        reference, residual = scipy_optimize.nnls(matrix, times)
        assert np.all(fitted >= 0)
        assert np.linalg.norm(matrix @ fitted - times) == pytest.approx(residual, abs=1e-12)
        negative += not exact
    assert negative > 0  # the case under test happened


def test_the_budgets_uniform_counts_are_the_counted_uniform_ones(net):
    model, inputs = net
    groups = ModelGroups(model, inputs)
    for keep in (0.3, 0.5, 0.8, 1.0):
        budget = GlobalBudget.from_groups(groups, keep, "params", min_keep=0.0)
        assert budget.uniform_counts() == uniform_keep_counts(groups, keep, "params")


# ----- the real clock ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def heavier():
    """Convs that cost more than the Python around them, so that pruning saves time."""
    torch.manual_seed(0)
    return LatencyNet(width=4).eval(), torch.randn(1, 3, 32, 32)


def test_a_latency_budget_is_measured_solved_met_and_cut(heavier):
    model, inputs = heavier
    problem = PruningProblem.from_model(
        model, inputs, keep=0.9, keep_by="latency", budget="global", min_keep=0.1
    )
    budget = problem.global_budget
    measured = budget.latency_model
    assert budget.by == "latency" and measured is not None and measured.repeats is not None
    assert measured.measured_seconds > 0 and measured.modelled_seconds > 0
    coefficients = np.concatenate([[budget.constant], budget.linear, budget.quadratic.ravel()])
    assert np.all(np.isfinite(coefficients)) and np.all(coefficients >= 0)
    assert budget.dense == pytest.approx(
        max(measured.measured_seconds, measured.modelled_seconds), rel=1e-9
    )
    assert problem.reference_counts == budget.uniform_counts()
    for solver, params in (("neal", {"seed": 0}), ("torch-sa", {"seed": 0, "num_reads": 4})):
        solution = problem.solve(solver, **params)
        assert budget.meets(solution.kept), solver
        assert solution.budget["by"] == "latency" and solution.budget["asked"] == 0.9
        assert solution.budget["met"] == pytest.approx(budget.fraction(solution.kept))
    pruned = copy.deepcopy(model)
    groups = ModelGroups(pruned, inputs)
    groups.prune(solution.masks)
    assert pruned(inputs).shape == (1, 3)
    widths = {name: pruned.get_submodule(name).out_channels for name in ("conv1", "conv2")}
    assert widths == {"conv1": solution.kept["conv1"], "conv2": solution.kept["conv2"]}


def test_measured_fraction_compares_the_right_models():
    torch.manual_seed(0)
    inputs = torch.randn(1, 32, 32, 32)
    big = nn.Sequential(nn.Conv2d(32, 64, 3, padding=1), nn.Conv2d(64, 64, 3, padding=1))
    small = nn.Sequential(nn.Conv2d(32, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1))
    big.train()
    # loose bounds: the machine may be busy; the FLOPs differ by a factor of about 30
    assert measured_latency_fraction(big, small, inputs, repeats=15) < 0.7
    assert measured_latency_fraction(small, big, inputs, repeats=15) > 1.4
    assert 0.5 < measured_latency_fraction(big, copy.deepcopy(big), inputs) < 2.0
    assert big.training  # modes given back


# ----- errors and the command line --------------------------------------------------------------


def test_latency_needs_the_global_budget_and_good_options(net):
    model, inputs = net
    with pytest.raises(ValueError, match="^keep_by='latency' needs budget='global'$"):
        PruningProblem.from_model(model, inputs, keep=0.5, keep_by="latency")
    groups = ModelGroups(model, inputs)
    with pytest.raises(ValueError, match="^keep_by='latency' needs budget='global'$"):
        uniform_keep_counts(groups, 0.5, "latency")  # the baselines' uniform budget
    with pytest.raises(ValueError, match="keep_by must be one of params, macs, latency"):
        GlobalBudget.from_groups(groups, 0.5, "seconds")
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="repeats must be a positive integer or None"):
            latency_model(groups, repeats=bad)
    with pytest.raises(ValueError, match="max_seconds must be positive"):
        latency_model(groups, max_seconds=0)
    with pytest.raises(ValueError, match="layer 'conv1': timings must be finite seconds >= 0"):
        latency_model(groups, timer=lambda probe: float("nan") if probe.name else 1.0)
    with pytest.raises(ValueError, match="the whole model: timings must be finite seconds"):
        latency_model(groups, timer=lambda probe: 1.0 if probe.name else -1.0)
    from ising_qubo.pruning.pipeline import RunConfig

    for method, budget in (("ising", "uniform"), ("l1", "global")):
        with pytest.raises(ValueError, match="--keep-by latency needs --method ising --budget"):
            RunConfig(out="x", keep_by="latency", method=method, budget=budget)
    RunConfig(out="x", keep_by="latency", budget="global")


def test_cli_export_takes_keep_by_latency(tmp_path, capsys):
    out = tmp_path / "qubos"
    base = ["export", "--model", "resnet20", "--out", str(out), "--keep", "0.9"]
    base += ["--calibration-size", "2", "--keep-by", "latency"]
    assert main(base) == 2
    assert "keep_by='latency' needs budget='global'" in capsys.readouterr().err
    assert main([*base, "--budget", "global", "--min-keep", "0.05"]) == 0
    budget = json.loads((out / "manifest.json").read_text())["budget"]
    assert budget["by"] == "latency" and budget["keep"] == 0.9
    assert budget["limit"] == pytest.approx(0.9 * budget["dense"]) and budget["dense"] > 0
    capsys.readouterr()


@pytest.mark.slow
def test_cli_prune_reports_the_predicted_and_the_measured_latency(tmp_path, image_folder):
    out = tmp_path / "run"
    arguments = ["prune", "--model", "resnet20", "--dataset", "imagefolder"]
    arguments += ["--data-dir", str(image_folder), "--epochs", "0", "--finetune-epochs", "0"]
    arguments += ["--batch-size", "16", "--out", str(out), "--no-progress", "--keep", "0.85"]
    arguments += ["--keep-by", "latency", "--budget", "global", "--min-keep", "0.1"]
    arguments += ["--solver-param", "num_reads=2", "--solver-param", "num_sweeps=50"]
    assert main(arguments) == 0
    report = json.loads((out / "report.json").read_text())
    budget = report["budget"]
    assert budget["by"] == "latency" and budget["asked"] == 0.85
    assert budget["predicted"] <= 0.85 + 1e-9  # the budget's model is met exactly
    assert 0 < budget["met"] < 2  # timed: noisy on a busy machine, but a real ratio
    assert budget["met"] != budget["predicted"]
    kept = report["pruning"]["kept"]
    assert any(k < n for k, n in kept.values())
