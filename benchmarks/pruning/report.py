"""Tables and the accuracy-against-pruning figure of the pruning study (see study.py).

    python benchmarks/pruning/report.py DIR [DIR ...] [--out DIR] [--docs]
        # tables and figure again from the study.json of one or more study runs

study.json is read and written as :mod:`ising_qubo.io.jsonvalues` says: a non-finite
number is the string "inf", "-inf" or "nan" (older files may hold null or a NaN literal).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ising_qubo.io.jsonvalues import dumps, read_float  # noqa: E402

#: The measured numbers of a run in study.json (the others are names, counts and keys).
MEASURES = ("top1", "top5", "top1_dense", "latency_ratio", "selection_seconds", "run_seconds")

CAVEAT = (
    "CIFAR-10 here is the lossy JPEG copy of `../shared/data/` (quality 75; models "
    "trained on it score about 2-3 points lower than on the original files)."
)


def _stats(values):
    values = [v for v in values if v is not None]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _fmt(mean, spread, digits=2):
    return f"{mean:.{digits}f} ± {spread:.{digits}f}"


def _settings_text(settings: dict) -> str:
    return (
        f"produced by `python benchmarks/pruning/study.py` on {settings.get('date', '?')}, "
        f"{settings.get('machine', '?')} CPU, {settings.get('cpus', '?')} torch threads, "
        f"torch {settings.get('torch', '?')}. ResNet-20; {settings.get('train_subset')} "
        f"training images (class-stratified subset), {settings.get('test_subset')} test "
        f"images; the dense model is trained {settings.get('baseline_epochs')} epochs per "
        f"seed (SGD, lr 0.1, cosine) and shared by all methods; each method then gets "
        f"{settings.get('epochs')} epoch(s) of pre-pruning training (Ising-dropout for the "
        f"Ising variants) and {settings.get('finetune_epochs')} fine-tuning epoch(s) at lr "
        f"0.02, at the same parameter budget counted on the really pruned model. Seeds "
        f"{settings.get('seeds')}; mean ± standard deviation over seeds."
    )


def _measured(run: dict) -> dict:
    """The run with its measures as floats ("inf"/"nan" strings read back; null stays None)."""
    return run | {key: read_float(run[key]) for key in MEASURES if key in run}


def write_report(raw: dict, out: Path, docs: Path | None = None) -> Path:
    runs = [_measured(r) for r in raw["runs"]]
    lines = ["# Pruning study: Ising selection against simple criteria", ""]
    by_dataset = raw.get("settings_by_dataset") or {
        dataset: raw.get("settings", {}) for dataset in dict.fromkeys(r["dataset"] for r in runs)
    }
    for dataset, settings in by_dataset.items():
        lines += [f"**{dataset}**: " + _settings_text(settings), ""]
    lines += [CAVEAT, ""]
    settings = next(iter(by_dataset.values()), {})
    figure_rows = {}
    for dataset in dict.fromkeys(r["dataset"] for r in runs):
        settings = by_dataset.get(dataset, settings)
        rows = [r for r in runs if r["dataset"] == dataset]
        dense = [r for r in rows if r["method"] == "dense"]
        keep = settings.get("keep", 0.5)
        d1, d1s = _stats([r["top1"] for r in dense])
        d5, d5s = _stats([r["top5"] for r in dense])
        lines += [f"## {dataset}: {100 * (1 - keep):.0f}% of parameters removed", ""]
        lines += [
            f"Unpruned ResNet-20: top-1 {_fmt(d1, d1s)}%, top-5 {_fmt(d5, d5s)}% "
            f"({len(dense)} seeds), {dense[0]['params']:,} parameters, "
            f"{dense[0]['macs'] / 1e6:.1f} M MACs."
            if dense
            else "",
            "",
        ]
        lines += [
            "| method | top-1 (%) | top-1 drop | top-5 (%) | parameters kept | MACs kept "
            "| CPU latency vs dense | selection time (s) | seeds |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        methods = [m for m in dict.fromkeys(r["method"] for r in rows) if m != "dense"]
        for method in methods:
            at = [r for r in rows if r["method"] == method and r["keep"] == keep]
            if not at:
                continue
            t1, t1s = _stats([r["top1"] for r in at])
            t5, t5s = _stats([r["top5"] for r in at])
            drop, drop_s = _stats([r["top1_dense"] - r["top1"] for r in at])
            params = statistics.fmean(r["params"] / r["params_before"] for r in at)
            macs = statistics.fmean(r["macs"] / r["macs_before"] for r in at)
            latency = statistics.fmean(r["latency_ratio"] for r in at)
            selection = statistics.fmean(r["selection_seconds"] or 0.0 for r in at)
            lines.append(
                f"| {method} | {_fmt(t1, t1s)} | {_fmt(drop, drop_s)} | "
                f"{_fmt(t5, t5s)} | {100 * params:.1f}% | {100 * macs:.1f}% | "
                f"{latency:.2f} | {selection:.2f} | {len(at)} |"
            )
        lines.append("")
        sweep = {}
        for r in rows:
            if r["method"] == "dense":
                continue
            removed = 1 - r["params"] / r["params_before"]
            sweep.setdefault(r["method"], []).append((removed, r["top1"], r["keep"]))
        best = raw.get("best_ising", {}).get(dataset)
        lines += [
            f"Best Ising variant at this budget: **{best}**. Accuracy against "
            f"parameters removed (seed {settings.get('seeds', [0])[0]} for the other "
            f"budgets):",
            "",
            "| method | keep | parameters removed | top-1 (%) |",
            "|---|---|---|---|",
        ]
        for method in (best, "l1", "random"):
            for removed, top1, kept in sorted(sweep.get(method, []), key=lambda t: t[2]):
                lines.append(f"| {method} | {kept} | {100 * removed:.1f}% | {top1:.2f} |")
        lines.append("")
        figure_rows[dataset] = (sweep, best, d1)

    figure = out / "accuracy_vs_pruned.png"
    if figure_rows:
        fig, axes = plt.subplots(
            1, len(figure_rows), figsize=(6 * len(figure_rows), 4), squeeze=False
        )
        for ax, (dataset, (sweep, best, dense_top1)) in zip(axes[0], figure_rows.items()):
            for method in (best, "l1", "random"):
                points = sorted(sweep.get(method, []))
                if points:
                    ax.plot(
                        [100 * p[0] for p in points], [p[1] for p in points], "o-", label=method
                    )
            if dense_top1 == dense_top1:
                ax.axhline(dense_top1, color="grey", linestyle="--", label="unpruned (mean)")
            ax.set_xlabel("parameters removed (%)")
            ax.set_ylabel("top-1 (%)")
            ax.set_title(dataset)
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(figure, dpi=110)
        plt.close(fig)
        lines += ["![accuracy against parameters removed](figures/accuracy_vs_pruned.png)", ""]
    markdown = out / "results.md"
    markdown.write_text("\n".join(lines))
    if docs is not None:
        (docs / "figures").mkdir(parents=True, exist_ok=True)
        if figure.exists():
            shutil.copy(figure, docs / "figures" / "accuracy_vs_pruned.png")
        shutil.copy(markdown, docs / "results.md")
    return markdown


def merge(directories: list[Path]) -> dict:
    """One raw record from the study.json of several runs (e.g. one per dataset)."""
    merged: dict = {"runs": [], "best_ising": {}, "settings_by_dataset": {}}
    for directory in directories:
        raw = json.loads((directory / "study.json").read_text())
        merged["runs"] += raw["runs"]
        merged["best_ising"].update(raw.get("best_ising", {}))
        for dataset in dict.fromkeys(r["dataset"] for r in raw["runs"]):
            merged["settings_by_dataset"][dataset] = raw.get("settings_by_dataset", {}).get(
                dataset
            ) or raw.get("settings", {})
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, nargs="+", help="study output directories")
    parser.add_argument("--out", type=Path, help="where to write (default: the first)")
    parser.add_argument("--docs", action="store_true")
    args = parser.parse_args()
    raw = merge(args.results)
    out = args.out or args.results[0]
    out.mkdir(parents=True, exist_ok=True)
    (out / "study.json").write_text(dumps(raw, indent=1))
    docs = Path(__file__).resolve().parents[2] / "docs" if args.docs else None
    print(write_report(raw, out, docs))


if __name__ == "__main__":
    main()
