"""Figures of a pruning run, from the report of a small fake run."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ising_qubo.pruning.plots import energy_axis_limits, plot_run

FIGURES = ("kept_channels.png", "energy.png", "accuracy.png")


def fake_report() -> dict:
    """What a run's report.json holds for the plots: three groups, four solves, four epochs
    (two before pruning, two of fine-tuning)."""
    return {
        "pruning": {
            "kept": {"conv1": [8, 16], "layer1.0.conv1": [5, 16], "layer2.0.conv1": [20, 32]},
            "energy_history": [{"iteration": i, "energy": -10.0 - 3 * i} for i in (0, 2, 4, 6)],
        },
        "history": {
            "phase": ["train", "train", "finetune", "finetune"],
            "test_top1": [30.0, 45.0, 41.0, 52.0],
            "train_top1": [35.0, 50.0, 44.0, 58.0],
        },
    }


def assert_real_figure(path) -> None:
    """A PNG that decodes to a picture with drawn content, not a blank canvas."""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    height, width, _ = pixels.shape
    assert width >= 300 and height >= 200, (path, pixels.shape)
    inked = np.any(pixels < 200, axis=2).mean()  # axes, ticks, labels, bars, lines
    assert 0.01 < inked < 0.9, (path, inked)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20, path


def test_a_fake_run_gets_its_three_figures(tmp_path):
    written = plot_run(fake_report(), tmp_path)
    assert [p.name for p in written] == list(FIGURES)
    for path in written:
        assert path.parent == tmp_path
        assert_real_figure(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FIGURES), "no partial files"


def test_kept_channels_figure_shows_the_kept_bars(tmp_path):
    """The kept bars are drawn in their own colour, and more kept means more of it."""
    report = fake_report()
    for folder in ("many", "few"):
        (tmp_path / folder).mkdir()
    plot_run(report, tmp_path / "many")
    report["pruning"]["kept"] = {k: [1, n] for k, (_, n) in report["pruning"]["kept"].items()}
    plot_run(report, tmp_path / "few")

    def kept_colour_share(folder):
        with Image.open(folder / "kept_channels.png") as image:
            pixels = np.asarray(image.convert("RGB")).astype(int)
        return np.all(np.abs(pixels - [0x33, 0x66, 0xAA]) < 8, axis=2).mean()

    assert kept_colour_share(tmp_path / "many") > 2 * kept_colour_share(tmp_path / "few") > 0


def reversed_data(report: dict) -> dict:
    """The same values in reverse order: same ranges, so the same axes and ticks; only what
    is drawn from the data can tell the two figures apart."""
    pruning, history = report["pruning"], report["history"]
    names = list(pruning["kept"])
    energies = [row["energy"] for row in pruning["energy_history"]]
    return {
        "pruning": {
            "kept": dict(zip(names, [pruning["kept"][n] for n in reversed(names)])),
            "energy_history": [
                dict(row, energy=e) for row, e in zip(pruning["energy_history"], reversed(energies))
            ],
        },
        "history": dict(
            history, test_top1=history["test_top1"][::-1], train_top1=history["train_top1"][::-1]
        ),
    }


@pytest.mark.parametrize("name", FIGURES)
def test_each_figure_draws_its_data(tmp_path, name):
    for folder, report in (("forward", fake_report()), ("reversed", reversed_data(fake_report()))):
        (tmp_path / folder).mkdir()
        plot_run(report, tmp_path / folder)
    with (
        Image.open(tmp_path / "forward" / name) as one,
        Image.open(tmp_path / "reversed" / name) as other,
    ):
        forward, backward = np.asarray(one.convert("RGB")), np.asarray(other.convert("RGB"))
    assert forward.shape == backward.shape
    assert np.any(forward != backward), f"{name} does not change with its data"


def test_only_figures_with_data_are_written(tmp_path):
    report = fake_report()
    del report["pruning"]
    written = plot_run(report, tmp_path)
    assert [p.name for p in written] == ["accuracy.png"]
    assert [p.name for p in tmp_path.iterdir()] == ["accuracy.png"]
    assert plot_run({}, tmp_path / "nothing") == []
    assert not (tmp_path / "nothing").exists()


def test_an_existing_figure_is_replaced(tmp_path):
    (tmp_path / "energy.png").write_bytes(b"old")
    plot_run(fake_report(), tmp_path)
    assert_real_figure(tmp_path / "energy.png")


_KEEP_BACKEND = """
import json, sys
import matplotlib
matplotlib.use("svg")  # what the calling program chose: anything but Agg
import ising_qubo.pruning.plots as plots
after_import = matplotlib.get_backend()
plots.plot_run(json.loads(sys.argv[1]), sys.argv[2])
print(json.dumps([after_import, matplotlib.get_backend()]))
"""


def test_plots_leave_the_callers_matplotlib_backend_alone(tmp_path):
    """In a fresh interpreter, so that the caller's choice comes before the first import."""
    result = subprocess.run(
        [sys.executable, "-c", _KEEP_BACKEND, json.dumps(fake_report()), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["svg", "svg"]
    assert (tmp_path / "energy.png").exists()


def test_energy_axis_is_at_least_one_percent_of_the_energies_wide():
    """Two solves 0.08 apart at -1.13e6 are shown on a scale of about 11,000, not 0.08."""
    low, high = energy_axis_limits([-1134168.68, -1134168.60])
    assert high - low == pytest.approx(1.2 * 0.01 * 1134168.68)
    assert low < -1134168.68 and high > -1134168.60
    low, high = energy_axis_limits([-100.0, -10.0])  # a real spread keeps its own scale
    assert (low, high) == pytest.approx((-100.0 - 0.1 * 90, -10.0 + 0.1 * 90))
    low, high = energy_axis_limits([0.0, 0.0])  # all zero: still a valid axis
    assert low < 0.0 < high
