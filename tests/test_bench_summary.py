"""The bench summary across instances (ising_qubo.bench.summary): performance profile,
summary.csv, summary.tex and profile.png, on a hand-made record whose numbers are worked
out here, and end to end on a real tiny benchmark."""

from __future__ import annotations

import copy
import csv
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ising_qubo.bench import collect_instances, run_benchmark
from ising_qubo.bench.summary import (
    CSV_COLUMNS,
    build_summary,
    caption,
    latex_escape,
    profile_fraction,
    summarize_results,
    write_summary,
)

REPO = Path(__file__).resolve().parents[1]
INF = math.inf


def _run(instance, solver, seed, trajectory, *, complete=True, error=None):
    best = trajectory[-1][1] if trajectory else None
    return {
        "instance": instance,
        "solver": solver,
        "seed": seed,
        "complete": complete,
        "error": error,
        "best_objective": best,
        "best_energy": None if best is None else -best,
        "trajectory": trajectory,
    }


def _reach(value_at: float | None, target: float, end: float = 10.0) -> list[list[float]]:
    """A trajectory that first reaches ``target`` at ``value_at`` (never: None)."""
    if value_at is None:
        return [[0.1, target - 5], [end, target - 5]]
    return [[0.05, target - 5], [value_at, target], [end, target]]


def synthetic() -> dict:
    """3 instances x 2 solvers x 3 seeds (maximised).

    seeds' times to the reference (None: never)     median      ratio to fastest
    p_1 (best known 10): sol_A 1, 2, 3               2           1
                         sol_B 4, 5, 6               5           2.5
    p_2 (best known 20): sol_A 8, 9, None            9           3
                         sol_B 3, 3, 3               3           1
    p_3 (no best known; best found 30 by sol_A):
                         sol_A 0.5, 0.5, unfinished  0.5         1
                         sol_B 25 at best, error     none        inf
    """
    runs = []
    for seed, t in enumerate((1.0, 2.0, 3.0)):
        runs.append(_run("p_1", "sol_A", seed, _reach(t, 10.0)))
    for seed, t in enumerate((4.0, 5.0, 6.0)):
        runs.append(_run("p_1", "sol_B", seed, _reach(t, 10.0)))
    for seed, t in enumerate((8.0, 9.0, None)):
        runs.append(_run("p_2", "sol_A", seed, _reach(t, 20.0)))
    for seed in range(3):
        runs.append(_run("p_2", "sol_B", seed, _reach(3.0, 20.0)))
    runs.append(_run("p_3", "sol_A", 0, _reach(0.5, 30.0)))
    runs.append(_run("p_3", "sol_A", 1, _reach(0.5, 30.0)))
    runs.append(_run("p_3", "sol_A", 2, [[0.2, 29.0]], complete=False))  # interrupted
    runs.append(_run("p_3", "sol_B", 0, [[0.3, 20.0], [10.0, 25.0]]))
    runs.append(_run("p_3", "sol_B", 1, [[0.3, 20.0], [10.0, 25.0]]))
    runs.append(_run("p_3", "sol_B", 2, [], error="RuntimeError: boom"))

    def instance(name, best_known):
        return {
            "name": name,
            "num_variables": 10,
            "sense": "max",
            "objective": "cut",
            "best_known": best_known,
        }

    return {
        "version": 1,
        "settings": {"time_limit_s": 10.0, "target_fractions": [0.995, 1.0]},
        "instances": [instance("p_1", 10.0), instance("p_2", 20.0), instance("p_3", None)],
        "runs": runs,
    }


# worked out by hand from the table in synthetic()
MEDIAN = {
    ("p_1", "sol_A"): 2.0,
    ("p_1", "sol_B"): 5.0,
    ("p_2", "sol_A"): 9.0,
    ("p_2", "sol_B"): 3.0,
    ("p_3", "sol_A"): 0.5,
    ("p_3", "sol_B"): None,
}
RATIOS = {"sol_A": [1.0, 3.0, 1.0], "sol_B": [2.5, 1.0, INF]}
PROFILE = {  # tau: (rho_A, rho_B)
    1.0: (2 / 3, 1 / 3),
    2.0: (2 / 3, 1 / 3),
    2.5: (2 / 3, 2 / 3),
    3.0: (1.0, 2 / 3),
    1e6: (1.0, 2 / 3),  # sol_B never reaches p_3: below 1 forever
}


def test_profile_fractions_recomputed_by_hand():
    summary = build_summary([synthetic()])
    assert summary.fraction == 1.0  # the highest target fraction recorded
    assert [i.name for i in summary.instances] == ["p_1", "p_2", "p_3"]
    assert summary.solvers == ["sol_A", "sol_B"]
    medians = {(r.instance.name, r.solver): r.median_time for r in summary.rows}
    assert medians == pytest.approx(MEDIAN)
    ratios = summary.profile()
    assert ratios.keys() == RATIOS.keys()
    for solver, expected in RATIOS.items():
        assert ratios[solver] == pytest.approx(expected), solver
    for tau, (rho_a, rho_b) in PROFILE.items():
        assert profile_fraction(ratios["sol_A"], tau) == pytest.approx(rho_a), tau
        assert profile_fraction(ratios["sol_B"], tau) == pytest.approx(rho_b), tau
    p3 = summary.instances[2]
    assert (p3.reference, p3.reference_source) == (30.0, "best found")
    row = next(r for r in summary.rows if (r.instance.name, r.solver) == ("p_3", "sol_B"))
    assert (row.seeds, row.errors, row.successes) == (2, 1, 0)
    row = next(r for r in summary.rows if (r.instance.name, r.solver) == ("p_3", "sol_A"))
    assert row.seeds == 2  # the interrupted seed is neither a result nor a failure


def test_a_lower_target_changes_the_times():
    """At 50 % of the reference every trajectory above reaches the target at its first
    point: 0.05 s (value reference - 5), except sol_B on p_3 (20 >= 15 at 0.3 s)."""
    summary = build_summary([synthetic()], fraction=0.5)
    medians = {(r.instance.name, r.solver): r.median_time for r in summary.rows}
    assert medians == pytest.approx({**dict.fromkeys(MEDIAN, 0.05), ("p_3", "sol_B"): 0.3})
    with pytest.raises(ValueError, match="target fraction 1.5"):
        build_summary([synthetic()], fraction=1.5)


def _read_csv(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fp:
        reader = csv.DictReader(fp)
        assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
        return {(row["instance"], row["solver"]): row for row in reader}


def test_csv_round_trip(tmp_path):
    write_summary([synthetic()], tmp_path, plot=False)
    rows = _read_csv(tmp_path / "summary.csv")
    assert set(rows) == set(MEDIAN)
    for key, median in MEDIAN.items():
        cell = rows[key]["median_time_to_target_s"]
        assert (float(cell) if cell else None) == median, key
    p1a = rows[("p_1", "sol_A")]
    assert float(p1a["reference"]) == 10.0 and p1a["reference_source"] == "best known"
    assert int(p1a["n"]) == 10 and float(p1a["target"]) == 10.0
    assert float(p1a["success_rate"]) == 1.0 and float(p1a["ratio_to_fastest"]) == 1.0
    assert float(rows[("p_1", "sol_B")]["ratio_to_fastest"]) == 2.5
    p2a = rows[("p_2", "sol_A")]
    assert (int(p2a["successes"]), int(p2a["seeds"])) == (2, 3)
    assert float(p2a["success_rate"]) == pytest.approx(2 / 3)
    assert float(p2a["gap_percent"]) == 0.0
    assert float(p2a["median_gap_percent"]) == 0.0  # median of 20, 20, 15
    p3b = rows[("p_3", "sol_B")]
    assert p3b["reference_source"] == "best found" and float(p3b["reference"]) == 30.0
    assert int(p3b["errors"]) == 1 and int(p3b["seeds"]) == 2
    assert p3b["median_time_to_target_s"] == "" and p3b["ratio_to_fastest"] == ""
    assert float(p3b["best_objective"]) == 25.0 and float(p3b["best_energy"]) == -25.0
    assert float(p3b["gap_percent"]) == pytest.approx(100 * 5 / 30)


def _tabular_rows(tex: str) -> tuple[str, list[str]]:
    lines = tex.splitlines()
    begin = next(line for line in lines if line.startswith(r"\begin{tabular}"))
    spec = re.fullmatch(r"\\begin\{tabular\}\{([lrc]+)\}", begin)
    assert spec, begin
    body = lines[lines.index(begin) + 1 : lines.index(r"\end{tabular}")]
    return spec.group(1), body


def test_latex_table_structure_escaping_and_bold(tmp_path):
    write_summary([synthetic()], tmp_path, plot=False)
    tex = (tmp_path / "summary.tex").read_text()
    columns, body = _tabular_rows(tex)
    assert body[0] == r"\toprule" and body[-1] == r"\bottomrule"
    assert body[2] == r"\midrule"
    assert body.count(r"\midrule") == 1 + 2  # after the header, between 3 instances
    rows = [line for line in body if not line.startswith("\\") or line.startswith("\\textbf")]
    assert len(rows) == 1 + 6  # header + one row per (instance, solver)
    for line in rows:
        assert line.endswith(r" \\"), line
        unescaped_amps = len(re.findall(r"(?<!\\)&", line))
        assert unescaped_amps == len(columns) - 1, line
        outside_math = re.sub(r"\$[^$]*\$", "", line)
        assert not re.search(r"(?<!\\)[_%#]", outside_math), line
    assert "p\\_1" in tex and "sol\\_A" in tex and "p_1" not in tex.split(r"\toprule")[1]
    by_key = {}
    instance = None
    for line in rows[1:]:
        cells = [c.strip() for c in re.split(r"(?<!\\)&", line.removesuffix(r" \\"))]
        instance = cells[0] or instance
        by_key[(instance, cells[2])] = cells
    # best objective per instance in bold (ties: both), the fastest median time in bold
    assert by_key[("p\\_1", "sol\\_A")][3] == r"\textbf{10}"
    assert by_key[("p\\_1", "sol\\_B")][3] == r"\textbf{10}"
    assert by_key[("p\\_3", "sol\\_A")][3] == r"\textbf{30}"
    assert by_key[("p\\_3", "sol\\_B (1 failed)")][3] == "25"
    assert by_key[("p\\_1", "sol\\_A")][6] == r"\textbf{2}"
    assert by_key[("p\\_1", "sol\\_B")][6] == "5"
    assert by_key[("p\\_2", "sol\\_B")][6] == r"\textbf{3}"
    assert by_key[("p\\_3", "sol\\_B (1 failed)")][6] == "--"
    assert by_key[("p\\_2", "sol\\_A")][5] == "2/3"


def test_latex_escape_every_special_character():
    assert latex_escape("a_b&c%d$e#f{g}h~i^j\\k") == (
        r"a\_b\&c\%d\$e\#f\{g\}h\textasciitilde{}i\textasciicircum{}j\textbackslash{}k"
    )


def test_profile_png_and_caption(tmp_path):
    pytest.importorskip("matplotlib")
    written = write_summary([synthetic()], tmp_path)
    png = tmp_path / "profile.png"
    assert png in written
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    text = caption(build_summary([synthetic()]))
    assert "best known on 2" in text and "best found on 1" in text
    assert "median" in text and "100%" in text and "time limit 10 s" in text


_WITHOUT_MATPLOTLIB = """
import json, sys
sys.modules["matplotlib"] = None  # as if the [plot] extra were not installed
from ising_qubo.bench.summary import write_summary
written = write_summary([json.loads(open(sys.argv[1]).read())], sys.argv[2])
print(json.dumps([p.name for p in written]))
"""


def test_without_matplotlib_the_tables_are_written_and_the_plot_skipped(tmp_path):
    data = tmp_path / "results.json"
    data.write_text(json.dumps(synthetic()))
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_MATPLOTLIB, str(data), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["summary.csv", "summary.tex"]
    assert "warning: could not draw profile.png" in result.stderr
    assert "pip install 'ising-qubo[plot]'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (out / "profile.png").exists()
    assert _read_csv(out / "summary.csv").keys() == MEDIAN.keys()


def test_pooling_files_by_seed_gives_the_same_summary(tmp_path):
    whole = synthetic()
    first, second = copy.deepcopy(whole), copy.deepcopy(whole)
    first["runs"] = [r for r in whole["runs"] if r["seed"] == 0]
    second["runs"] = [r for r in whole["runs"] if r["seed"] != 0]
    paths = []
    for k, data in enumerate((first, second)):
        folder = tmp_path / f"part{k}"
        folder.mkdir()
        (folder / "results.json").write_text(json.dumps(data))
        paths.append(folder if k == 0 else folder / "results.json")  # a folder or a file
    summarize_results(paths, tmp_path / "pooled", plot=False)
    write_summary([whole], tmp_path / "single", plot=False)
    assert (tmp_path / "pooled" / "summary.csv").read_text() == (
        tmp_path / "single" / "summary.csv"
    ).read_text()
    with pytest.raises(ValueError, match=r"seed 0 is also in .*part0"):
        summarize_results([paths[0], paths[0]], tmp_path / "twice", plot=False)
    conflicting = copy.deepcopy(second)
    conflicting["instances"][0]["best_known"] = 11.0
    (tmp_path / "conflict.json").write_text(json.dumps(conflicting))
    with pytest.raises(ValueError, match=r"conflict.json: instance 'p_1' has best_known 11"):
        summarize_results([paths[0], tmp_path / "conflict.json"], tmp_path / "c", plot=False)


def test_bad_files_are_one_line_errors(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "other.json").write_text('{"runs": []}')
    for name, message in (
        ("missing.json", "cannot read it"),
        ("bad.json", "not a JSON file"),
        ("other.json", "not a benchmark results.json .no list 'instances'."),
    ):
        with pytest.raises(ValueError, match=f"{name}: {message}") as info:
            summarize_results([tmp_path / name], tmp_path / "out")
        assert "\n" not in str(info.value)


def test_instances_not_yet_run_are_left_out():
    data = synthetic()
    data["instances"].append({"name": "later", "num_variables": 5, "best_known": None})
    summary = build_summary([data])
    assert [i.name for i in summary.instances] == ["p_1", "p_2", "p_3"]
    assert summary.profile()["sol_B"] == pytest.approx(RATIOS["sol_B"])


def test_end_to_end_bench_writes_a_summary_that_agrees_with_results_json(tmp_path):
    instances = collect_instances([REPO / "examples" / "instances" / "bqp50.txt"])[:2]
    out = tmp_path / "bench"
    run_benchmark(
        instances,
        ["neal", "tabu"],
        seeds=(0, 1),
        time_limit=0.3,
        target_fractions=(0.995, 1.0),
        progress=False,
        out_dir=out,
        warmup=False,
    )
    for name in ("summary.csv", "summary.tex", "profile.png"):
        assert (out / name).stat().st_size > 0, name
    data = json.loads((out / "results.json").read_text())
    rows = _read_csv(out / "summary.csv")
    references = {i["name"]: i["reference"] for i in data["instances"]}
    assert set(rows) == {(i.name, s) for i in instances for s in ("neal", "tabu")}
    for entry in data["summary"]:
        row = rows[(entry["instance"], entry["solver"])]
        target = entry["targets"]["1.0"]
        assert int(row["seeds"]) == entry["runs"] == 2
        assert int(row["successes"]) == target["successes"]
        median = row["median_time_to_target_s"]
        assert (float(median) if median else None) == target["median_time"]
        assert float(row["reference"]) == references[entry["instance"]]
        assert float(row["target_fraction"]) == 1.0
        runs = [
            r
            for r in data["runs"]
            if (r["instance"], r["solver"]) == (entry["instance"], entry["solver"])
        ]
        assert float(row["best_objective"]) == max(r["best_objective"] for r in runs)
        per_seed = sorted(r["time_to_target"]["1.0"] for r in runs if r["time_to_target"]["1.0"])
        assert len(per_seed) == int(row["successes"])
    tex = (out / "summary.tex").read_text()
    assert tex.count(r"\\") == 1 + 4 and r"\bottomrule" in tex
    # the script pools folders into another one
    script = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks/solvers/summary.py"),
            str(out),
            "--out",
            str(tmp_path / "again"),
            "--no-plot",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert script.returncode == 0, script.stderr
    assert (tmp_path / "again" / "summary.csv").read_text() == (out / "summary.csv").read_text()
    assert not (tmp_path / "again" / "profile.png").exists()
    bad = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks/solvers/summary.py"),
            str(tmp_path / "nothing"),
            "--out",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "cannot read" in bad.stderr
