"""Figures of a pruning run: kept channels per group, energy per solve, accuracy per epoch."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402


def plot_run(report: dict, directory: str | Path) -> list[Path]:
    """Write ``kept_channels.png``, ``energy.png`` and ``accuracy.png`` where the report
    has the data for them; returns the paths written."""
    directory = Path(directory)
    written = []
    pruning = report.get("pruning") or {}
    kept = pruning.get("kept")
    if kept:
        names = list(kept)
        fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(names)), 4))
        ax.bar(range(len(names)), [kept[n][1] for n in names], color="#cccccc", label="before")
        ax.bar(range(len(names)), [kept[n][0] for n in names], color="#3366aa", label="kept")
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
        ax.set_ylabel("channels")
        ax.set_title("Kept channels per group")
        ax.legend()
        written.append(_save(fig, directory / "kept_channels.png"))
    energies = pruning.get("energy_history")
    if energies:
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([row["iteration"] for row in energies], [row["energy"] for row in energies],
                marker="o", markersize=3)
        ax.set_xlabel("training iteration")
        ax.set_ylabel("energy of the solved state")
        ax.set_title("Ising energy during Ising-dropout")
        written.append(_save(fig, directory / "energy.png"))
    history = report.get("history") or {}
    if history.get("test_top1"):
        fig, ax = plt.subplots(figsize=(6, 4))
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


def _save(fig, path: Path) -> Path:
    # write then rename, so an interrupted run never leaves a truncated figure
    partial = path.with_name(path.name + ".partial.png")
    fig.tight_layout()
    fig.savefig(partial, dpi=110)
    plt.close(fig)
    partial.replace(path)
    return path
