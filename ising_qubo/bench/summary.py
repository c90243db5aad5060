"""The benchmark summarised across instances: ``summary.csv``, ``summary.tex`` and
``profile.png`` (a performance profile and a time-to-target ECDF).

Everything here works on the data of ``results.json`` (what
:func:`ising_qubo.bench.report.result_to_dict` returns), so that the summary of a finished
benchmark and one built later from several result files (:func:`summarize_results`) are
the same computation.

Definitions, written into the CSV, the LaTeX comments and the figure's caption:

- **target**: ``fraction`` (default: the highest target fraction of the benchmark, 1.0
  unless changed) of the instance's *reference*: its best-known value, else the best
  objective any run of any solver found (in all the files pooled).
- **time to target** of one seed: the first solver time its best-so-far reached the
  target, computed from the recorded trajectory with
  :func:`ising_qubo.bench.record.time_to_target`, the function that wrote the per-seed
  ``time_to_target`` of ``results.json`` (recomputed so that runs pooled from several
  files share one reference).
- **median time** of (instance, solver): median over the seeds that finished without
  error, a seed that never reached the target counted as infinitely slow, so it exists
  only when enough seeds got there (the rule of ``table.md``); ``success_rate`` is the
  fraction of those seeds that reached the target.
- **performance profile** (Dolan & Moré 2002): with ``r[p, s]`` = solver ``s``'s median
  time on instance ``p`` over the fastest solver's median time on ``p`` (infinite when
  ``s`` has none), ``rho_s(tau)`` is the fraction of all instances with
  ``r[p, s] <= tau``. A solver that misses the target on some instance never reaches 1;
  an instance no solver reached counts against every solver.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ising_qubo.bench.record import target_value, time_to_target
from ising_qubo.io._atomic import atomic_write
from ising_qubo.io.jsonvalues import read_float

if TYPE_CHECKING:
    from matplotlib.axes import Axes

CSV_NAME = "summary.csv"
TEX_NAME = "summary.tex"
PROFILE_NAME = "profile.png"

#: Line styles cycled with the colours, so that overlapping curves and a grey-scale print
#: still tell the solvers apart.
LINE_STYLES = ("-", "--", "-.", ":")

#: Times below this (seconds) count as this, so that a solver done "in no time" on an
#: instance gives finite ratios to the others.
TIME_FLOOR = 1e-6

CSV_COLUMNS = (
    "instance",
    "solver",
    "n",
    "sense",
    "objective",
    "reference",
    "reference_source",
    "target_fraction",
    "target",
    "seeds",
    "errors",
    "best_objective",
    "best_energy",
    "gap_percent",
    "median_objective",
    "median_gap_percent",
    "successes",
    "success_rate",
    "median_time_to_target_s",
    "ratio_to_fastest",
    "time_limit_s",
)


@dataclass
class InstanceSummary:
    """What the summary needs of one instance, pooled over the files that ran it."""

    name: str
    num_variables: int
    sense: str
    objective: str | None
    best_known: float | None
    source: str  # the file it was first seen in, for error messages
    reference: float | None = None
    reference_source: str | None = None

    def better(self, a: float, b: float) -> bool:
        return a > b if self.sense == "max" else a < b


@dataclass
class SolverRow:
    """One (instance, solver): its seeds' results and what follows from them."""

    instance: InstanceSummary
    solver: str
    time_limits: set[float] = field(default_factory=set)
    objectives: list[float] = field(default_factory=list)  # per good seed
    energies: list[float | None] = field(default_factory=list)
    times: list[float | None] = field(default_factory=list)  # per good seed, None: missed
    errors: int = 0
    ratio: float = math.inf  # to the fastest solver's median time on the instance

    @property
    def seeds(self) -> int:
        return len(self.objectives)

    @property
    def successes(self) -> int:
        return sum(1 for t in self.times if t is not None)

    @property
    def success_rate(self) -> float | None:
        return self.successes / self.seeds if self.seeds else None

    @property
    def median_time(self) -> float | None:
        if not self.times:
            return None
        value = statistics.median(math.inf if t is None else t for t in self.times)
        return value if math.isfinite(value) else None

    @property
    def best_index(self) -> int | None:
        if not self.objectives:
            return None
        best = 0
        for k, value in enumerate(self.objectives):
            if self.instance.better(value, self.objectives[best]):
                best = k
        return best

    @property
    def best_objective(self) -> float | None:
        k = self.best_index
        return None if k is None else self.objectives[k]

    @property
    def best_energy(self) -> float | None:
        k = self.best_index
        return None if k is None else self.energies[k]

    @property
    def median_objective(self) -> float | None:
        return statistics.median(self.objectives) if self.objectives else None


@dataclass
class Summary:
    """Rows per (instance, solver) in the order first seen, and the target they share."""

    fraction: float
    instances: list[InstanceSummary]
    solvers: list[str]
    rows: list[SolverRow]

    def rows_of(self, instance: str) -> list[SolverRow]:
        return [r for r in self.rows if r.instance.name == instance]

    def profile(self) -> dict[str, list[float]]:
        """Per solver, its time ratio on every instance (infinite: not reached, or not run
        there), in instance order."""
        ratios: dict[str, list[float]] = {s: [] for s in self.solvers}
        for instance in self.instances:
            mine = {r.solver: r.ratio for r in self.rows_of(instance.name)}
            for solver in self.solvers:
                ratios[solver].append(mine.get(solver, math.inf))
        return ratios

    def time_limits(self) -> list[float]:
        return sorted({t for r in self.rows for t in r.time_limits})

    def reference_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for instance in self.instances:
            key = instance.reference_source or "none"
            counts[key] = counts.get(key, 0) + 1
        return counts


def profile_fraction(ratios: Sequence[float], tau: float) -> float:
    """``rho(tau)``: the fraction of instances whose time ratio is at most ``tau``."""
    if not ratios:
        return 0.0
    return sum(1 for r in ratios if r <= tau) / len(ratios)


def default_fraction(results: Sequence[dict[str, Any]]) -> float:
    """The highest target fraction every one of ``results`` recorded (1.0 if none)."""
    common: set[float] | None = None
    for data in results:
        settings = data.get("settings") if isinstance(data, dict) else None
        mine = {float(f) for f in (settings or {}).get("target_fractions") or []}
        common = mine if common is None else common & mine
    return max(common) if common else 1.0


def build_summary(
    results: Sequence[dict[str, Any]],
    fraction: float | None = None,
    names: Sequence[str] | None = None,
) -> Summary:
    """The summary of one or more ``results.json`` contents, their runs pooled.

    ``names`` name the results in error messages (file paths); an instance seen twice must
    agree on size, sense and best-known value, and an (instance, solver, seed) may occur
    only once. Runs that did not finish (an interrupted benchmark) are left out, and so
    are instances without any finished run; runs that failed are counted in ``errors``."""
    names = list(names) if names is not None else [f"results #{k + 1}" for k in range(len(results))]
    if fraction is None:
        fraction = default_fraction(results)
    if not 0 < fraction <= 1:
        raise ValueError(f"target fraction {fraction!r}: expected a value in (0, 1]")
    instances: dict[str, InstanceSummary] = {}
    rows: dict[tuple[str, str], SolverRow] = {}
    solvers: list[str] = []
    seen: dict[tuple[str, str, Any], str] = {}
    found: dict[str, list[float]] = {}
    pending: list[tuple[SolverRow, dict[str, Any], str]] = []
    for data, name in zip(results, names, strict=True):
        for entry in _list(data, "instances", name):
            _add_instance(instances, entry, name)
        limit = _number((data.get("settings") or {}).get("time_limit_s"), name, "time_limit_s")
        for run in _list(data, "runs", name):
            try:
                instance_name, solver, seed = run["instance"], run["solver"], run["seed"]
            except (KeyError, TypeError):
                raise ValueError(f"{name}: a run without instance, solver and seed") from None
            if instance_name not in instances:
                raise ValueError(f"{name}: run of unknown instance {instance_name!r}")
            key = (instance_name, solver, seed)
            if key in seen:
                raise ValueError(
                    f"{name}: instance {instance_name!r}, solver {solver!r}, seed {seed!r} "
                    f"is also in {seen[key]}: pool results of different seeds only"
                )
            seen[key] = name
            objective = _number(run.get("best_objective"), name, "best_objective")
            if objective is not None and math.isfinite(objective):
                found.setdefault(instance_name, []).append(objective)
            if not run.get("error") and not run.get("complete"):
                continue  # cut short by an interrupt: neither a result nor a failure
            if solver not in solvers:
                solvers.append(solver)
            row = rows.setdefault(
                (instance_name, solver), SolverRow(instances[instance_name], solver)
            )
            if limit is not None:
                row.time_limits.add(limit)
            if run.get("error"):
                row.errors += 1
            elif objective is not None:
                pending.append((row, run, name))
    for instance in instances.values():
        if instance.best_known is not None:
            instance.reference, instance.reference_source = instance.best_known, "best known"
        elif found.get(instance.name):
            values = found[instance.name]
            instance.reference = max(values) if instance.sense == "max" else min(values)
            instance.reference_source = "best found"
    for row, run, name in pending:
        try:
            trajectory = [
                (_float_or_nan(t), _float_or_nan(v)) for t, v in run.get("trajectory") or []
            ]
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name}: bad trajectory of a {row.solver} run ({exc})") from None
        inst = row.instance
        row.objectives.append(_float_or_nan(run["best_objective"]))
        row.energies.append(_number(run.get("best_energy"), name, "best_energy"))
        row.times.append(time_to_target(trajectory, inst.reference, fraction, inst.sense))
    # instances listed but not run yet (a benchmark still running, or interrupted) are
    # left out: they would count against every solver in the profile
    measured = [i for i in instances.values() if any(r.instance is i for r in rows.values())]
    ordered = sorted(
        rows.values(),
        key=lambda r: (measured.index(r.instance), solvers.index(r.solver)),
    )
    for instance in measured:
        _set_ratios([r for r in ordered if r.instance is instance])
    return Summary(fraction, measured, solvers, ordered)


def _list(data: Any, key: str, name: str) -> list[Any]:
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, list):
        raise ValueError(f"{name}: not a benchmark results.json (no list {key!r})")
    return value


def _number(value: Any, name: str, key: str) -> float | None:
    try:
        return read_float(value)
    except ValueError as exc:
        raise ValueError(f"{name}: {key}: {exc}") from None


def _float_or_nan(value: Any) -> float:
    number = read_float(value)
    return math.nan if number is None else number


def _add_instance(instances: dict[str, InstanceSummary], entry: Any, name: str) -> None:
    try:
        new = InstanceSummary(
            name=str(entry["name"]),
            num_variables=int(entry["num_variables"]),
            sense=str(entry.get("sense", "max")),
            objective=entry.get("objective"),
            best_known=read_float(entry.get("best_known")),
            source=name,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{name}: bad instance entry ({type(exc).__name__}: {exc})") from None
    old = instances.get(new.name)
    if old is None:
        instances[new.name] = new
        return
    for attribute in ("num_variables", "sense", "best_known"):
        if getattr(old, attribute) != getattr(new, attribute):
            raise ValueError(
                f"{name}: instance {new.name!r} has {attribute} {getattr(new, attribute)!r} "
                f"but {getattr(old, attribute)!r} in {old.source}"
            )


def _set_ratios(rows: list[SolverRow]) -> None:
    times = {id(r): r.median_time for r in rows}
    reached = [max(t, TIME_FLOOR) for t in times.values() if t is not None]
    fastest = min(reached, default=None)
    for row in rows:
        mine = times[id(row)]
        row.ratio = math.inf if mine is None or fastest is None else max(mine, TIME_FLOOR) / fastest


# ---- summary.csv ----------------------------------------------------------------------


def csv_text(summary: Summary) -> str:
    """One line per (instance, solver); empty cells for values that do not exist."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in summary.rows:
        inst = row.instance
        target = (
            None
            if inst.reference is None
            else target_value(inst.reference, summary.fraction, inst.sense)
        )
        values: dict[str, Any] = {
            "instance": inst.name,
            "solver": row.solver,
            "n": inst.num_variables,
            "sense": inst.sense,
            "objective": inst.objective,
            "reference": inst.reference,
            "reference_source": inst.reference_source,
            "target_fraction": summary.fraction,
            "target": target,
            "seeds": row.seeds,
            "errors": row.errors,
            "best_objective": row.best_objective,
            "best_energy": row.best_energy,
            "gap_percent": gap_percent(row.best_objective, inst.reference, inst.sense),
            "median_objective": row.median_objective,
            "median_gap_percent": gap_percent(row.median_objective, inst.reference, inst.sense),
            "successes": row.successes,
            "success_rate": row.success_rate,
            "median_time_to_target_s": row.median_time,
            "ratio_to_fastest": row.ratio if math.isfinite(row.ratio) else None,
            "time_limit_s": min(row.time_limits) if row.time_limits else None,
        }
        writer.writerow(["" if values[c] is None else values[c] for c in CSV_COLUMNS])
    return buffer.getvalue()


def gap_percent(value: float | None, reference: float | None, sense: str) -> float | None:
    """How far ``value`` is behind ``reference``, in percent of |reference| (as table.md)."""
    if value is None or reference is None or reference == 0:
        return None
    behind = reference - value if sense == "max" else value - reference
    return 100.0 * behind / abs(reference)


# ---- summary.tex ----------------------------------------------------------------------

_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}

TEX_HEADER = (
    "Instance",
    "$n$",
    "Solver",
    "Best",
    r"Gap (\%)",
    "Success",
    "Median TTT (s)",
)


def latex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters as commands (``bqp50_1`` -> ``bqp50\\_1``)."""
    return "".join(_LATEX_SPECIALS.get(ch, ch) for ch in text)


def _tex_number(value: float | None, digits: int = 7) -> str:
    if value is None or not math.isfinite(value):
        return "--"
    text = (
        str(int(value))
        if float(value).is_integer() and abs(value) < 1e15
        else f"{value:.{digits}g}"
    )
    return f"$-${text[1:]}" if text.startswith("-") else text


def _tex_fixed(value: float, decimals: int) -> str:
    text = f"{value:.{decimals}f}"
    return f"$-${text[1:]}" if text.startswith("-") else text


def _tex_time(value: float | None) -> str:
    if value is None:
        return "--"
    return f"{value:.3g}" if value >= 0.001 else _tex_number(float(f"{value:.1e}"), 2)


def latex_text(summary: Summary) -> str:
    """A booktabs ``tabular``: per instance its solvers' best objective over the seeds,
    gap to the reference, seeds that reached the target and median time to it; the best
    objective and the fastest median time of each instance in bold."""
    refs = ", ".join(f"{k} on {v}" for k, v in summary.reference_counts().items())
    lines = [
        "% ising-qubo bench summary; needs \\usepackage{booktabs}",
        f"% target: {100 * summary.fraction:g}% of the reference ({refs} instance(s))",
        "% Best: best objective over the seeds; Gap: of Best behind the reference, percent;",
        "% Success: seeds that reached the target / seeds that finished without error;",
        "% Median TTT: median over those seeds of the solver time to the target (unreached",
        "% counted infinite, -- when it is); bold: best per instance",
        r"\begin{tabular}{llrlrrr}",
        r"\toprule",
        " & ".join(TEX_HEADER) + r" \\",
        r"\midrule",
    ]
    for k, instance in enumerate(summary.instances):
        rows = summary.rows_of(instance.name)
        if k:
            lines.append(r"\midrule")
        best = _best_value(instance, [r.best_objective for r in rows])
        fastest = min((r.median_time for r in rows if r.median_time is not None), default=None)
        for j, row in enumerate(rows):
            value = _tex_number(row.best_objective)
            if (
                best is not None
                and row.best_objective is not None
                and _same(row.best_objective, best)
            ):
                value = rf"\textbf{{{value}}}"
            time = _tex_time(row.median_time)
            if fastest is not None and row.median_time == fastest:
                time = rf"\textbf{{{time}}}"
            gap = gap_percent(row.best_objective, instance.reference, instance.sense)
            cells = [
                latex_escape(instance.name) if j == 0 else "",
                str(instance.num_variables) if j == 0 else "",
                latex_escape(row.solver) + (f" ({row.errors} failed)" if row.errors else ""),
                value,
                "--" if gap is None else _tex_fixed(gap, 3),
                f"{row.successes}/{row.seeds}",
                time,
            ]
            lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(lines)


def _best_value(instance: InstanceSummary, values: Iterable[float | None]) -> float | None:
    best: float | None = None
    for value in values:
        if value is not None and (best is None or instance.better(value, best)):
            best = value
    return best


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, abs(b))


# ---- profile.png ----------------------------------------------------------------------


def caption(summary: Summary) -> str:
    """What the figure shows, in words (drawn under it)."""
    refs = ", ".join(f"{k} on {v}" for k, v in summary.reference_counts().items())
    limits = summary.time_limits()
    limit_text = (
        "time limit not recorded"
        if not limits
        else f"time limit {limits[0]:g} s"
        if len(limits) == 1
        else f"time limits {limits[0]:g}-{limits[-1]:g} s"
    )
    return (
        f"Target: {100 * summary.fraction:g}% of the reference ({refs} instance(s)). "
        "Left: performance profile (Dolan & Moré 2002) of the median solver time over seeds "
        "to the target (unreached seeds infinite), relative to the fastest solver on each "
        "instance; a curve below 1 at the right end: instances where the solver's median "
        f"missed the target. Right: every seed's time to target; {limit_text}."
    )


def plot_profile(summary: Summary, path: Path) -> Path:
    """``profile.png``: the performance profile and the ECDF of every seed's time."""
    # matplotlib's object interface: no pyplot state and no backend switch in the caller
    import matplotlib
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.6))
    left, right = fig.subplots(1, 2)
    colours = matplotlib.colormaps["tab10"]
    ratios = summary.profile()
    finite = [r for values in ratios.values() for r in values if math.isfinite(r)]
    tau_end = max(2.0, 2.0 * max(finite, default=1.0))
    total = len(summary.instances)
    for k, (solver, values) in enumerate(ratios.items()):
        steps = sorted(r for r in values if math.isfinite(r))
        xs = [1.0, *steps, tau_end]
        ys = [profile_fraction(values, x) for x in xs]
        reached = sum(1 for r in values if math.isfinite(r))
        _solver_step(left, xs, ys, k, colours, f"{solver} ({reached}/{total})")
    _style_profile(left, tau_end, total)
    _plot_ecdf(right, summary, colours)
    fig.suptitle(
        f"{total} instance{'s' if total != 1 else ''}, {len(summary.solvers)} solvers: "
        f"time to {100 * summary.fraction:g}% of the reference"
    )
    fig.text(0.01, 0.01, caption(summary), fontsize=7, wrap=True, va="bottom")
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    with atomic_write(path, binary=True) as fp:
        fig.savefig(fp, format="png", dpi=130)
    return path


def _solver_step(ax: Any, xs: list, ys: list, k: int, colours: Any, label: str) -> None:
    """One solver's staircase (the k-th solver's colour and line style, the same in both
    panels)."""
    ax.step(
        xs,
        ys,
        where="post",
        color=colours(k % 10),
        linestyle=LINE_STYLES[k % len(LINE_STYLES)],
        linewidth=1.6,
        label=label,
    )


def _style_profile(ax: Axes, tau_end: float, total: int) -> None:
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlim(1.0, tau_end)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("τ: median time / fastest solver's median time (log)")
    ax.set_ylabel(f"fraction of the {total} instances within τ")
    ax.set_title("performance profile", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right", title="solver (instances reached)", title_fontsize=7)


def _plot_ecdf(ax: Axes, summary: Summary, colours: Any) -> None:
    from matplotlib.ticker import NullFormatter

    times = [max(t, TIME_FLOOR) for r in summary.rows for t in r.times if t is not None]
    limits = summary.time_limits()
    end = max([*times, *limits, TIME_FLOOR * 10]) * 1.5
    start = min(times, default=end / 100) / 1.5
    for k, solver in enumerate(summary.solvers):
        mine = [t for r in summary.rows if r.solver == solver for t in r.times]
        if not mine:
            continue
        reached = sorted(max(t, TIME_FLOOR) for t in mine if t is not None)
        xs = [start, *reached, end]
        ys = [0.0, *[(j + 1) / len(mine) for j in range(len(reached))], len(reached) / len(mine)]
        _solver_step(ax, xs, ys, k, colours, f"{solver} ({len(reached)}/{len(mine)} runs)")
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlim(start, end)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("solver time (s, log)")
    ax.set_ylabel("fraction of (instance, seed) runs at the target")
    ax.set_title("time-to-target ECDF over instances and seeds", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")


# ---- writing ----------------------------------------------------------------------------


def write_summary(
    results: Sequence[dict[str, Any]],
    out_dir: str | Path,
    *,
    fraction: float | None = None,
    plot: bool = True,
    names: Sequence[str] | None = None,
) -> list[Path]:
    """Write ``summary.csv``, ``summary.tex`` and (``plot``, matplotlib installed)
    ``profile.png`` to ``out_dir``; returns the paths written. A plotting problem is a
    warning line on stderr: the tables are written anyway."""
    summary = build_summary(results, fraction, names)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in ((CSV_NAME, csv_text(summary)), (TEX_NAME, latex_text(summary))):
        with atomic_write(out / name, binary=False) as fp:
            fp.write(text)
        written.append(out / name)
    for solver in summary.solvers:
        absent = [
            i.name
            for i in summary.instances
            if solver not in {r.solver for r in summary.rows_of(i.name)}
        ]
        if absent:
            print(
                f"warning: {solver} did not run on {len(absent)} of the "
                f"{len(summary.instances)} instances ({', '.join(absent[:5])}"
                f"{', ...' if len(absent) > 5 else ''}): counted as not reaching the target "
                "in the performance profile",
                file=sys.stderr,
            )
    if plot and summary.rows:
        try:
            written.append(plot_profile(summary, out / PROFILE_NAME))
        except Exception as exc:  # a plotting problem must not lose the tables
            from ising_qubo._extras import as_missing_extra

            reason = as_missing_extra(exc, PROFILE_NAME) or exc
            print(f"warning: could not draw {PROFILE_NAME}: {reason}", file=sys.stderr)
    return written


def load_results(path: str | Path) -> dict[str, Any]:
    """One ``results.json`` (or the folder holding one); a one-line ValueError if it is
    missing or not JSON."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a JSON file ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a benchmark results.json (not a JSON object)")
    return data


def summarize_results(
    paths: Iterable[str | Path],
    out_dir: str | Path,
    *,
    fraction: float | None = None,
    plot: bool = True,
) -> list[Path]:
    """The summary of several benchmarks' ``results.json`` files (or their folders), their
    runs pooled: :func:`write_summary` into ``out_dir``."""
    paths = list(paths)
    if not paths:
        raise ValueError("summarize_results: no results.json given")
    results = [load_results(p) for p in paths]
    return write_summary(
        results, out_dir, fraction=fraction, plot=plot, names=[str(p) for p in paths]
    )


__all__ = [
    "CSV_COLUMNS",
    "Summary",
    "build_summary",
    "caption",
    "csv_text",
    "gap_percent",
    "latex_escape",
    "latex_text",
    "load_results",
    "plot_profile",
    "profile_fraction",
    "summarize_results",
    "write_summary",
]
