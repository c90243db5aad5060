"""The command line keeps the conventions of a Unix tool: ``-`` for standard input and
output, a quiet exit on a closed pipe, ``--version``, help and defaults for every option,
``--json`` on every read command, one-line errors for broken plug-ins, and messages that
name command-line flags (not the Python keywords the library names)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import subprocess
import sys
from importlib.metadata import EntryPoint
from importlib.metadata import version as installed_version
from pathlib import Path

import dimod
import numpy as np
import pytest

from ising_qubo import io
from ising_qubo.cli import app
from ising_qubo.solvers import registry

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "ising_qubo.cli"]
BQP = "2\n3 2\n1 1 -5\n1 2 4\n3 2\n2 2 -3\n1 3 2\n"  # two OR-Library instances


def run(*args: object, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], input=stdin, capture_output=True, timeout=300)


def one_error_line(result: subprocess.CompletedProcess | tuple[int, str]) -> str:
    code, stderr = (
        (result.returncode, result.stderr.decode())
        if isinstance(result, subprocess.CompletedProcess)
        else result
    )
    assert code == 2, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("ising-qubo: error: ")
    return lines[0].removeprefix("ising-qubo: error: ")


@pytest.fixture()
def small(tmp_path):
    bqm = dimod.BinaryQuadraticModel(
        {0: -1.0, 1: 2.0, 2: -3.0}, {(0, 1): -4.0, (1, 2): 1.5}, 0.5, "BINARY"
    )
    path = tmp_path / "small.coo"
    io.save(bqm, path)
    return bqm, path


# --- "-" for standard input and output ---------------------------------------------------


def test_solve_reads_standard_input_sniffed_or_by_format(small, tmp_path):
    bqm, path = small
    optimum = dimod.ExactSolver().sample(bqm).first.energy
    sniffed = run("solve", "-", "--solver", "exact", stdin=path.read_bytes())
    assert sniffed.returncode == 0, sniffed.stderr
    assert f"energy:     {optimum:.10g}" in sniffed.stdout.decode()
    binary = tmp_path / "small.bqm"
    io.save(bqm, binary)  # a binary file: read as --format says
    named = run("solve", "-", "--format", "bqm", "--solver", "exact", stdin=binary.read_bytes())
    assert named.returncode == 0, named.stderr
    assert f"energy:     {optimum:.10g}" in named.stdout.decode()


def test_bad_standard_input_is_named_stdin():
    message = one_error_line(run("info", "-", stdin=b"3 2\n1 x 1\n"))
    assert message.startswith("<stdin>:2:"), message


def test_json_dash_writes_only_json_to_stdout(small, tmp_path):
    bqm, path = small
    result = run("solve", path, "--solver", "exact", "--json", "-")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)  # the whole of stdout is the JSON document
    assert data["energy"] == dimod.ExactSolver().sample(bqm).first.energy
    sample = {int(v): x for v, x in data["sample"].items()}
    assert bqm.energy(sample) == data["energy"]  # recomputed from the reported state
    assert "energy:" in result.stderr.decode()  # the summary went to stderr
    assert not (tmp_path / "-").exists() and not Path("-").exists()


def test_convert_to_standard_output_round_trips(small, tmp_path):
    bqm, path = small
    result = run("convert", path, "-", "--to", "json")
    assert result.returncode == 0, result.stderr
    copy = tmp_path / "copy.json"
    copy.write_bytes(result.stdout)
    assert io.load(copy) == bqm
    assert "wrote standard output" in result.stderr.decode()
    assert "--to" in one_error_line(run("convert", path, "-"))


def test_convert_stdin_to_stdout_binary(small, tmp_path):
    bqm, path = small
    result = run("convert", "-", "-", "--to", "bqm", stdin=path.read_bytes())
    assert result.returncode == 0, result.stderr
    copy = tmp_path / "copy.bqm"
    copy.write_bytes(result.stdout)
    assert io.load(copy) == bqm


# --- a closed pipe ----------------------------------------------------------------------


@pytest.fixture()
def chain(tmp_path):
    """A problem whose CLI outputs are far larger than a pipe's buffer (64 KiB)."""
    n = 20_000
    bqm = dimod.BinaryQuadraticModel(
        {i: 1.0 for i in range(n)}, {(i, i + 1): -1.0 for i in range(n - 1)}, 0.0, "BINARY"
    )
    path = tmp_path / "chain.coo"
    io.save(bqm, path)
    return path


@pytest.mark.parametrize(
    "args",
    [["convert", "{f}", "-", "--to", "coo"], ["solve", "{f}", "--solver", "greedy", "--json", "-"]],
)
def test_closed_pipe_exits_141_without_a_message(chain, args):
    command = " ".join([*CLI, *(a.format(f=chain) for a in args)])
    shell = f'{command} | head -3; echo "status=${{PIPESTATUS[0]}}" >&2'
    result = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=300)
    assert len(result.stdout.splitlines()) == 3
    assert result.stderr.strip().splitlines()[-1] == "status=141", result.stderr
    # stderr holds the summary only: no "Broken pipe", no traceback, no "Exception ignored"
    for word in ("Broken pipe", "Traceback", "Exception", "error"):
        assert word not in result.stderr, result.stderr


# --- --version, help and defaults -------------------------------------------------------


def test_version_is_the_one_in_pyproject():
    import tomllib

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.decode().strip() == f"ising-qubo {pyproject}"
    assert installed_version("ising-qubo") == pyproject
    import ising_qubo

    assert ising_qubo.__version__ == pyproject
    # written once: pyproject.toml is the only file that spells the version
    assert not re.search(r"__version__\s*=\s*['\"]", (ROOT / "ising_qubo/__init__.py").read_text())


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = app.build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(commands.choices)


def test_every_option_of_every_command_has_help():
    missing = [
        f"{name} {action.option_strings or action.dest}"
        for name, sub in _subcommands().items()
        for action in sub._actions
        if not isinstance(action, argparse._HelpAction) and not (action.help or "").strip()
    ]
    assert missing == []


def test_help_shows_defaults():
    subs = _subcommands()
    assert "(default: neal)" in subs["solve"].format_help()
    assert "(default: 256)" in subs["evaluate"].format_help()
    prune = " ".join(subs["prune"].format_help().split())
    assert "(default: 0.0005)" in prune and "(default: cosine)" in prune
    assert "(default: None)" not in prune and "(default: False)" not in prune
    assert "default: 10)" in " ".join(subs["bench"].format_help().split())


# --- --json on the read commands --------------------------------------------------------


def test_solvers_and_formats_json():
    from ising_qubo.solvers import list_solvers

    solvers = json.loads(run("solvers", "--json").stdout)
    assert [s["name"] for s in solvers] == list_solvers()
    assert all(isinstance(s["available"], str) and s["description"] for s in solvers)
    formats = json.loads(run("formats", "--json").stdout)
    assert formats == [json.loads(json.dumps(dataclasses.asdict(f))) for f in io.formats()]


def test_info_json_matches_the_problem(tmp_path):
    path = tmp_path / "two.bqp"
    path.write_text(BQP)
    result = run("info", path, "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == ["two-1", "two-2"]
    second = io.read_instance(path, instance=2).bqm
    assert rows[1]["num_variables"] == second.num_variables == 3
    assert rows[1]["num_interactions"] == second.num_interactions == 1
    assert rows[1]["density"] == pytest.approx(1 / 3)
    assert rows[1]["linear_range"] == [min(second.linear.values()), max(second.linear.values())]
    text = run("info", path, "--instance", "2").stdout.decode()
    assert text.startswith("two-2: 3 variables, 1 interactions")


# --- plug-ins that do not load -----------------------------------------------------------


@pytest.fixture()
def broken_plugins(monkeypatch):
    points = [
        EntryPoint("nomodule", "no_such_module_xyz:Sampler", registry.ENTRY_POINT_GROUP),
        EntryPoint("noattr", "json:NoSuchSampler", registry.ENTRY_POINT_GROUP),
    ]
    monkeypatch.setattr(registry, "entry_points", lambda group: points)
    monkeypatch.setattr(registry, "_PLUGINS_LOADED", False)
    yield
    for point in points:
        registry.unregister_solver(point.name)


def main_output(capsys, *argv: object) -> tuple[int, str, str]:
    code = app.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_broken_plugin_is_listed_unavailable_and_fails_in_one_line(broken_plugins, capsys, small):
    code, out, _ = main_output(capsys, "solvers")
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert "[available: no (ImportError:" in lines["nomodule"]
    assert "no_such_module_xyz" in lines["nomodule"]
    assert "NoSuchSampler" in lines["noattr"] and "available: no" in lines["noattr"]
    assert lines["neal"].endswith("[available: yes]")
    code, out, _ = main_output(capsys, "solvers", "--json")
    listed = {row["name"]: row["available"] for row in json.loads(out)}
    assert listed["noattr"].startswith("no (ImportError: solver plug-in 'noattr'")
    for name in ("nomodule", "noattr"):
        code, _, err = main_output(capsys, "solve", small[1], "--solver", name)
        message = one_error_line((code, err))
        assert message.startswith(f"solver plug-in {name!r} (")
        assert "failed to load" in message


# --- messages name the flags on the command line, the keywords in Python ----------------


def test_instance_messages_name_the_flag_or_the_keyword(tmp_path):
    path = tmp_path / "two.bqp"
    path.write_text(BQP)
    assert one_error_line(run("solve", path)) == (
        f"{path} holds 2 instances; pass --instance 1..2 to choose one"
    )
    assert one_error_line(run("info", path, "--instance", "3")) == (
        f"{path}: instance 3 is out of range; the file holds 2 instances, pass --instance 1..2"
    )
    with pytest.raises(ValueError, match=r"pass instance=1\.\.2 to choose one"):
        io.read_instance(path)
    with pytest.raises(ValueError, match=r"pass instance=1\.\.2$"):
        io.read_instance(path, instance=3)


# --- evaluate ---------------------------------------------------------------------------


def test_evaluate_lists_only_its_options():
    options = {o for a in _subcommands()["evaluate"]._actions for o in a.option_strings}
    assert options == {
        "-h",
        "--help",
        "--dataset",
        "--data-dir",
        "--download",
        "--test-subset",
        "--batch-size",
        "--device",
        "--json",
        "--no-progress",
        "-q",
        "--quiet",
    }


def test_evaluate_honours_batch_size_and_prints_a_line_or_json(monkeypatch, capsys, tmp_path):
    import torch

    from ising_qubo.nets import data as data_module
    from ising_qubo.nets.data import ImageDataset
    from ising_qubo.nets.models import build
    from ising_qubo.nets.persist import save_pruned

    torch.manual_seed(0)
    model = build("resnet20")
    saved = save_pruned(model, tmp_path / "model")
    images = torch.randint(0, 256, (10, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(10) % 10
    test = ImageDataset(images, labels, [str(k) for k in range(10)], "t", (0.5,) * 3, (0.25,) * 3)
    monkeypatch.setattr(data_module, "load_dataset", lambda *a, **k: test)
    batches: list[int] = []
    real_loader = data_module.BatchLoader

    class Recording(real_loader):  # type: ignore[misc,valid-type]
        def __iter__(self):
            for x, y in super().__iter__():
                batches.append(len(y))
                yield x, y

    monkeypatch.setattr(data_module, "BatchLoader", Recording)
    code, out, _ = main_output(capsys, "evaluate", saved, "--batch-size", "7", "--json")
    assert code == 0
    assert batches == [7, 3]
    result = json.loads(out)
    model.eval()
    with torch.no_grad():
        logits = model((images.float() / 255 - 0.5) / 0.25)
    top1 = 100 * float((logits.argmax(1) == labels).float().mean())
    assert result["count"] == 10 and result["top1"] == pytest.approx(top1)
    assert result["params"] == sum(p.numel() for p in model.parameters())
    code, out, _ = main_output(capsys, "evaluate", saved, "--batch-size", "4")
    assert batches[2:] == [4, 4, 2]
    assert out.strip() == (
        f"top-1 {result['top1']:.2f}%, top-5 {result['top5']:.2f}% on 10 test images; "
        f"{result['params']:,} parameters"
    )
    assert np.isfinite(result["top5"])
