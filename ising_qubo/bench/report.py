"""What a benchmark writes: ``results.json``, ``table.md`` and ``trajectories.png``, and
:class:`BenchmarkResult`, the record :func:`~ising_qubo.bench.runner.run_benchmark` returns,
which can summarise, print and write itself. The summary across instances
(``summary.csv``, ``summary.tex``, ``profile.png``) comes from
:mod:`ising_qubo.bench.summary`, which reads the same data as ``results.json``.

``results.json`` follows :mod:`ising_qubo.io.jsonvalues`: numbers are plain JSON, a
non-finite one is the string ``"inf"``, ``"-inf"`` or ``"nan"``; a target a run never
reached is ``null`` (and so is every value that does not exist, e.g. a median time when
fewer than half the seeds reached the target).

Statistics per (instance, solver) use the runs that finished without error. The median
time to a target counts a seed that never reached it as infinitely slow, so a median time
exists only when at least half the seeds got there ("—" otherwise); "ok" is how many did.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from ising_qubo.bench.record import BenchmarkRecord, fraction_key
from ising_qubo.bench.summary import write_summary
from ising_qubo.io import jsonvalues
from ising_qubo.io._atomic import atomic_write

RESULTS_VERSION = 1
MAX_PLOTTED_INSTANCES = 12


@dataclass
class BenchmarkResult(BenchmarkRecord):
    """A benchmark's record with its outputs: :meth:`summary`, :meth:`to_dict`,
    :meth:`table_markdown` and :meth:`write` (``results.json``, ``table.md``, the plot).

    The outputs live here, not on the record, so that the record module (which the runner
    fills) never imports the report."""

    def summary(self) -> list[dict[str, Any]]:
        return summarize(self)

    def to_dict(self) -> dict[str, Any]:
        return result_to_dict(self)

    def table_markdown(self) -> str:
        return table_markdown(self)

    def write(
        self, out_dir: str | Path | None = None, table: bool = True, plot: bool = False
    ) -> Path:
        """Write the outputs to ``out_dir``, by default the folder the benchmark wrote to."""
        target = out_dir or self.out_dir
        if target is None:  # a result built by hand, not by run_benchmark
            raise ValueError("BenchmarkResult.write: no out_dir given and the result has none")
        return write_outputs(self, Path(target), table=table, plot=plot)


def machine_info() -> dict[str, Any]:
    """Platform, CPU, library versions, CUDA device (or none) and the date; torch's
    threads and CUDA device only when a solver of the run has imported torch."""
    info: dict[str, Any] = {
        "date": datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
    }
    if hasattr(os, "sched_getaffinity"):
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    for package in ("ising-qubo", "numpy", "dimod", "dwave-samplers", "ortools", "torch"):
        try:
            info[f"{package}_version"] = metadata.version(package)
        except metadata.PackageNotFoundError:
            info[f"{package}_version"] = None
    if "torch" not in sys.modules:
        # No solver of this run loaded torch (the warm-up has run by now): importing it
        # only to describe the machine cost seconds and hundreds of MB in every bench
        # process, the memory benchmark's included. The CUDA device is then not probed.
        info["cuda_device"] = None
        info["cuda_probed"] = False
        return info
    try:
        import torch

        info["torch_version"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["cuda_device"] = torch.cuda.get_device_name(0)
            info["cuda_version"] = torch.version.cuda
        else:
            info["cuda_device"] = None
    except Exception as exc:  # torch missing or broken: still benchmark the rest
        info["torch_version"] = None
        info["cuda_device"] = None
        info["torch_error"] = f"{type(exc).__name__}: {exc}"
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fp:
            for line in fp:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    value = statistics.median(values)
    return value if math.isfinite(value) else None


def summarize(result: BenchmarkRecord) -> list[dict[str, Any]]:
    """One entry per (instance, solver): medians, extremes, gaps, times to targets, ratios."""
    rows = []
    neal_in_run = any(p.name == "neal" for p in result.solvers)
    for instance in result.instances:
        reference, source = result.reference(instance)
        per_solver: dict[str, dict[str, Any]] = {}
        for plan in result.solvers:
            runs = [r for r in result.runs if r.instance == instance.name and r.solver == plan.name]
            good = [r for r in runs if r.ok]
            # every good run has a best objective (RunResult.ok)
            values = [r.best_objective for r in good if r.best_objective is not None]
            median = _median(values)
            row: dict[str, Any] = {
                "instance": instance.name,
                "solver": plan.name,
                "runs": len(good),
                "errors": sum(1 for r in runs if r.error is not None),
                "unfinished": sum(1 for r in runs if not r.complete),
                "first_error": next((r.error for r in runs if r.error), None),
                "median_objective": median,
                "min_objective": min(values) if values else None,
                "max_objective": max(values) if values else None,
                "reference": reference,
                "reference_source": source,
                "gap_percent": _gap(median, reference, instance.sense),
                "median_rounds": _median([float(r.rounds) for r in good]),
                "max_energy_mismatch": max((r.energy_mismatch for r in runs), default=0.0),
                "beats_best_known": bool(
                    instance.best_known is not None
                    and values
                    and any(instance.better(v, instance.best_known) for v in values)
                ),
                "targets": {},
            }
            for fraction in result.targets:
                key = fraction_key(fraction)
                times = [result.run_times(r)[key] for r in good]
                reached = [t for t in times if t is not None]
                row["targets"][key] = {
                    "median_time": _median([math.inf if t is None else t for t in times]),
                    "successes": len(reached),
                    "ratio_to_neal": None,
                }
            per_solver[plan.name] = row
            rows.append(row)
        if neal_in_run:
            neal = per_solver["neal"]
            for row in per_solver.values():
                for key, entry in row["targets"].items():
                    base = neal["targets"][key]["median_time"]
                    mine = entry["median_time"]
                    if base is not None and mine is not None and base > 0:
                        entry["ratio_to_neal"] = mine / base
    return rows


def _gap(value: float | None, reference: float | None, sense: str) -> float | None:
    """How far ``value`` is behind ``reference``, in percent of |reference| (>= 0 is behind)."""
    if value is None or reference is None or reference == 0:
        return None
    behind = reference - value if sense == "max" else value - reference
    return 100.0 * behind / abs(reference)


def result_to_dict(result: BenchmarkRecord) -> dict[str, Any]:
    """The whole benchmark as JSON-ready data (``results.json``)."""
    instances = []
    for inst in result.instances:
        reference, source = result.reference(inst)
        instances.append(
            {
                "name": inst.name,
                "source": inst.source,
                "num_variables": inst.bqm.num_variables,
                "num_interactions": inst.bqm.num_interactions,
                "vartype": inst.bqm.vartype.name,
                "variables": _plain_labels(inst.bqm.variables),
                "objective": inst.objective_name,
                "sense": inst.sense,
                "best_known": inst.best_known,
                "reference": reference,
                "reference_source": source,
            }
        )
    runs = []
    for run in result.runs:
        runs.append(
            {
                "instance": run.instance,
                "solver": run.solver,
                "seed": run.seed,
                "complete": run.complete,
                "error": run.error,
                "status": run.status,
                "rounds": run.rounds,
                "solver_time_s": run.elapsed,
                "best_objective": run.best_objective,
                "best_energy": run.best_energy,
                "energy_mismatch": run.energy_mismatch,
                "time_to_target": result.run_times(run),
                "trajectory": run.trajectory,
                "best_sample": run.best_sample,
            }
        )
    return {
        "version": RESULTS_VERSION,
        "interrupted": result.interrupted,
        "started": result.started,
        "finished": result.finished,
        "command": result.command,
        "machine": result.machine,
        "settings": {
            "time_limit_s": result.time_limit,
            "seeds": result.seeds,
            "target_fractions": result.targets,
            "stop_at_best_known": result.stop_at_best_known,
            "background_load": result.background_load,
            "order": "instance > seed > solver, one process",
            "time": "solver time: sum of the sampler calls of a run; resolution one round",
            "solvers": {p.name: p.describe() for p in result.solvers},
        },
        "instances": instances,
        "runs": runs,
        "summary": summarize(result),
    }


def _plain_labels(variables: Any) -> list[Any] | None:
    labels = list(variables)
    if all(isinstance(v, int) for v in labels):
        if labels == list(range(len(labels))):
            return None  # the common case: 0..n-1, said by null
        return labels
    return [v if isinstance(v, (str, int, float)) else repr(v) for v in labels]


def _dumps(data: dict[str, Any]) -> str:
    """Indented JSON, except that each run (long trajectories and samples) is one line;
    values as :func:`ising_qubo.io.jsonvalues.dumps` writes them."""
    parts = []
    for key, value in data.items():
        if key == "runs":
            body = ",\n".join("  " + jsonvalues.dumps(run, indent=None) for run in value)
            text = f"[\n{body}\n ]" if value else "[]"
        else:
            text = jsonvalues.dumps(value, indent=1).replace("\n", "\n ")
        parts.append(f" {json.dumps(str(key))}: {text}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def _fmt(value: float | None, digits: int = 7) -> str:
    if value is None:
        return "—"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.{digits}g}"


def _fmt_time(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.3g}" if value >= 0.001 else f"{value:.1e}"


def _fmt_fraction(fraction: float) -> str:
    return f"{100 * fraction:g}%"


def table_markdown(result: BenchmarkRecord) -> str:
    """The human-readable report (``table.md``)."""
    m = result.machine
    cuda = m.get("cuda_device") or "none"
    lines = [
        "# Solver benchmark: time to target",
        "",
        f"- status: {'**INTERRUPTED** (partial results)' if result.interrupted else 'complete'}",
        f"- started {result.started}"
        + (f", finished {result.finished}" if result.finished else ""),
        f"- machine: {m.get('platform')}, {m.get('cpu_model')}, {m.get('cpu_count')} CPUs, "
        f"torch {m.get('torch_version')}, CUDA device: {cuda}",
        f"- time limit {result.time_limit:g} s of solver time per run; seeds "
        f"{', '.join(map(str, result.seeds))}; targets "
        f"{', '.join(_fmt_fraction(f) for f in result.targets)} of the reference "
        "(best known, else the best any solver found in this run)",
        "- runs interleaved instance > seed > solver in one process, the solver order turned "
        "by one place per seed; times are solver time "
        "(sum of sampler calls), resolved to one round",
        f"- {_load_text(result.background_load)}",
        "- median time counts unreached targets as infinite (— when fewer than half the seeds "
        "reached it); ok = seeds that reached it; ×neal = median time / neal's",
        "",
        "Per-round solver settings:",
        "",
        "| solver | parameters per call | mode | notes |",
        "|---|---|---|---|",
    ]
    for plan in result.solvers:
        params = ", ".join(f"{k}={v}" for k, v in plan.params.items()) or "(defaults)"
        mode = "one call, whole budget" if plan.single_call else "rounds until the limit"
        lines.append(f"| {plan.name} | {params} | {mode} | {plan.about} |")
    neal = any(p.name == "neal" for p in result.solvers)
    summary = summarize(result)
    for instance in result.instances:
        reference, source = result.reference(instance)
        bqm = instance.bqm
        ref_text = f"{_fmt(reference)} ({source})" if reference is not None else "none"
        lines += [
            "",
            f"## {instance.name}",
            "",
            f"{bqm.num_variables} variables, {bqm.num_interactions} interactions, "
            f"{bqm.vartype.name}; objective: {instance.objective_name} ({instance.sense}); "
            f"reference: {ref_text}",
            "",
        ]
        head = ["solver", "median", "gap %", "min", "max"]
        for fraction in result.targets:
            label = _fmt_fraction(fraction)
            head += [f"t {label} (s)", "ok"] + (["×neal"] if neal else [])
        head += ["rounds"]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for row in (r for r in summary if r["instance"] == instance.name):
            cells = [
                row["solver"],
                _fmt(row["median_objective"]),
                "—" if row["gap_percent"] is None else f"{row['gap_percent']:.3f}",
                _fmt(row["min_objective"]),
                _fmt(row["max_objective"]),
            ]
            for fraction in result.targets:
                entry = row["targets"][fraction_key(fraction)]
                cells += [_fmt_time(entry["median_time"]), f"{entry['successes']}/{row['runs']}"]
                if neal:
                    ratio = entry["ratio_to_neal"]
                    cells.append("—" if ratio is None else f"{ratio:.3g}")
            cells.append(_fmt(row["median_rounds"]))
            if row["errors"]:
                cells[0] += f" ({row['errors']} failed)"
            lines.append("| " + " | ".join(cells) + " |")
        for row in (r for r in summary if r["instance"] == instance.name):
            if row["first_error"]:
                lines.append(f"\n{row['solver']} error: {row['first_error']}")
            if row["max_energy_mismatch"] > 1e-6 * max(1.0, abs(reference or 0.0)):
                lines.append(
                    f"\nnote: {row['solver']} reported energies up to "
                    f"{row['max_energy_mismatch']:.3g} away from the recomputed ones "
                    "(the table uses recomputed values)"
                )
            if row["beats_best_known"]:
                lines.append(
                    f"\nnote: {row['solver']} found a better objective than the best "
                    "known value; check the instance and the best-known table"
                )
    return "\n".join(lines) + "\n"


def _load_text(load: dict[str, Any] | None) -> str:
    """The table's line on the machine's load: busy processes and the load average."""
    if load is None:
        return "background load: not recorded"

    def average(values: list[float] | None) -> str:
        return "unknown" if values is None else " / ".join(f"{v:.2f}" for v in values)

    count = load.get("processes", 0)
    text = (
        f"background load: {count} busy process{'' if count == 1 else 'es'} started by the "
        f"harness; load average (1/5/15 min) {average(load.get('loadavg_start'))} at the "
        f"start, {average(load.get('loadavg_end'))} at the end"
    )
    alive = load.get("alive_at_end")
    if count and alive is not None and alive < count:
        text += f" (**only {alive} still running at the end**)"
    return text


def plot_trajectories(result: BenchmarkRecord, path: Path) -> Path:
    """Best objective vs solver time, one panel per instance (the first 12), one colour per
    solver, one line per seed; the dashed line is the best-known value."""
    # matplotlib's object interface: no pyplot state and no backend switch in the caller
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    shown = result.instances[:MAX_PLOTTED_INSTANCES]
    cols = min(3, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig = Figure(figsize=(5.2 * cols, 3.8 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    colours = matplotlib.colormaps["tab10"]
    for ax, instance in zip(axes.flat, shown, strict=False):
        runs = [r for r in result.runs if r.instance == instance.name and r.trajectory]
        x_end = max([result.time_limit, *(r.trajectory[-1][0] for r in runs)])
        for k, plan in enumerate(result.solvers):
            label: str | None = plan.name  # the legend names each solver once
            for run in (r for r in runs if r.solver == plan.name):
                times = [max(t, 1e-4) for t, _ in run.trajectory]
                values = [v for _, v in run.trajectory]
                colour = colours(k % 10)
                ax.step(
                    [*times, x_end],
                    [*values, values[-1]],
                    where="post",
                    color=colour,
                    alpha=0.8,
                    linewidth=1.2,
                    label=label,
                )
                ax.plot(times, values, "o", color=colour, markersize=2.5, alpha=0.8)
                label = None
        if instance.best_known is not None:
            ax.axhline(
                instance.best_known,
                color="black",
                linestyle="--",
                linewidth=0.8,
                label="best known",
            )
        if runs:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.margins(y=0.08)
        ax.set_title(f"{instance.name} (n={instance.bqm.num_variables})", fontsize=10)
        ax.set_xlabel("solver time (s)")
        ax.set_ylabel(instance.objective_name or "objective")
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")
    for ax in list(axes.flat)[len(shown) :]:
        ax.set_visible(False)
    title = "best objective so far vs time"
    if len(result.instances) > len(shown):
        title += f" (first {len(shown)} of {len(result.instances)} instances)"
    if result.interrupted:
        title += " — interrupted"
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_write(path, binary=True) as fp:
        fig.savefig(fp, format="png", dpi=110)
    return path


def write_outputs(
    result: BenchmarkRecord, out_dir: Path, table: bool = True, plot: bool = False
) -> Path:
    """Write ``results.json`` (always, atomically); with ``table`` also ``table.md``,
    ``summary.csv`` and ``summary.tex``; with ``plot`` the figures ``trajectories.png`` and
    ``profile.png`` (each skipped with a warning when it cannot be drawn)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    text = _dumps(result_to_dict(result))
    with atomic_write(out_dir / "results.json", binary=False) as fp:
        fp.write(text)
    if table:
        with atomic_write(out_dir / "table.md", binary=False) as fp:
            fp.write(table_markdown(result))
        # from the file's own text, so that it equals a summary made later from the file;
        # the target: the highest fraction asked for (the reference itself by default)
        write_summary(
            [json.loads(text)],
            out_dir,
            fraction=max(result.targets, default=1.0),
            plot=plot and bool(result.runs),
        )
    if plot and result.runs:
        try:
            plot_trajectories(result, out_dir / "trajectories.png")
        except Exception as exc:  # a plotting problem must not lose the numbers
            from ising_qubo._extras import as_missing_extra

            reason = as_missing_extra(exc, "trajectories.png") or exc
            print(f"warning: could not draw trajectories.png: {reason}", file=sys.stderr)
    return out_dir
