"""The solver benchmark harness: instances, time to target, outputs, interrupts, CLI."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import dimod
import numpy as np
import pytest

from ising_qubo.bench import (
    BenchInstance,
    BenchmarkResult,
    collect_instances,
    run_benchmark,
    target_value,
    time_to_target,
)
from ising_qubo.cli import app as cli
from ising_qubo.cli.bench import parse_params
from ising_qubo.solvers.neal import NealSampler

REPO = Path(__file__).resolve().parents[1]

# Two 6-variable OR-Library instances (i <= j, 1-based) and a 9-node rudy graph.
BQP_TEXT = """2
6 9
1 1 5
1 2 -3
2 2 4
2 3 6
3 4 -2
4 4 3
4 5 -7
5 6 4
6 6 -1
6 6
1 3 -4
2 2 8
2 5 5
3 3 2
4 6 -6
5 5 1
"""
GSET_TEXT = """9 14
1 2 1
1 3 1
2 3 1
2 4 1
3 5 1
4 5 1
4 6 1
5 7 1
6 7 1
6 8 1
7 9 1
8 9 1
1 9 1
3 8 1
"""


@pytest.fixture()
def tiny_files(tmp_path: Path) -> tuple[Path, Path]:
    bqp = tmp_path / "tiny.bqp"
    bqp.write_text(BQP_TEXT)
    gset = tmp_path / "tiny.gset"
    gset.write_text(GSET_TEXT)
    return bqp, gset


def _optimum_objective(instance: BenchInstance) -> float:
    energy = dimod.ExactSolver().sample(instance.bqm).first.energy
    return float(instance.objective(energy))


def test_end_to_end_outputs_and_consistency(tiny_files, tmp_path):
    bqp, gset = tiny_files
    instances = collect_instances([bqp, gset, "sk:16"])
    assert [i.name for i in instances] == ["tiny-1", "tiny-2", "tiny", "sk16_s0"]
    out = tmp_path / "out"
    result = run_benchmark(
        instances,
        ["neal", "exact", "cpsat"],
        seeds=(0, 1),
        time_limit=1.0,
        target_fractions=(0.995, 1.0),
        progress=False,
        out_dir=out,
    )
    for name in ("results.json", "table.md", "trajectories.png"):
        assert (out / name).stat().st_size > 0, name
    data = json.loads((out / "results.json").read_text())
    assert data["interrupted"] is False
    assert data["machine"]["cpu_count"] >= 1 and "torch_version" in data["machine"]
    assert "cuda_device" in data["machine"] and data["machine"]["date"]
    by_name = {i.name: i for i in instances}
    optimum = {name: _optimum_objective(inst) for name, inst in by_name.items()}
    assert len(data["runs"]) == len(instances) * 2 * 3
    for run in data["runs"]:
        inst = by_name[run["instance"]]
        assert run["complete"] and run["error"] is None, run
        sample = dict(zip(inst.bqm.variables, run["best_sample"], strict=True))
        energy = inst.bqm.energy(sample)
        assert run["best_energy"] == pytest.approx(energy, abs=1e-9)
        assert run["best_objective"] == pytest.approx(inst.objective(energy), abs=1e-9)
        assert run["best_objective"] <= optimum[inst.name] + 1e-9  # objectives are maximised
        times = run["time_to_target"]
        t_near, t_exact = times["0.995"], times["1.0"]
        if t_exact is not None:
            assert t_near is not None and t_near <= t_exact
        trajectory = run["trajectory"]
        assert all(a[0] <= b[0] and a[1] <= b[1] for a, b in pairwise(trajectory))
        assert trajectory[-1][1] == run["best_objective"]
        # exact always, CP-SAT whenever it proves optimality (always on the integer files;
        # the real-valued sk16 can take CP-SAT longer than the limit on a busy machine).
        if run["solver"] == "exact" or run["status"] == "OPTIMAL":
            assert run["best_objective"] == pytest.approx(optimum[inst.name], abs=1e-9)
            assert t_exact is not None
        if run["solver"] == "cpsat" and not inst.name.startswith("sk"):
            assert run["status"] == "OPTIMAL"
    # No best-known values for these: the reference is the best any solver found (the optimum).
    for entry in data["instances"]:
        assert entry["best_known"] is None and entry["reference_source"] == "best found"
        assert entry["reference"] == pytest.approx(optimum[entry["name"]])
    table = (out / "table.md").read_text()
    assert "×neal" in table and all(f"## {name}" in table for name in by_name)
    summary = {(row["instance"], row["solver"]): row for row in result.summary()}
    for name in by_name:
        assert summary[(name, "exact")]["targets"]["1.0"]["successes"] == 2
        assert summary[(name, "neal")]["targets"]["1.0"]["ratio_to_neal"] in (1.0, None)


def test_sk_spec_is_deterministic():
    (a,) = collect_instances(["sk:32:7"])
    (b,) = collect_instances(["sk:32:7"])
    (c,) = collect_instances(["sk:32"])
    assert a.bqm.num_variables == 32 and a.bqm.vartype is dimod.SPIN
    assert a.bqm.num_interactions == 32 * 31 // 2 and not any(a.bqm.linear.values())
    assert a.bqm == b.bqm and a.bqm != c.bqm
    assert a.name == "sk32_s7" and c.name == "sk32_s0" and a.best_known is None
    assert a.objective(-3.5) == 3.5 and a.sense == "max"


def test_named_sets_get_best_known(shared_bench):
    instances = collect_instances(["bqp50"], bench_dir=shared_bench)
    table = json.loads((shared_bench / "best_known.json").read_text())
    assert len(instances) == 10
    assert [i.name for i in instances] == [f"bqp50-{k}" for k in range(1, 11)]
    assert [i.best_known for i in instances] == table["beasley"]["bqp50"]
    assert all(i.bqm.num_variables == 50 and i.objective_name == "bqp objective" for i in instances)
    picked = collect_instances(["bqp50:3", "gset:G14"], bench_dir=shared_bench)
    assert [(i.name, i.best_known) for i in picked] == [
        ("bqp50-3", table["beasley"]["bqp50"][2]),
        ("G14", table["gset"]["G14"]),
    ]
    assert picked[1].objective_name == "cut"


@pytest.mark.parametrize(
    "spec", ["nonsense", "sk:", "sk:1", "sk:12:x", "bqp50:11", "gset:G99", "bqp77"]
)
def test_bad_specs_raise_naming_the_spec(spec, tmp_path):
    bench_dir = tmp_path / "bench"  # an empty bench dir: named sets are missing too
    with pytest.raises(ValueError, match=spec.split(":")[0]):
        collect_instances([spec], bench_dir=bench_dir)


def test_directory_skips_unreadable_files(tiny_files, tmp_path):
    (tmp_path / "notes.md").write_text("not a problem\n")
    (tmp_path / "broken.coo").write_text("0 1 x\n")
    warnings: list[str] = []
    instances = collect_instances([tmp_path], warn=warnings.append)
    assert [i.name for i in instances] == ["tiny-1", "tiny-2", "tiny"]  # file name order
    assert len(warnings) == 2 and all(w.startswith("warning: skipping") for w in warnings)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no readable"):
        collect_instances([empty], warn=warnings.append)


class InterruptingSampler(dimod.Sampler):
    """Neal, except that the ``interrupt_on``-th call raises KeyboardInterrupt."""

    parameters = {"seed": [], "num_reads": [], "num_sweeps": []}
    properties: dict = {}

    def __init__(self, interrupt_on: int = 2) -> None:
        self.calls = 0
        self.interrupt_on = interrupt_on

    def sample(self, bqm, **params):
        self.calls += 1
        if self.calls == self.interrupt_on:
            raise KeyboardInterrupt
        return NealSampler().sample(bqm, num_reads=1, num_sweeps=50, seed=params.get("seed"))


def test_keyboard_interrupt_keeps_results(tmp_path):
    flaky = InterruptingSampler(interrupt_on=2)
    instances = collect_instances(["sk:10", "sk:12"])
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(
            instances,
            {"flaky": flaky, "exact": "exact"},
            seeds=(0, 1),
            time_limit=0.3,
            progress=False,
            out_dir=tmp_path,
            warmup=False,
            params={"flaky": {"single_call": True}},
        )
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["interrupted"] is True
    # seed 0: flaky (call 1) and exact finished; seed 1 (order turned): exact finished,
    # then flaky interrupted on call 2.
    assert [(r["solver"], r["seed"], r["complete"]) for r in data["runs"]] == [
        ("flaky", 0, True),
        ("exact", 0, True),
        ("exact", 1, True),
        ("flaky", 1, False),
    ]
    assert data["runs"][0]["best_objective"] is not None
    assert "INTERRUPTED" in (tmp_path / "table.md").read_text()


def test_cli_interrupt_exit_code_130(tmp_path, monkeypatch):
    calls = {"n": 0}
    original = NealSampler.sample

    def sample(self, bqm, **params):
        calls["n"] += 1
        if calls["n"] == 3:  # 1: warm-up, 2: first round
            raise KeyboardInterrupt
        return original(self, bqm, **params)

    monkeypatch.setattr(NealSampler, "sample", sample)
    code = cli.main(
        [
            "bench",
            "sk:10",
            "--solvers",
            "neal",
            "--seeds",
            "1",
            "--time-limit",
            "5",
            "--out",
            str(tmp_path),
            "--no-progress",
            "--no-plot",
        ]
    )
    assert code == cli.EXIT_INTERRUPTED
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["interrupted"] is True and data["runs"][0]["rounds"] == 1


def test_time_to_target_handles_signs():
    # maximised objective with a negative reference (e.g. -energy of a frustrated problem)
    assert target_value(-100.0, 0.99, "max") == pytest.approx(-101.0)
    assert target_value(200.0, 0.995, "max") == pytest.approx(199.0)
    assert target_value(-50.0, 0.9, "min") == pytest.approx(-45.0)
    trajectory = [[0.1, -120.0], [0.5, -100.5], [2.0, -100.0]]
    assert time_to_target(trajectory, -100.0, 0.99, "max") == 0.5
    assert time_to_target(trajectory, -100.0, 1.0, "max") == 2.0
    assert time_to_target(trajectory[:2], -100.0, 1.0, "max") is None
    assert time_to_target(trajectory, None, 1.0, "max") is None
    assert time_to_target([[1.0, -44.0], [3.0, -50.0]], -50.0, 0.9, "min") == 3.0


def test_params_and_solver_validation():
    assert parse_params(
        ["neal:num_reads=4", "torch-sa:device=cuda", "neal:beta_range=[0.1, 5]"]
    ) == {"neal": {"num_reads": 4, "beta_range": [0.1, 5]}, "torch-sa": {"device": "cuda"}}
    with pytest.raises(ValueError, match="SOLVER:KEY=VALUE"):
        parse_params(["num_reads=4"])
    instances = collect_instances(["sk:6"])
    with pytest.raises(ValueError, match="nosuch"):
        run_benchmark(instances, ["neal", "nosuch"], progress=False)
    with pytest.raises(ValueError, match="no parameter 'bogus'"):
        run_benchmark(instances, ["neal"], params={"neal": {"bogus": 1}}, progress=False)
    with pytest.raises(ValueError, match="not in the run"):
        run_benchmark(instances, ["neal"], params={"tabu": {"num_reads": 1}}, progress=False)
    with pytest.raises(ValueError, match="target"):
        run_benchmark(instances, ["neal"], target_fractions=(1.5,), progress=False)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ising_qubo.cli", "bench", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def test_cli_subprocess(tiny_files, tmp_path):
    bqp, _ = tiny_files
    out = tmp_path / "cli-out"
    done = _cli(
        str(bqp),
        "sk:12",
        "--solvers",
        "neal,exact",
        "--seeds",
        "1",
        "--time-limit",
        "0.3",
        "--targets",
        "0.99,1",
        "--out",
        str(out),
        "--no-progress",
        "--param",
        "neal:num_sweeps=200",
    )
    assert done.returncode == 0, done.stderr
    assert "## sk12_s0" in done.stdout and "t 99% (s)" in done.stdout
    for name in ("results.json", "table.md", "trajectories.png"):
        assert (out / name).is_file(), name
    data = json.loads((out / "results.json").read_text())
    assert data["settings"]["solvers"]["neal"]["params"]["num_sweeps"] == 200
    assert data["settings"]["target_fractions"] == [0.99, 1.0]
    assert all(not math.isnan(r["best_objective"]) for r in data["runs"])

    bad = _cli("sk:8", "--solvers", "neal,nosuch", "--out", str(tmp_path / "bad"))
    assert bad.returncode == 2
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and "nosuch" in lines[0]
    assert not (tmp_path / "bad").exists()

    bad_spec = _cli("sk:oops", "--solvers", "neal", "--out", str(tmp_path / "bad"))
    assert bad_spec.returncode == 2 and "sk:oops" in bad_spec.stderr
    assert len(bad_spec.stderr.strip().splitlines()) == 1


def test_sense_min_instance_and_best_known_early_stop(tmp_path):
    bqm = dimod.BinaryQuadraticModel({0: 1.0, 1: -2.0}, {(0, 1): 0.5}, 0.0, "BINARY")
    best = float(dimod.ExactSolver().sample(bqm).first.energy)
    inst = BenchInstance(
        "energy-min", bqm, best_known=best, objective=float, sense="min", objective_name="energy"
    )
    result = run_benchmark(
        [inst], ["neal"], seeds=(0,), time_limit=5.0, progress=False, out_dir=tmp_path, plot=False
    )
    (run,) = result.runs
    assert run.best_objective == best
    # stopped on reaching the best-known value: a few ms of work on 2 variables, far under
    # 1 s even at a 20-fold slowdown, and 1 s is far under the 5 s it would run otherwise
    assert run.elapsed < 1.0
    assert result.run_times(run)["1.0"] is not None
    assert np.isclose(result.summary()[0]["gap_percent"], 0.0)


def test_results_json_names_non_finite_numbers_and_reads_back(tmp_path):
    from ising_qubo.io.jsonvalues import read_float

    result = run_benchmark(
        ["sk:6"],
        ["exact"],
        seeds=(0,),
        time_limit=1.0,
        progress=False,
        out_dir=tmp_path,
        plot=False,
        warmup=False,
    )
    (run,) = result.runs
    run.energy_mismatch = math.inf  # a solver whose reported energy overflowed, say
    run.trajectory.append([np.float32(2.0), np.float64(-np.inf)])
    result.write(tmp_path)
    text = (tmp_path / "results.json").read_text()
    data = json.loads(text, parse_constant=lambda name: pytest.fail(f"JSON literal {name}"))
    (saved,) = data["runs"]
    assert saved["energy_mismatch"] == "inf"
    assert saved["trajectory"][-1] == [2.0, "-inf"]
    assert data["summary"][0]["max_energy_mismatch"] == "inf"
    assert read_float(saved["trajectory"][-1][1]) == -math.inf
    assert read_float(saved["best_objective"]) == run.best_objective


def test_write_without_any_out_dir_is_a_value_error(tmp_path):
    # a result built by hand has no out_dir: write() once passed None to Path (TypeError)
    result = BenchmarkResult(instances=[], solvers=[], seeds=[0], time_limit=1.0, targets=[1.0])
    with pytest.raises(ValueError, match="no out_dir given and the result has none"):
        result.write()
    assert result.write(tmp_path / "out") == tmp_path / "out"
    assert json.loads((tmp_path / "out" / "results.json").read_text())["runs"] == []


def test_grow_override_sets_the_anneal_length_per_round():
    from ising_qubo.bench.runner import plan_solvers

    [default] = plan_solvers(["neal"])
    assert [default.call_params(0, r, 10.0)["num_sweeps"] for r in range(3)] == [1000, 1500, 2250]
    [fixed] = plan_solvers(["neal"], {"neal": {"grow": 1, "num_sweeps": 4000}})
    assert [fixed.call_params(0, r, 10.0)["num_sweeps"] for r in range(4)] == [4000] * 4
    assert "every round the same" in fixed.about
    [doubling] = plan_solvers(["neal"], {"neal": {"grow": "2"}})
    assert [doubling.call_params(0, r, 10.0)["num_sweeps"] for r in range(3)] == [1000, 2000, 4000]
    assert doubling.call_params(0, 10, 10.0)["num_sweeps"] == 32_000  # the cap stays
    for bad in (0.5, "fast", float("nan")):
        with pytest.raises(ValueError, match="grow must be a factor >= 1"):
            plan_solvers(["neal"], {"neal": {"grow": bad}})
    with pytest.raises(ValueError, match="its rounds do not grow; grow applies to neal"):
        plan_solvers(["greedy"], {"greedy": {"grow": 1}})


# ------------------------------------------------ installed-package behaviour: where files go


def _tiny_bench_dir(root: Path) -> Path:
    """A bench folder of our own: ``beasley/bqp50.txt`` holding the two 6-variable problems."""
    (root / "beasley").mkdir(parents=True)
    (root / "beasley" / "bqp50.txt").write_text(BQP_TEXT)
    return root


def test_results_default_to_the_working_directory(tmp_path, monkeypatch, capsys):
    from ising_qubo.bench.runner import default_out_dir

    monkeypatch.chdir(tmp_path)
    first = default_out_dir()
    assert first.parent == tmp_path / "bench-results"  # not <package>/../benchmarks/results
    first.mkdir(parents=True)
    assert default_out_dir() == first.with_name(first.name + "-2")  # no overwrite

    argv = ["bench", "sk:8", "--solvers", "neal", "--seeds", "1", "--time-limit", "0.2"]
    assert cli.main([*argv, "--no-progress", "--no-plot", "--quiet"]) == 0
    written = sorted((tmp_path / "bench-results").glob("*/results.json"))
    assert len(written) == 1
    assert f"wrote {written[0].parent}/results.json" in capsys.readouterr().out
    assert json.loads(written[0].read_text())["runs"][0]["instance"] == "sk8_s0"


def test_instance_folder_from_argument_environment_or_checkout(tmp_path, monkeypatch):
    from ising_qubo.bench import instances as module

    ours = _tiny_bench_dir(tmp_path / "ours")
    other = _tiny_bench_dir(tmp_path / "other")
    monkeypatch.setenv("ISING_QUBO_BENCH_DIR", str(ours))
    picked = collect_instances(["bqp50:2"])
    assert picked[0].source == f"{ours / 'beasley' / 'bqp50.txt'}#2"
    assert picked[0].bqm.num_variables == 6
    # the argument beats the variable
    assert collect_instances(["bqp50:1"], bench_dir=other)[0].source.startswith(str(other))

    # no variable: the checkout's ../shared/bench; no checkout either (an installed wheel):
    # named sets fail with one line naming the flag and the variable, the rest still works
    monkeypatch.setenv("ISING_QUBO_BENCH_DIR", "")
    assert (
        module.default_bench_dir() == module.DEFAULT_BENCH_DIR == REPO.parent / "shared" / "bench"
    )
    monkeypatch.setattr(module, "DEFAULT_BENCH_DIR", None)
    assert module.default_bench_dir() is None
    for spec in ("gset:G1", "bqp50", "bqp250:3"):
        with pytest.raises(ValueError, match="--instances-dir DIR or set ISING_QUBO_BENCH_DIR"):
            collect_instances([spec])
    assert collect_instances(["sk:5"])[0].bqm.num_variables == 5


def test_instances_dir_flag_and_its_old_name(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("ISING_QUBO_BENCH_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    bench = _tiny_bench_dir(tmp_path / "mine")
    argv = ["bench", "bqp50:1", "--solvers", "neal", "--seeds", "1", "--time-limit", "0.2"]
    quiet = ["--no-progress", "--no-plot", "--quiet"]
    for flag in ("--instances-dir", "--bench-dir"):
        out = tmp_path / flag.strip("-")
        assert cli.main([*argv, flag, str(bench), "--out", str(out), *quiet]) == 0
        data = json.loads((out / "results.json").read_text())
        assert data["instances"][0]["source"] == f"{bench / 'beasley' / 'bqp50.txt'}#1"
    assert cli.main([*argv, "--instances-dir", str(tmp_path / "none"), *quiet]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--instances-dir or ISING_QUBO_BENCH_DIR" in err[0]


def test_source_checkout_is_detected_by_its_pyproject(tmp_path, monkeypatch):
    from ising_qubo.bench import instances as module

    assert module.source_checkout() == REPO
    assert module.REPO_ROOT == REPO
    for layout, pyproject in (
        ("lib/python3.11/site-packages", None),  # an installed wheel
        ("elsewhere", 'name = "another-project"\n'),
        ("checkout", '[project]\nname = "ising-qubo"\nversion = "0"\n'),
    ):
        root = tmp_path / layout
        (root / "ising_qubo" / "bench").mkdir(parents=True)
        if pyproject is not None:
            (root / "pyproject.toml").write_text(pyproject)
        monkeypatch.setattr(module, "__file__", str(root / "ising_qubo/bench/instances.py"))
        assert module.source_checkout() == (root if layout == "checkout" else None)


def test_progress_bar_only_on_a_terminal(tmp_path, capsys, monkeypatch):
    """Without --no-progress the bar is drawn only when stderr is a terminal: a benchmark
    logged to a file gets no redrawn bars in it; run_benchmark(progress=True) insists."""
    args = ["bench", "sk:8", "--solvers", "neal", "--seeds", "1", "--time-limit", "0.2"]
    # not --quiet here: it hides the bar on a terminal too
    assert cli.main([*args, "--out", str(tmp_path / "a"), "--no-plot"]) == 0
    err = capsys.readouterr().err
    assert "bench:" not in err and "run/s" not in err
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert cli.main([*args, "--out", str(tmp_path / "b"), "--no-plot"]) == 0
    assert "bench" in capsys.readouterr().err  # tqdm's "bench: 100%|..." line


def test_bench_of_torch_free_solvers_does_not_import_torch(tmp_path):
    """Describing the machine must not load torch (seconds and hundreds of MB) in a run
    whose solvers do not use it; the CUDA device is then recorded as not probed."""
    out = tmp_path / "run"
    problem = str(Path(__file__).resolve().parents[1] / "examples" / "instances" / "bqp50.txt")
    code = (
        "import sys\n"
        "from ising_qubo.cli.app import main\n"
        f"code = main(['bench', {problem!r}, "
        "'--instance', '1', '--solvers', 'neal,tabu', '--seeds', '1', '--time-limit', '0.2', "
        f"'--no-plot', '--quiet', '--out', {str(out)!r}])\n"
        "assert code == 0, code\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False"
    machine = json.loads((out / "results.json").read_text())["machine"]
    assert machine["cuda_probed"] is False and machine["cuda_device"] is None
    assert "torch_threads" not in machine


def test_machine_info_describes_torch_once_a_solver_loaded_it():
    import torch

    from ising_qubo.bench.report import machine_info

    info = machine_info()
    assert info["torch_threads"] == torch.get_num_threads()
    assert "cuda_probed" not in info


def test_torch_sa_rounds_widen_to_one_replica_per_core_once_rounds_are_long():
    # one replica while a round is predicted shorter than the kernel's parallel threshold
    # (it would run on one thread), one per core from the first round predicted longer
    from ising_qubo.bench.runner import plan_solvers
    from ising_qubo.solvers.kernel_threads import PARALLEL_MIN_SECONDS

    [plan] = plan_solvers(["torch-sa"])
    _, wide, seconds = plan.widen
    assert seconds == PARALLEL_MIN_SECONDS and wide == (os.cpu_count() or 1)
    first = plan.call_params(0, 0, 10.0)
    assert first["num_reads"] == 1 and first["num_sweeps"] == 1000
    # 1000 sweeps took 0.02 s: 1500 sweeps predicted 0.03 s, still one replica
    second = plan.call_params(0, 1, 10.0, (first, 0.02))
    assert second["num_reads"] == 1 and second["num_sweeps"] == 1500
    # 1500 sweeps took 0.04 s: 2250 sweeps predicted 0.06 s >= 0.05 s, one per core
    third = plan.call_params(0, 2, 10.0, (second, 0.04))
    assert third["num_reads"] == wide
    # the prediction is per replica-sweep: a wide round stays wide
    assert plan.call_params(0, 3, 10.0, (third, 0.06 * wide))["num_reads"] == wide
    assert "widen" in plan.describe() and "one per CPU core" in plan.about
    # a user's num_reads holds in every round
    [fixed] = plan_solvers(["torch-sa"], {"torch-sa": {"num_reads": 8}})
    assert fixed.widen is None and "num_reads=8 per round (--param)" in fixed.about
    assert fixed.call_params(0, 5, 10.0, (fixed.call_params(0, 4, 10.0), 5.0))["num_reads"] == 8
    # solvers without the rule keep their replicas whatever the rounds take
    [neal] = plan_solvers(["neal"])
    assert neal.call_params(0, 4, 10.0, (neal.call_params(0, 3, 10.0), 9.0))["num_reads"] == 1


def test_the_solver_order_turns_by_one_place_per_seed(tmp_path):
    # each solver runs first, second, ... equally often (a loaded machine slows the round
    # right after a long run), and every (instance, solver, seed) still runs exactly once
    from ising_qubo.bench.runner import rotated

    assert rotated([], 3) == []
    assert rotated(["a", "b", "c"], 0) == ["a", "b", "c"]
    assert rotated(["a", "b", "c"], 4) == ["b", "c", "a"]
    instance = BenchInstance("tiny", dimod.generators.ran_r(1, 8, seed=1))
    result = run_benchmark(
        [instance], ["greedy", "neal"], seeds=[0, 1, 2], time_limit=0.05, target_fractions=[1.0],
        out_dir=tmp_path, progress=False, plot=False,
    )  # fmt: skip
    order = [(r.seed, r.solver) for r in result.runs]
    assert order == [
        (0, "greedy"),
        (0, "neal"),
        (1, "neal"),
        (1, "greedy"),
        (2, "greedy"),
        (2, "neal"),
    ]
    assert "solver order turned by one place per seed" in (tmp_path / "table.md").read_text()
