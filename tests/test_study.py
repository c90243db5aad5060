"""The resumable pruning-study driver (benchmarks/pruning/study.py): a tiny study end to
end on the image-folder fixture (runs, skips, redoes exactly what is missing), the paired
t-interval against independent computations, and the plan and report it writes."""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks" / "pruning"))

import report as study_report  # noqa: E402
import study  # noqa: E402
import study_protocol  # noqa: E402
import study_solvers  # noqa: E402
import study_stats  # noqa: E402

PRIMARY = "ising-global-taylor"
BASELINE = "tp-global-taylor"


def tiny_protocol(image_folder: Path) -> dict:
    """One seed, two methods, one curve point, one epoch each, tiny batches."""
    return {
        "seeds": [0],
        "methods": [PRIMARY, BASELINE],
        "primary": PRIMARY,
        "curve": {"methods": [BASELINE], "keeps": [0.7], "seeds": [0]},
        "datasets": {
            "tiny": {
                "dataset": "imagefolder",
                "default_dir": str(image_folder),
                "train_subset": None,
                "test_subset": None,
                "val_size": 8,
                "input_shape": [3, 32, 32],
                "train_size": 96,
                "test_size": 32,
                "dense_epochs": 1,
                "finetune_epochs": 1,
            }
        },
        "dense": {"batch_size": 32},
        "finetune": {"batch_size": 32},
        "selection": {"calibration_size": 32},
        "latency": {"batch": 2, "repeats": 2},
        "threads": {"steps": 1, "batch": 4},
        "device": "cpu",
        "goals": {"max_loss": {"tiny": 5.0}, "dense_min_top1": {"tiny": 30.0}},
    }


EXPECTED_RUNS = [
    "dense-seed0",
    f"{PRIMARY}-keep0.50-seed0",
    f"{BASELINE}-keep0.50-seed0",
    f"{BASELINE}-keep0.70-seed0",
]


@pytest.fixture(scope="module")
def tiny_study(image_folder, tmp_path_factory):
    """The tiny study run once (the tests below read it; the rerun test copies nothing
    and runs last in the module's order of use, so it may rewrite one run)."""
    import torch

    threads = torch.get_num_threads()
    out = tmp_path_factory.mktemp("study")
    protocol = json.dumps(tiny_protocol(image_folder))
    try:
        assert study.main(["run", "--out", str(out), "--protocol", protocol]) == 0
    finally:
        torch.set_num_threads(threads)
    return out, protocol


def _mtimes(out: Path) -> dict[str, int]:
    return {
        name: (out / "tiny" / name / "result.json").stat().st_mtime_ns for name in EXPECTED_RUNS
    }


def test_runs_are_directories_with_config_and_result(tiny_study):
    out, _ = tiny_study
    assert sorted(p.name for p in (out / "tiny").iterdir()) == sorted(EXPECTED_RUNS)
    threads = json.loads((out / "threads.json").read_text())
    assert set(threads["seconds_per_step"]) == {"1", "2"}
    assert threads["chosen"] == int(
        min(threads["seconds_per_step"], key=threads["seconds_per_step"].get)
    )
    dense = json.loads((out / "tiny" / "dense-seed0" / "result.json").read_text())
    for name in EXPECTED_RUNS[1:]:
        folder = out / "tiny" / name
        config = json.loads((folder / "config.json").read_text())["pipeline"]
        result = json.loads((folder / "result.json").read_text())
        # the protocol: from the dense model, no pre-pruning training, the same fine-tuning
        assert config["checkpoint"].endswith("dense-seed0/pipeline/model")
        assert config["epochs"] == 0 and config["finetune_epochs"] == 1
        assert config["lr"] == config["finetune_lr"] == 0.01
        # the dense model's accuracy seen by the pruned run is the dense run's own
        assert result["dense_top1"] == pytest.approx(dense["top1"])
        assert result["params_dense"] == dense["params"]
        assert result["params"] < dense["params"]
        assert result["budget"]["met"] == pytest.approx(result["params"] / dense["params"])
        assert result["budget"]["met"] <= result["keep"] + 1e-9
        kept = result["kept_by_group"]
        assert kept and all(0 < k <= n for k, n in kept.values())
        assert result["latency"]["ratio"] > 0
        assert result["selection_seconds"] is not None
    primary = json.loads((out / "tiny" / EXPECTED_RUNS[1] / "config.json").read_text())
    assert primary["pipeline"]["budget"] == "global" and primary["pipeline"]["energy"] == "taylor"


def test_finished_runs_are_skipped_and_a_missing_result_is_redone(tiny_study):
    out, protocol = tiny_study
    import torch

    threads = torch.get_num_threads()
    try:
        before = _mtimes(out)
        assert study.main(["run", "--out", str(out), "--protocol", protocol]) == 0
        assert _mtimes(out) == before  # nothing ran again

        redo = out / "tiny" / EXPECTED_RUNS[2]
        (redo / "result.json").unlink()
        pipeline_report = (redo / "pipeline" / "report.json").stat().st_mtime_ns
        # --resume: the pipeline had finished, so its report is used, nothing retrained
        assert study.main(["run", "--out", str(out), "--protocol", protocol, "--resume"]) == 0
        assert (redo / "pipeline" / "report.json").stat().st_mtime_ns == pipeline_report
        after = _mtimes(out)
        assert [n for n in EXPECTED_RUNS if after[n] != before[n]] == [EXPECTED_RUNS[2]]

        # without --resume the run restarts from scratch (its pipeline runs again)
        (redo / "result.json").unlink()
        assert study.main(["run", "--out", str(out), "--protocol", protocol]) == 0
        assert (redo / "pipeline" / "report.json").stat().st_mtime_ns != pipeline_report
        again = _mtimes(out)
        assert [n for n in EXPECTED_RUNS if again[n] != after[n]] == [EXPECTED_RUNS[2]]

        # interrupted after its last checkpoint (no report, no model): --resume continues
        # the pipeline from that checkpoint and ends with the same model
        finished = json.loads((redo / "result.json").read_text())
        for name in ("result.json", "pipeline/report.json"):
            (redo / name).unlink()
        shutil.rmtree(redo / "pipeline" / "model")
        assert study.main(["run", "--out", str(out), "--protocol", protocol, "--resume"]) == 0
        resumed = json.loads((redo / "result.json").read_text())
        assert resumed["resumed"] is True and finished["resumed"] is False
        for key in ("top1", "top5", "params", "macs", "kept_by_group"):
            assert resumed[key] == finished[key], key
    finally:
        torch.set_num_threads(threads)


def test_another_protocol_is_refused_in_the_same_directory(tiny_study):
    out, protocol = tiny_study
    changed = json.loads(protocol)
    changed["finetune"]["lr"] = 0.02
    with pytest.raises(ValueError, match="another protocol.*finetune"):
        study.main(["run", "--out", str(out), "--protocol", json.dumps(changed)])


def test_plan_and_report_write_their_files_and_mark_the_goals(tiny_study, tmp_path):
    out, protocol = tiny_study
    assert study.main(["plan", "--out", str(out)]) == 0
    plan = (out / "plan.md").read_text()
    for name in EXPECTED_RUNS:
        assert f"| tiny/{name} | done |" in plan
    assert "time left: about 0.0 h" in plan

    assert study.main(["report", "--out", str(out)]) == 0
    markdown = (out / "results.md").read_text()
    assert (out / "figures" / "accuracy_vs_pruned.png").stat().st_size > 0
    assert (out / "figures" / "allocation_tiny.png").stat().st_size > 0
    # goal 1, checked against the results themselves
    dense = json.loads((out / "tiny" / "dense-seed0" / "result.json").read_text())
    primary = json.loads((out / "tiny" / EXPECTED_RUNS[1] / "result.json").read_text())
    loss = dense["top1"] - primary["top1"]
    goal = next(line for line in markdown.splitlines() if "loses at most 5.0" in line)
    assert f"loss {loss:.2f} points" in goal
    assert ("**met**" in goal) == (loss <= 5.0)
    assert "**missed by" in goal or loss <= 5.0
    dense_goal = next(line for line in markdown.splitlines() if "at least 30%" in line)
    assert ("**met**" in dense_goal) == (dense["top1"] >= 30.0)
    # one seed: goal 2 has no interval, and says so
    goal2 = next(line for line in markdown.splitlines() if "beats the best" in line)
    assert "**not measured**" in goal2 and "1 paired seed" in goal2
    assert "What is and is not shown" in markdown


def test_goal_marks_follow_the_threshold(tiny_study, tmp_path):
    """The same results against a threshold just above and just below the measured loss."""
    out, _ = tiny_study
    protocol = study.load_protocol(out, None)
    results = [json.loads(p.read_text()) for p in out.glob("tiny/*/result.json")]
    data = study_report.DatasetResults("tiny", results)
    loss = next(r["dense_top1"] - r["top1"] for r in results if r["method"] == PRIMARY)
    for threshold, mark in ((loss + 0.01, "**met**"), (loss - 0.01, "**missed by 0.01")):
        protocol["goals"]["max_loss"]["tiny"] = threshold
        lines = study_report.goals(data, protocol, 0.5)
        assert mark in next(line for line in lines if "loses at most" in line)


def test_report_lists_missing_runs_and_copies_to_docs(tiny_study, tmp_path):
    out, _ = tiny_study
    protocol = study.load_protocol(out, None)
    protocol["seeds"] = [0, 1]  # seed 1 never ran
    runs = study.study_runs(out, protocol)
    results = {r.key: res for r in runs if (res := study.read_result(out, r)) is not None}
    states = {r.key: study.run_state(out, r) for r in runs}
    docs = tmp_path / "docs"
    markdown = study_report.write_report(out, protocol, runs, results, states, None, docs)
    text = markdown.read_text()
    assert "dense-seed1 (todo)" in text and f"{PRIMARY}-keep0.50-seed1 (todo)" in text
    assert "(missing [1])" in text
    assert (docs / "results.md").read_text() == text
    assert (docs / "figures" / "allocation_tiny.png").exists()


def test_paired_interval_against_hand_computation_and_scipy():
    a = {0: 3.0, 1: 5.0, 2: 4.0, 3: 8.0, 9: 100.0}  # seed 9 has no partner: left out
    b = {0: 2.0, 1: 3.0, 2: 1.0, 3: 4.0, 7: -5.0}
    interval = study_stats.paired_interval(a, b)
    # differences 1, 2, 3, 4: mean 2.5, sd sqrt(5/3), t_{0.975,3} = 3.182446
    half = 3.182446 * math.sqrt(5 / 3) / 2
    assert interval["n"] == 4 and interval["seeds"] == [0, 1, 2, 3]
    assert interval["mean"] == pytest.approx(2.5)
    assert interval["sd"] == pytest.approx(math.sqrt(5 / 3))
    assert interval["low"] == pytest.approx(2.5 - half, abs=1e-5)
    assert interval["high"] == pytest.approx(2.5 + half, abs=1e-5)
    assert interval["excludes_zero"] is True
    one = study_stats.paired_interval({0: 1.0}, {0: 0.5})
    assert one["n"] == 1 and one["mean"] == pytest.approx(0.5) and one["low"] is None

    scipy_stats = pytest.importorskip("scipy.stats")
    seeds = [0, 1, 2, 3]
    expected = scipy_stats.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds])
    ci = expected.confidence_interval(0.95)
    assert (interval["low"], interval["high"]) == pytest.approx((ci.low, ci.high))
    for df in range(1, 31):  # the fallback table is scipy's quantile
        assert study_stats.T_975[df - 1] == pytest.approx(scipy_stats.t.ppf(0.975, df), abs=1e-6)


def test_seeds_needed_is_the_first_n_whose_interval_excludes_zero():
    mean, sd = 1.0, 1.5
    n = study_report.seeds_needed(mean, sd)
    t = study_stats.t_quantile
    assert t(n - 1) * sd / math.sqrt(n) < mean <= t(n - 2) * sd / math.sqrt(n - 1)


def test_protocol_overrides_are_checked():
    with pytest.raises(ValueError, match="unknown protocol key 'epochs'"):
        study_protocol.protocol_with({"epochs": 3})
    with pytest.raises(ValueError, match="finetune.learning_rate"):
        study_protocol.protocol_with({"finetune": {"learning_rate": 0.1}})
    with pytest.raises(ValueError, match="selection.epochs must be 0"):
        study_protocol.protocol_with({"selection": {"epochs": 1}})
    with pytest.raises(ValueError, match="unknown study method 'l2'"):
        study_protocol.protocol_with({"methods": ["l2"]})
    # the constants stay as they are
    assert study_protocol.PROTOCOL["finetune"]["lr"] == 0.01
    default = study_protocol.protocol_with()
    runs = study_protocol.plan_runs(default, ["cifar10-jpeg"], default["seeds"])
    # 3 seeds x (dense + 7 methods) + 2 seeds x 2 budgets x 3 curve methods
    assert len(runs) == 3 * 8 + 2 * 2 * 3
    assert len({r.key for r in runs}) == len(runs)


def test_latency_retimes_every_finished_pruned_run_and_the_report_uses_it(tiny_study, tmp_path):
    out = tmp_path / "study"
    shutil.copytree(tiny_study[0], out)  # the shared fixture keeps its in-run figures
    with pytest.raises(ValueError, match="--repeats must be at least 1, got 0"):
        study.main(["latency", "--out", str(out), "--repeats", "0"])
    assert study.main(["latency", "--out", str(out), "--repeats", "3"]) == 0
    assert not (out / "tiny" / "dense-seed0" / study.QUIET_LATENCY).exists()
    quiet = {}
    for name in EXPECTED_RUNS[1:]:
        measured = json.loads((out / "tiny" / name / study.QUIET_LATENCY).read_text())
        assert measured["repeats"] == 3 and measured["dense_ms"] > 0 and measured["pruned_ms"] > 0
        assert measured["ratio"] == pytest.approx(measured["pruned_ms"] / measured["dense_ms"])
        assert "load_before_pass" in measured  # the load before the pass's own threads ran
        quiet[name] = measured["ratio"]
    assert study.main(["report", "--out", str(out)]) == 0
    markdown = (out / "results.md").read_text()
    row = next(line for line in markdown.splitlines() if line.startswith(f"| {PRIMARY} |"))
    latency_cell = row.split("|")[10].strip()  # | method | seeds | ... | CPU latency | ...
    assert latency_cell == f"{quiet[EXPECTED_RUNS[1]]:.2f} ± 0.00"
    assert "re-timed after the runs by `study.py latency`" in markdown
    assert "timed in the run's process" not in markdown  # every pruned run was re-timed


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["latency", "--repeats", "0"], "--repeats must be at least 1, got 0"),
        (["report", "--protocol", '{"epochs": 3}'], "unknown protocol key 'epochs'"),
    ],
)
def test_bad_options_are_one_line_errors_from_the_command_line(tmp_path, arguments, message):
    import subprocess

    command = [sys.executable, str(REPO / "benchmarks" / "pruning" / "study.py"), *arguments]
    done = subprocess.run(
        [*command, "--out", str(tmp_path / "empty-study")],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()  # one line, no traceback
    assert line.startswith(f"study.py: error: {message}")


def test_solvers_rebuild_the_runs_problem_and_count_differing_units(tiny_study):
    out, protocol = tiny_study
    args = ["solvers", "--out", str(out), "--protocol", protocol, "--solvers", "torch-sa,neal"]
    assert study.main(args) == 0
    record = json.loads((out / study_solvers.SOLVERS_FILE).read_text())
    case = record["cases"][f"tiny/{PRIMARY}-keep0.50-seed0"]
    # the rebuilt problem is the run's: torch-sa keeps what the run kept, group by group
    assert case["reproduces_run"] is True
    assert case["torch-sa"]["differ"] == 0
    for name in ("torch-sa", "neal"):
        row = case[name]
        assert row["kept"] == sum(row["kept_by_group"].values())
        assert abs(row["budget_met"] - 0.5) < 0.05
    if case["neal"]["differ"] == 0:  # the same masks, the same energy
        assert case["neal"]["energy"] == case["torch-sa"]["energy"]
    # a finished comparison is skipped; the study's own solver must come first
    assert study.main(args) == 0
    assert json.loads((out / study_solvers.SOLVERS_FILE).read_text()) == record
    with pytest.raises(ValueError, match="must start with the study's solver, torch-sa"):
        study.main(["solvers", "--out", str(out), "--protocol", protocol, "--solvers", "neal"])


def test_differing_units_counts_every_unit_kept_by_only_one_side():
    a = {"g1": np.array([1, 1, 0, 0], bool), "g2": np.array([1, 0], bool)}
    b = {"g1": np.array([1, 0, 1, 0], bool), "g2": np.array([0, 1], bool)}
    assert study_solvers.differing_units(a, b) == 4
    assert study_solvers.differing_units(a, a) == 0


def test_the_report_says_whether_other_solvers_select_other_units():
    protocol = {"selection": {"solver": "torch-sa"}, "keep": 0.5}
    same = {
        "solvers": ["torch-sa", "neal"],
        "cases": {
            "cifar/a": {"units": 448, "reproduces_run": True, "torch-sa": {"differ": 0},
                        "neal": {"differ": 0}},
        },
    }  # fmt: skip
    text = study_report.solvers_sentence("cifar", protocol, same)
    assert "solved by neal" in text and "0 of 448 units differ" in text
    assert "1 of them rebuilt" in text and "no solver rows" in text
    other = json.loads(json.dumps(same))
    other["cases"]["cifar/b"] = {"units": 448, "torch-sa": {"differ": 0}, "neal": {"differ": 7}}
    text = study_report.solvers_sentence("cifar", protocol, other)
    assert "other masks on 1 of 2 problems, at most 7 of 448 units (b)" in text
    assert "not measured" in study_report.solvers_sentence("fashion", protocol, same)
    assert "not measured" in study_report.solvers_sentence("cifar", protocol, None)
