"""The command line, run as a user would: a subprocess, exit codes, stdout/stderr."""

from __future__ import annotations

import json
import subprocess
import sys

import dimod
import pytest

from ising_qubo import io


def run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ising_qubo.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


@pytest.fixture()
def small_qubo(tmp_path):
    bqm = dimod.BinaryQuadraticModel(
        {0: -1.0, 1: 2.0, 2: -3.0}, {(0, 1): -4.0, (1, 2): 1.5}, 0.5, "BINARY"
    )
    path = tmp_path / "small.qubo"
    io.save(bqm, path)
    return bqm, path


def test_solvers_lists_every_builtin_and_cuda_visibility():
    result = run("solvers")
    assert result.returncode == 0, result.stderr
    for name in ["neal", "tabu", "greedy", "exact", "cpsat", "de", "torch-sa"]:
        assert any(line.startswith(name + " ") for line in result.stdout.splitlines())
    assert "CUDA" in result.stdout


def test_solve_prints_and_writes_json(small_qubo, tmp_path):
    bqm, path = small_qubo
    out = tmp_path / "result.json"
    result = run("solve", path, "--solver", "exact", "--json", out)
    assert result.returncode == 0, result.stderr
    optimum = dimod.ExactSolver().sample(bqm).first
    assert f"energy:     {optimum.energy:.10g}" in result.stdout
    assert "status:     OPTIMAL" in result.stdout
    data = json.loads(out.read_text())
    assert set(data) == {
        "solver",
        "energy",
        "objective",
        "status",
        "time_s",
        "num_variables",
        "sample",
        "interrupted",
    }
    assert data["interrupted"] is False
    assert data["energy"] == optimum.energy and data["num_variables"] == 3
    assert bqm.energy({int(k): v for k, v in data["sample"].items()}) == data["energy"]


def test_solve_bqp_instance_reports_literature_objective(shared_bench, tmp_path):
    out = tmp_path / "r.json"
    result = run(
        "solve",
        shared_bench / "beasley" / "bqp50.txt",
        "--instance",
        "1",
        "--solver",
        "cpsat",
        "--time-limit",
        "60",
        "--json",
        out,
    )
    assert result.returncode == 0, result.stderr
    assert "objective:  2098" in result.stdout
    assert json.loads(out.read_text())["objective"] == 2098


def test_solve_gset_reports_cut(shared_bench):
    result = run(
        "solve",
        shared_bench / "gset" / "G14.txt",
        "--solver",
        "neal",
        "--num-reads",
        "2",
        "--seed",
        "3",
        "--param",
        "num_sweeps=200",
    )
    assert result.returncode == 0, result.stderr
    cut = float(
        next(line for line in result.stdout.splitlines() if line.startswith("objective:")).split()[
            1
        ]
    )
    assert 2900 < cut <= 3064


def test_convert_and_info(small_qubo, tmp_path):
    bqm, path = small_qubo
    target = tmp_path / "small.json"
    result = run("convert", path, target)
    assert result.returncode == 0, result.stderr
    assert io.load(target) == bqm
    info = run("info", target)
    assert info.returncode == 0, info.stderr
    assert "3 variables, 2 interactions" in info.stdout
    assert "quadratic range [-4, 1.5]" in info.stdout


@pytest.mark.parametrize(
    "args,needle",
    [
        (["solve", "{bad}"], ":2:"),
        (["info", "{bad}"], ":2:"),
        (["convert", "{bad}", "{tmp}/x.json"], ":2:"),
        (["solve", "{missing}"], "No such file"),
        (["solve", "{good}", "--solver", "nope"], "unknown solver 'nope'"),
        (
            ["solve", "{good}", "--solver", "greedy", "--time-limit", "1"],
            "does not take --time-limit",
        ),
        (["solve", "{good}", "--solver", "neal", "--num-reads", "0"], "num_reads"),
        (["solve", "{good}", "--param", "bogus=1"], "no parameter bogus"),
        (["solve", "{good}", "--param", "num_reads"], "--param 'num_reads': expected KEY=VALUE"),
        (
            ["bench", "sk:4", "--param", "neal", "--out", "{tmp}/b"],
            "--param 'neal': expected SOLVER:KEY=VALUE",
        ),
        (
            ["prune", "--solver-param", "=4", "--out", "{tmp}/p"],
            "--solver-param '=4': expected KEY=VALUE",
        ),
        (["solve", "{good}", "--instance", "2"], "instance 2 is out of range"),
        (["convert", "{good}", "{tmp}/x.unknown"], "suffix"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, needle, small_qubo, tmp_path):
    _, good = small_qubo
    bad = tmp_path / "bad.txt"
    bad.write_text("3 2\n1 x 1\n2 3 1\n")
    values = {"bad": bad, "good": good, "missing": tmp_path / "missing.qubo", "tmp": tmp_path}
    result = run(*[a.format(**values) for a in args])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ising-qubo: error:")
    assert needle in lines[0]
    assert "Traceback" not in result.stderr


def test_json_output_is_not_clobbered_on_error(small_qubo, tmp_path):
    _, good = small_qubo
    out = tmp_path / "keep.json"
    out.write_text('{"previous": true}')
    result = run("solve", good, "--solver", "nope", "--json", out)
    assert result.returncode == 2
    assert json.loads(out.read_text()) == {"previous": True}


def test_key_value_options_read_values_as_json_and_name_their_flag():
    from ising_qubo.cli.options import parse_key_value, parse_key_values

    assert parse_key_values(
        ["a=1", "b=[0.1, 5]", "c=cuda", "d=true", "e=", ' f ="x"', "a=2.5", "g=x=y"], "--param"
    ) == {"a": 2.5, "b": [0.1, 5], "c": "cuda", "d": True, "e": "", "f": "x", "g": "x=y"}
    for text in ("novalue", "=3", " =3"):
        with pytest.raises(ValueError) as info:
            parse_key_value(text, "--solver-param")
        assert str(info.value) == f"--solver-param {text!r}: expected KEY=VALUE"
