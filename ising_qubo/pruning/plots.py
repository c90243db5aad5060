"""Figures of a pruning run: kept channels per group, energy per solve, accuracy per epoch."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ising_qubo.io._atomic import atomic_write

# Figures are made with matplotlib's object interface (Figure, not pyplot): no global
# state, no backend switch in the caller's process (a notebook keeps its own backend), and
# nothing to close.


def plot_run(report: dict, directory: str | Path) -> list[Path]:
    """Write ``kept_channels.png``, ``energy.png`` and ``accuracy.png`` where the report
    has the data for them; returns the paths written."""
    directory = Path(directory)
    written = []
    pruning = report.get("pruning") or {}
    kept = pruning.get("kept")
    if kept:
        names = list(kept)
        fig = Figure(figsize=(max(6, 0.35 * len(names)), 4))
        ax = fig.subplots()
        ax.bar(range(len(names)), [kept[n][1] for n in names], color="#cccccc", label="before")
        ax.bar(range(len(names)), [kept[n][0] for n in names], color="#3366aa", label="kept")
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
        ax.set_ylabel("channels")
        ax.set_title("Kept channels per group")
        ax.legend()
        written.append(_save(fig, directory / "kept_channels.png"))
    energies = pruning.get("energy_history")
    if energies:
        fig = Figure(figsize=(6, 4))
        ax = fig.subplots()
        ax.plot(
            [row["iteration"] for row in energies],
            [row["energy"] for row in energies],
            marker="o",
            markersize=3,
        )
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # iterations are whole
        values = [float(row["energy"]) for row in energies]
        ax.set_ylim(*energy_axis_limits(values))
        ax.ticklabel_format(axis="y", useOffset=False, style="plain")
        ax.set_xlabel("training iteration")
        ax.set_ylabel("energy of the solved state")
        ax.set_title(f"Ising energy during Ising-dropout ({len(values)} solves)")
        written.append(_save(fig, directory / "energy.png"))
    history = report.get("history") or {}
    if history.get("test_top1"):
        fig = Figure(figsize=(6, 4))
        ax = fig.subplots()
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        x = range(1, len(history["test_top1"]) + 1)
        ax.plot(x, history["test_top1"], marker="o", label="test top-1")
        ax.plot(x, history["train_top1"], marker=".", label="train top-1")
        phases = history.get("phase", [])
        if "finetune" in phases:
            cut = phases.index("finetune") + 0.5
            ax.axvline(cut, color="grey", linestyle="--", label="pruned")
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy (%)")
        ax.set_title("Accuracy over epochs")
        ax.legend()
        written.append(_save(fig, directory / "accuracy.png"))
    return written


def energy_axis_limits(values: list[float]) -> tuple[float, float]:
    """The energy axis: the values with a margin, at least 1 % of their size wide.

    Energies of a few solves can agree to many digits; matplotlib would then zoom onto a
    sliver of the axis (two dots on a 0.08-wide axis labelled "+1.134e6"), which reads as
    a large change. On a scale of at least 1 % of the values, equal-looking energies look
    equal."""
    low, high = min(values), max(values)
    span = max(high - low, 0.01 * max(abs(low), abs(high)), 1e-9)
    middle = (low + high) / 2
    return middle - 0.6 * span, middle + 0.6 * span


def _save(fig: Figure, path: Path) -> Path:
    # atomically, so an interrupted run never leaves a truncated figure
    fig.tight_layout()
    with atomic_write(path, binary=True) as fp:
        fig.savefig(fp, format="png", dpi=110)
    return path
