"""The pruning study's report: ``results.md`` and its figures from the finished runs.

Written by ``study.py report --out DIR [--docs]`` (see study.py) from whatever has
finished; a planned run without a result is listed as missing, never dropped silently.
Per dataset: the dense models, every method at the protocol's budget (mean ± sd over
seeds), paired per-seed differences of each Ising method against the best baseline by
mean with 95% t-intervals, the issue's goals marked met / missed / not measured with
their numbers, the accuracy-against-removed curve, the per-layer allocation of the global
methods, and a generated paragraph on what is and is not shown.

Figures use matplotlib's object interface (no pyplot state): ``figures/`` beside
``results.md``; ``--docs`` copies both into ``docs/``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from datetime import date
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from study_protocol import (
    BASELINES,
    GLOBAL_METHODS,
    ISING_METHODS,
    TP_GLOBAL_BASELINES,
    StudyRun,
    describe,
)
from study_stats import mean_sd, paired_interval, t_quantile

CAVEAT = (
    "CIFAR-10 here is the lossy JPEG copy of `../shared/data/` (quality 75; models trained "
    "on it are reported to score about 2-3 points lower than on the original files): "
    "compare methods with each other, and absolute accuracy with published numbers only "
    "with that in mind."
)
CURVE_FIGURE = "accuracy_vs_pruned.png"


def _fmt(mean: float, sd: float, digits: int = 2) -> str:
    return "–" if math.isnan(mean) else f"{mean:.{digits}f} ± {sd:.{digits}f}"


def _same_keep(a: float, b: float) -> bool:
    return abs(a - b) < 1e-9


class DatasetResults:
    """The finished results of one dataset, by method, budget and seed."""

    def __init__(self, label: str, results: list[dict[str, Any]]) -> None:
        self.label = label
        self.rows = [r for r in results if r["dataset"] == label]
        self.dense = {r["seed"]: r for r in self.rows if r["method"] == "dense"}

    def at(self, method: str, keep: float, seeds: list[int] | None = None) -> dict[int, dict]:
        return {
            r["seed"]: r
            for r in self.rows
            if r["method"] == method
            and _same_keep(r["keep"], keep)
            and (seeds is None or r["seed"] in seeds)
        }

    def top1(self, method: str, keep: float) -> dict[int, float]:
        return {seed: r["top1"] for seed, r in self.at(method, keep).items()}

    def mean_top1(self, method: str, keep: float) -> float:
        return mean_sd(list(self.top1(method, keep).values()))[0]

    def best_of(self, methods: tuple[str, ...], keep: float) -> str | None:
        """The method of ``methods`` with the highest mean top-1 (None if none ran)."""
        ran = [m for m in methods if self.at(m, keep)]
        return max(ran, key=lambda m: self.mean_top1(m, keep)) if ran else None


def seeds_needed(mean: float, sd: float, level: float = 0.95, most: int = 30) -> int | None:
    """The smallest number of paired seeds whose t-interval would exclude 0, if the mean
    and sd of the differences stayed what they are (None: more than ``most``)."""
    if sd == 0:
        return 2 if mean != 0 else None
    for n in range(2, most + 1):
        if t_quantile(n - 1, level) * sd / math.sqrt(n) < abs(mean):
            return n
    return None


def _interval_text(interval: dict[str, Any]) -> str:
    if interval["low"] is None:
        return f"n = {interval['n']}: no interval"
    return f"[{interval['low']:+.2f}, {interval['high']:+.2f}]"


def main_table(
    data: DatasetResults, protocol: dict[str, Any], keep: float
) -> tuple[list[str], list[str]]:
    """The rows of every method at ``keep``; the methods with no finished run."""
    seeds = protocol["seeds"]
    methods = list(dict.fromkeys([*protocol["methods"], *(r["method"] for r in data.rows)]))
    methods = [m for m in methods if m != "dense"]
    lines = [
        "| method | seeds | top-1 (%) | loss vs dense (points, paired) | top-5 (%) "
        "| top-1 right after surgery (%) | parameters left (exact) | budget met "
        "| MACs kept | CPU latency vs dense | selection (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    missing = []
    for method in methods:
        at = data.at(method, keep)
        lacking = [s for s in seeds if s not in at]
        if not at:
            if method in protocol["methods"]:
                missing.append(method)
                lines.append(f"| {method} | missing (seeds {lacking}) |" + " |" * 9)
            continue
        runs = list(at.values())
        seeds_text = f"{len(runs)}" + (f" (missing {lacking})" if lacking else "")
        params = sorted({r["params"] for r in runs})
        params_text = (
            f"{params[0]:,}" if len(params) == 1 else f"{params[0]:,}–{params[-1]:,}"
        ) + f" ({100 * mean_sd([r['params'] / r['params_dense'] for r in runs])[0]:.1f}%)"
        met = mean_sd([(r.get("budget") or {}).get("met") for r in runs])[0]
        macs = mean_sd([r["macs"] / r["macs_dense"] for r in runs])[0]
        latency = mean_sd([(latency_of(r) or {}).get("ratio") for r in runs])
        lines.append(
            f"| {method} | {seeds_text} | {_fmt(*mean_sd([r['top1'] for r in runs])[:2])} "
            f"| {_fmt(*mean_sd([r['dense_top1'] - r['top1'] for r in runs])[:2])} "
            f"| {_fmt(*mean_sd([r['top5'] for r in runs])[:2])} "
            f"| {_fmt(*mean_sd([r.get('top1_after_surgery') for r in runs])[:2])} "
            f"| {params_text} | {met:.4f} | {100 * macs:.1f}% "
            f"| {_fmt(*latency[:2])} "
            f"| {_fmt(*mean_sd([r.get('selection_seconds') for r in runs])[:2])} |"
        )
    return lines, missing


def latency_of(result: dict[str, Any]) -> dict[str, Any] | None:
    """The run's CPU latency figure: the quiet re-timing (``study.py latency``) when there
    is one, else the one taken when the run finished."""
    return result.get("latency_quiet") or result.get("latency")


def _load_at_start(latency: dict[str, Any]) -> list[float] | None:
    """The load average (1, 5, 15 min) before a latency figure was taken: before the whole
    pass for a quiet re-timing, else when the run's own timing began."""
    return latency.get("load_before_pass") or (latency.get("load_average") or [None])[0]


def paired_table(data: DatasetResults, protocol: dict[str, Any], keep: float) -> list[str]:
    best = data.best_of(BASELINES, keep)
    best_tp = data.best_of(TP_GLOBAL_BASELINES, keep)
    if best is None:
        return ["No baseline has finished at this budget: no paired difference yet.", ""]
    lines = [
        f"Best baseline by mean top-1 (chosen after the runs among {', '.join(BASELINES)}, "
        f"which favours the baseline): **{best}** ({data.mean_top1(best, keep):.2f}%); "
        f"best Torch-Pruning global baseline: **{best_tp}**.",
        "",
        "| Ising method − baseline | paired seeds | mean (points) | sd | 95% t-interval "
        "| excludes 0 |",
        "|---|---|---|---|---|---|",
    ]
    against = list(dict.fromkeys(b for b in (best, best_tp) if b is not None))
    for method in (m for m in ISING_METHODS if m in protocol["methods"]):
        for baseline in against:
            interval = paired_interval(data.top1(method, keep), data.top1(baseline, keep))
            if interval["n"] == 0:
                lines.append(f"| {method} − {baseline} | 0 | missing | | | |")
                continue
            sd = "" if interval["sd"] is None else f"{interval['sd']:.2f}"
            excludes = {None: "–", True: "yes", False: "no"}[interval["excludes_zero"]]
            lines.append(
                f"| {method} − {baseline} | {interval['n']} | {interval['mean']:+.2f} | {sd} "
                f"| {_interval_text(interval)} | {excludes} |"
            )
    return [*lines, ""]


def goals(data: DatasetResults, protocol: dict[str, Any], keep: float) -> list[str]:
    """The issue's goals for this dataset, each met / missed / not measured, with numbers."""
    primary = protocol["primary"]
    lines = []
    dense_min = protocol["goals"].get("dense_min_top1", {}).get(data.label)
    if dense_min is not None:
        mean, sd, n = mean_sd([r["top1"] for r in data.dense.values()])
        if n == 0:
            mark = "**not measured** (no dense model has finished)"
        else:
            verdict = "met" if mean >= dense_min else f"missed by {dense_min - mean:.2f} points"
            mark = f"**{verdict}**: {mean:.2f} ± {sd:.2f}% over {n} seed(s)"
        lines.append(f"- Dense ResNet-20 reaches at least {dense_min:.0f}% top-1: {mark}.")

    max_loss = protocol["goals"].get("max_loss", {}).get(data.label)
    primary_runs = data.at(primary, keep)
    if max_loss is not None:
        dense_top1 = {s: r["dense_top1"] for s, r in primary_runs.items()}
        loss = paired_interval(dense_top1, data.top1(primary, keep))
        if loss["n"] == 0:
            mark = f"**not measured** (no finished {primary} run)"
        else:
            mean = float(loss["mean"])
            verdict = "met" if mean <= max_loss else f"missed by {mean - max_loss:.2f} points"
            shown = ""
            if loss["high"] is not None:
                shown = (
                    "; the interval's upper end is within the goal too"
                    if loss["high"] <= max_loss
                    else "; the interval's upper end is not"
                )
            mark = (
                f"**{verdict}**: loss {mean:.2f} points (95% t-interval "
                f"{_interval_text(loss)}, n = {loss['n']}{shown})"
            )
            if mean > max_loss:
                mark += _suggestion(data, primary, keep)
        lines.append(
            f"- {primary} at {100 * (1 - keep):.0f}% of parameters removed loses at most "
            f"{max_loss} point(s) top-1 against its dense model: {mark}."
        )

    best_tp = data.best_of(TP_GLOBAL_BASELINES, keep)
    goal = f"- {primary} beats the best Torch-Pruning global baseline"
    if best_tp is None or not primary_runs:
        lines.append(f"{goal}: **not measured** (missing runs).")
    else:
        diff = paired_interval(data.top1(primary, keep), data.top1(best_tp, keep))
        if diff["low"] is None:
            lines.append(
                f"{goal} ({best_tp}): **not measured**: {diff['n']} paired seed(s), an "
                f"interval needs 2 (mean difference {float(diff['mean']):+.2f} points)."
            )
        else:
            mean, low = float(diff["mean"]), float(diff["low"])
            if low > 0:
                verdict = "met"
            elif mean > 0:
                needed = seeds_needed(mean, float(diff["sd"]))
                verdict = "missed: the interval includes 0" + (
                    f" (with this mean and sd about {needed} seeds would exclude it)"
                    if needed
                    else " (the mean is small against the spread)"
                )
            else:
                verdict = f"missed: {primary} is worse on average"
            lines.append(
                f"{goal} ({best_tp}) by a paired 95% interval excluding 0: **{verdict}**; "
                f"difference {mean:+.2f} points, interval {_interval_text(diff)}, "
                f"n = {diff['n']}."
            )
    return [*lines, ""]


def _suggestion(data: DatasetResults, primary: str, keep: float) -> str:
    """What the runs say about a missed loss goal: accuracy right after the surgery, where
    fine-tuning has not yet hidden the selection, against the other methods'."""
    after = {
        m: mean_sd([r.get("top1_after_surgery") for r in data.at(m, keep).values()])[0]
        for m in dict.fromkeys(r["method"] for r in data.rows)
        if m != "dense" and data.at(m, keep)
    }
    after = {m: v for m, v in after.items() if not math.isnan(v)}
    if primary not in after or len(after) < 2:
        return ""
    rank = sorted(after, key=after.__getitem__, reverse=True).index(primary) + 1
    return (
        f". Right after the surgery (before fine-tuning) {primary} has "
        f"{after[primary]:.2f}%, rank {rank} of {len(after)} methods, so "
        + (
            "the selection is competitive and the fine-tuning budget limits the recovery"
            if rank <= 2
            else "the selection itself loses more than the others"
        )
    )


def curve(
    data: DatasetResults, protocol: dict[str, Any]
) -> tuple[list[str], dict[str, list[tuple[float, float, float, int]]]]:
    """Accuracy against parameters removed for the curve methods, over the curve seeds
    only (every point the same seeds)."""
    seeds = protocol["curve"]["seeds"]
    keeps = sorted({protocol["keep"], *protocol["curve"]["keeps"]}, reverse=True)
    lines = [
        f"Accuracy against parameters removed, seeds {seeds} at every point:",
        "",
        "| method | removed (asked) | removed (met, mean) | top-1 (%) | seeds |",
        "|---|---|---|---|---|",
    ]
    points: dict[str, list[tuple[float, float, float, int]]] = {}
    for method in protocol["curve"]["methods"]:
        for keep in keeps:
            at = data.at(method, keep, seeds)
            if not at:
                lines.append(f"| {method} | {100 * (1 - keep):.0f}% | | missing | 0 |")
                continue
            removed = 1 - mean_sd([r["params"] / r["params_dense"] for r in at.values()])[0]
            mean, sd, n = mean_sd([r["top1"] for r in at.values()])
            points.setdefault(method, []).append((100 * (1 - keep), mean, sd, n))
            lines.append(
                f"| {method} | {100 * (1 - keep):.0f}% | {100 * removed:.1f}% "
                f"| {_fmt(mean, sd)} | {n} |"
            )
    return [*lines, ""], points


def curve_figure(curves: dict[str, tuple[dict[str, list], float]], path: Path) -> bool:
    """Write :func:`build_curve_figure` to ``path``; False (nothing written) without points."""
    fig = build_curve_figure(curves)
    if fig is None:
        return False
    fig.savefig(path, dpi=110)
    return True


def build_curve_figure(curves: dict[str, tuple[dict[str, list], float]]) -> Figure | None:
    """One panel per dataset: per method the mean top-1 over the curve seeds (line), a
    band of ± one sample standard deviation, and the number of seeds in the legend; the
    dense models' mean dashed. Only means are joined, never a single seed's runs.

    ``curves``: per dataset, the points of :func:`curve` (``(removed %, mean, sd, n)``
    per method and budget) and the dense mean top-1. None when no dataset has a point."""
    panels = {label: c for label, c in curves.items() if c[0]}
    if not panels:
        return None
    fig = Figure(figsize=(5.5 * len(panels), 4))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (label, (points, dense_top1)) in zip(axes, panels.items()):
        for method, rows in points.items():
            rows = sorted(rows)
            removed = [r[0] for r in rows]
            means = [r[1] for r in rows]
            sds = [r[2] for r in rows]
            (line,) = ax.plot(
                removed, means, marker="o", markersize=4, label=f"{method} ({_seeds_text(rows)})"
            )
            ax.fill_between(
                removed,
                [m - s for m, s in zip(means, sds, strict=True)],
                [m + s for m, s in zip(means, sds, strict=True)],
                color=line.get_color(),
                alpha=0.2,
                linewidth=0,
            )
        if not math.isnan(dense_top1):
            ax.axhline(dense_top1, color="grey", linestyle="--", label="dense (mean)")
        # ticks at the budgets measured, not at in-between values nobody ran
        ax.set_xticks(sorted({r[0] for rows in points.values() for r in rows}))
        ax.set_xlabel("parameters removed (%, asked)")
        ax.set_ylabel("top-1 (%): mean, band ± sd over seeds")
        ax.set_title(label)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _seeds_text(rows: list[tuple[float, float, float, int]]) -> str:
    """``n=3 seeds``, or ``n=2-3 seeds`` when some point has fewer."""
    counts = sorted({r[3] for r in rows})
    n = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return f"n={n} seed{'' if counts == [1] else 's'}"


def allocation_figure(
    data: DatasetResults, protocol: dict[str, Any], keep: float, path: Path
) -> list[str]:
    """Kept fraction per group of each global method (mean over seeds), with the uniform
    l1 allocation for reference; returns the methods drawn."""
    drawn = {}
    for method in (*GLOBAL_METHODS, "l1"):
        runs = [r for r in data.at(method, keep).values() if r.get("kept_by_group")]
        if not runs:
            continue
        groups = list(runs[0]["kept_by_group"])
        drawn[method] = (
            groups,
            [
                mean_sd([r["kept_by_group"][g][0] / r["kept_by_group"][g][1] for r in runs])[0]
                for g in groups
            ],
            len(runs),
        )
    if not any(m in drawn for m in GLOBAL_METHODS):
        return []
    fig = Figure(figsize=(9, 4))
    ax = fig.subplots()
    for method, (groups, fractions, n) in drawn.items():
        style = "--" if method == "l1" else "-"
        label = f"{method} (uniform)" if method == "l1" else method
        ax.plot(range(len(groups)), fractions, style, marker="o", label=f"{label}, n={n}")
    groups = next(iter(drawn.values()))[0]
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("fraction of the group's units kept")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"{data.label}: per-layer allocation at {100 * (1 - keep):.0f}% removed")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return list(drawn)


def shown_paragraph(
    data: DatasetResults,
    protocol: dict[str, Any],
    keep: float,
    planned: int,
    finished: int,
    missing_methods: list[str],
    solvers: dict[str, Any] | None = None,
) -> str:
    """What the numbers of this dataset do and do not show, in plain words (``solvers``:
    the record of ``study.py solvers``, if it ran)."""
    counts = [len(data.at(m, keep)) for m in protocol["methods"]]
    best = data.best_of(BASELINES, keep)
    parts = [
        f"{finished} of {planned} planned runs of {data.label} have finished; at "
        f"{100 * (1 - keep):.0f}% removed each method has {min(counts, default=0)}–"
        f"{max(counts, default=0)} seed(s)."
    ]
    if missing_methods:
        parts.append(f"Not run at all yet: {', '.join(missing_methods)}.")
    if best is not None:
        widths, shown, not_shown = [], [], []
        for method in (m for m in ISING_METHODS if m in protocol["methods"]):
            interval = paired_interval(data.top1(method, keep), data.top1(best, keep))
            if interval["half_width"] is None:
                not_shown.append(f"{method} (fewer than 2 paired seeds)")
                continue
            widths.append(float(interval["half_width"]))
            sign = "better" if float(interval["mean"]) > 0 else "worse"
            if interval["excludes_zero"]:
                shown.append(f"{method} is {sign} than {best}")
            else:
                not_shown.append(f"{method} against {best} (interval includes 0)")
        if widths:
            parts.append(
                f"The paired 95% intervals against {best} are ±{min(widths):.2f} to "
                f"±{max(widths):.2f} points wide, so a smaller difference cannot be told apart."
            )
        if shown:
            parts.append(f"Shown: {'; '.join(shown)}.")
        if not_shown:
            parts.append(f"Not shown: {'; '.join(not_shown)}.")
    # the 1-minute load average when each latency measurement started, per source (for a
    # quiet re-timing, before its pass began: its own threads raise the load during it)
    for quiet, where in (
        (True, "re-timed after the runs by `study.py latency`"),
        (False, "timed in the run's process when it finished"),
    ):
        timed = [r for r in data.rows if latency_of(r) and ("latency_quiet" in r) == quiet]
        loads = [load[0] for r in timed if (load := _load_at_start(latency_of(r)))]
        if not loads:
            continue
        parts.append(
            f"CPU latency of {len(timed)} run(s) was {where}, interleaved (dense, pruned, "
            f"...), at a 1-minute load average of {min(loads):.2f}–{max(loads):.2f}"
            + (
                "; above about 0.5 per core the machine was not quiet and the ratios are rough."
                if max(loads) > 0.5 * (os.cpu_count() or 1)
                else "."
            )
        )
    parts.append(solvers_sentence(data.label, protocol, solvers))
    parts.append(
        f"The test set is also evaluated after every epoch (in each "
        f"run's pipeline/report.json) but nothing was chosen by it; {protocol['primary']} "
        f"was fixed as the headline Ising row before any run."
    )
    return " ".join(parts)


def solvers_sentence(label: str, protocol: dict[str, Any], solvers: dict[str, Any] | None) -> str:
    """Whether other solvers select other units on this dataset's Ising problems (the
    issue asks for solver rows only where they do), from ``study.py solvers``."""
    first = protocol["selection"]["solver"]
    cases = {k: c for k, c in (solvers or {}).get("cases", {}).items() if k.startswith(label + "/")}
    if not cases:
        return (
            f"Every Ising row is solved by {first} (defaults); whether other solvers select "
            f"other units was not measured on this dataset (`study.py solvers`)."
        )
    others = [name for name in solvers["solvers"] if name != first]  # type: ignore[index]
    differ = {
        key: max(case[name]["differ"] for name in others if name in case)
        for key, case in cases.items()
    }
    units = max(case["units"] for case in cases.values())
    reproduced = sum(case.get("reproduces_run") is True for case in cases.values())
    text = (
        f"Every Ising row is solved by {first} (defaults). The same {len(cases)} problems "
        f"(each method and seed at {protocol['keep']:.0%} kept; {reproduced} of them rebuilt "
        f"to the very masks of their run) solved by {', '.join(others)} with their defaults "
        f"(`study.py solvers`): "
    )
    if not any(differ.values()):
        return text + (
            f"the same masks everywhere (0 of {units} units differ), so the tables have no "
            f"solver rows and nothing here compares solvers."
        )
    worst = max(differ, key=lambda k: differ[k])
    return text + (
        f"other masks on {sum(v > 0 for v in differ.values())} of {len(cases)} problems, "
        f"at most {differ[worst]} of {units} units ({worst.split('/', 1)[1]}); the study's "
        f"rows use {first}'s."
    )


def write_report(
    out: Path,
    protocol: dict[str, Any],
    runs: list[StudyRun],
    results: dict[str, dict[str, Any]],
    states: dict[str, str],
    threads: dict[str, Any] | None,
    docs: Path | None = None,
) -> Path:
    """Write ``out/results.md`` and ``out/figures/``; with ``docs``, copy them there."""
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    solvers_path = out / "solvers.json"  # study_solvers.SOLVERS_FILE
    solvers = json.loads(solvers_path.read_text()) if solvers_path.exists() else None
    finished = list(results.values())
    keep = protocol["keep"]
    lines = [
        "# Pruning study (issue 14): Ising selection against Torch-Pruning and simple criteria",
        "",
    ]
    machines = sorted({r.get("machine", "?") for r in finished})
    versions = sorted({r.get("torch", "?") for r in finished})
    devices = sorted({str(r.get("device", "?")) for r in finished})
    failed = [key for key, state in states.items() if state == "failed"]
    lines += [
        f"Generated by `python benchmarks/pruning/study.py report` on {date.today()} from "
        f"{len(finished)} finished run(s) of {len(runs)} planned"
        + (f" ({len(failed)} failed)" if failed else "")
        + f". Machine(s): {', '.join(machines) or '?'}; torch {', '.join(versions) or '?'}; "
        f"device(s) {', '.join(devices) or '?'}.",
        "",
    ]
    if threads:
        lines += [
            f"Torch threads: {threads['chosen']}, the faster in a measurement of training "
            f"steps (batch {threads['batch']}) at the study's start: "
            + ", ".join(
                f"{k} thread(s) {v:.3f} s/step" for k, v in threads["seconds_per_step"].items()
            )
            + f" (load average {threads['load_average'][0]}).",
            "",
        ]
    if "cifar10-jpeg" in protocol["datasets"]:
        lines += [CAVEAT, ""]
    curves: dict[str, tuple[dict[str, list], float]] = {}
    paragraphs: list[str] = []
    for label in protocol["datasets"]:
        data = DatasetResults(label, finished)
        planned = [r for r in runs if r.dataset == label]
        lines += [f"## {label}", "", f"**Protocol.** {describe(protocol, label)}", ""]
        if not data.rows:
            lines += ["No run of this dataset has finished yet.", ""]
            paragraphs.append(f"**{label}**: nothing is shown yet (no finished run).")
            continue
        dense_mean, dense_sd, dense_n = mean_sd([r["top1"] for r in data.dense.values()])
        any_dense = next(iter(data.dense.values()), None)
        if any_dense is not None:
            lines += [
                f"Dense ResNet-20: top-1 {_fmt(dense_mean, dense_sd)}%, top-5 "
                f"{_fmt(*mean_sd([r['top5'] for r in data.dense.values()])[:2])}% over "
                f"{dense_n} seed(s) {sorted(data.dense)}; {any_dense['params']:,} parameters, "
                f"{any_dense['macs'] / 1e6:.1f} M MACs; validation top-1 "
                f"{_fmt(*mean_sd([r.get('val_top1') for r in data.dense.values()])[:2])}%.",
                "",
            ]
        lines += [f"### {100 * (1 - keep):.0f}% of parameters removed", ""]
        table, missing_methods = main_table(data, protocol, keep)
        lines += [
            *table,
            "",
            "Loss vs dense: the dense model's top-1 minus the pruned one's, same seed. "
            "Budget met: parameters after the surgery over before, on the really pruned "
            "model. CPU latency: median forward time (batch "
            f"{protocol['latency']['batch']}) of the pruned model over the dense one, "
            "interleaved. Selection: energy + solve (Ising) or scoring (baselines), seconds.",
            "",
            "### Paired differences (same seed)",
            "",
            *paired_table(data, protocol, keep),
            "### Goals",
            "",
            *goals(data, protocol, keep),
        ]
        curve_lines, points = curve(data, protocol)
        curves[label] = (points, dense_mean)
        lines += ["### Accuracy against parameters removed", "", *curve_lines]
        allocation = figures / f"allocation_{label}.png"
        drawn = allocation_figure(data, protocol, keep, allocation)
        if drawn:
            lines += [
                "### Per-layer allocation",
                "",
                f"Fraction of each group's units kept by {', '.join(drawn)} (mean over seeds).",
                "",
                f"![per-layer allocation, {label}](figures/{allocation.name})",
                "",
            ]
        lacking = [r for r in planned if states.get(r.key) != "done"]
        if lacking:
            lines += [
                "### Missing runs",
                "",
                ", ".join(f"{r.name} ({states.get(r.key, 'todo')})" for r in lacking),
                "",
            ]
        finished_here = sum(1 for r in planned if r.key in results)
        paragraphs.append(
            f"**{label}**: "
            + shown_paragraph(
                data, protocol, keep, len(planned), finished_here, missing_methods, solvers
            )
        )
    if curve_figure(curves, figures / CURVE_FIGURE):
        lines += [
            "## Accuracy against parameters removed",
            "",
            f"![accuracy against parameters removed](figures/{CURVE_FIGURE})",
            "",
            "Mean top-1 over the curve seeds (line) with a band of ± one sample standard "
            "deviation (none for a single seed; n in the legend); dashed: the dense models' "
            "mean.",
            "",
        ]
    lines += ["## What is and is not shown", "", *(p + "\n" for p in paragraphs)]
    markdown = out / "results.md"
    markdown.write_text("\n".join(lines))
    if docs is not None:
        (docs / "figures").mkdir(parents=True, exist_ok=True)
        for figure in figures.glob("*.png"):
            shutil.copy(figure, docs / "figures" / figure.name)
        shutil.copy(markdown, docs / "results.md")
    return markdown


__all__ = ["build_curve_figure", "curve_figure", "seeds_needed", "write_report"]
