"""A real ``ising-qubo prune`` process killed with SIGKILL resumes to the same result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from conftest import resnet20_prune_args

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")]


def command(data_dir, out, *extra):
    return [
        sys.executable,
        "-m",
        "ising_qubo.cli",
        *resnet20_prune_args(data_dir),
        "--epochs",
        "2",
        "--finetune-epochs",
        "2",
        "--batch-size",
        "16",
        "--resolve-every",
        "3",
        "--solver-param",
        "num_reads=4",
        "--solver-param",
        "num_sweeps=200",
        "--no-progress",
        "--out",
        str(out),
        *extra,
    ]


def environment():
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"  # the same arithmetic in every process
    env["PYTHONUNBUFFERED"] = "1"
    return env


def assert_same_outcome(out, reference):
    """Same masks and accuracies exactly; losses to float rounding, because oneDNN's CPU
    kernels are not bitwise reproducible across processes (their vector loops depend on
    buffer alignment), which moves the loss in its 8th digit."""
    got = json.loads((out / "report.json").read_text())
    want = json.loads((reference / "report.json").read_text())
    assert got["pruning"]["removed"] == want["pruning"]["removed"]
    assert got["pruning"]["kept"] == want["pruning"]["kept"]
    assert got["params"] == want["params"]
    assert got["history"]["phase"] == want["history"]["phase"]
    assert got["history"]["test_top1"] == pytest.approx(want["history"]["test_top1"], abs=1e-9)
    assert got["history"]["train_loss"] == pytest.approx(want["history"]["train_loss"], rel=1e-4)
    for stage in ("before", "after"):
        assert got["accuracy"][stage] == pytest.approx(want["accuracy"][stage], abs=1e-9)


def run_killed_at(data_dir, out, marker):
    """Start the run, SIGKILL it right after it prints ``marker``, return the output."""
    process = subprocess.Popen(
        command(data_dir, out),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment(),
    )
    seen = []
    for line in process.stdout:
        seen.append(line)
        if line.startswith(marker):
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=120)
    assert process.returncode == -signal.SIGKILL, "".join(seen)
    return "".join(seen)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, image_folder):
    out = tmp_path_factory.mktemp("reference") / "run"
    subprocess.run(
        command(image_folder, out), check=True, env=environment(), capture_output=True, timeout=300
    )
    return out


@pytest.mark.parametrize("marker", ["train epoch 1:", "train epoch 2:", "finetune epoch 1:"])
def test_sigkill_then_resume_gives_the_uninterrupted_result(
    tmp_path, image_folder, reference, marker
):
    killed = tmp_path / "killed"
    run_killed_at(image_folder, killed, marker)
    assert (killed / "checkpoint.pt").exists()
    assert not (killed / "report.json").exists()
    leftovers = [p.name for p in killed.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == [] or all(p.startswith(".") for p in leftovers)
    again = subprocess.run(
        command(image_folder, killed, "--resume"),
        env=environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr
    assert_same_outcome(killed, reference)
