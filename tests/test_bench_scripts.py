"""The solver benchmark scripts that generate instances and time the two CPU kernels:
run as a user runs them, their output checked against what they claim."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from ising_qubo.io import beasley

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "benchmarks" / "solvers"


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def test_beasley_like_files_follow_beasleys_recipe_and_read_back(tmp_path):
    done = _run(str(SCRIPTS / "beasley_like.py"), "120", "--out", "sets", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    path = tmp_path / "sets" / "bqp120.txt"
    [instance] = beasley.read(path)
    bqm = instance.bqm
    assert bqm.num_variables == 120
    values = np.array(list(bqm.linear.values()) + list(bqm.quadratic.values()))
    entries = np.count_nonzero(values)
    assert 0.07 < entries / (120 * 121 / 2) < 0.13  # density 10 %, diagonal included
    # the file's entries: integers in [-100, 100] (the BQM counts off-diagonal ones twice)
    lines = path.read_text().split("\n")[2:-1]
    q = np.array([int(line.split()[2]) for line in lines])
    assert len(q) == int(path.read_text().split("\n")[1].split()[1])
    assert q.min() >= -100 and q.max() <= 100 and 0 not in q
    again = _run(str(SCRIPTS / "beasley_like.py"), "120", "--out", "again", cwd=tmp_path)
    assert again.returncode == 0
    assert (tmp_path / "again" / "bqp120.txt").read_bytes() == path.read_bytes()  # seeded by n
    # --seeds: one file per seed, each its own draw, none equal to the unseeded one
    many = _run(str(SCRIPTS / "beasley_like.py"), "120", "--seeds", "1", "2", "--out", "many",
                cwd=tmp_path)  # fmt: skip
    assert many.returncode == 0, many.stderr
    drawn = [(tmp_path / "many" / f"bqp120-s{k}.txt").read_bytes() for k in (1, 2)]
    assert len({drawn[0], drawn[1], path.read_bytes()}) == 3
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == [
        "bqp120-s1.txt",
        "bqp120-s2.txt",
    ]


def test_the_kernel_timing_script_times_every_configuration(tmp_path):
    out = tmp_path / "kernels.json"
    done = _run(
        str(SCRIPTS / "kernels.py"), "sk:12", "--reps", "2", "--out", str(out), cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    record = json.loads(out.read_text())
    configs = {(row["backend"], row["num_reads"]) for row in record["rows"]}
    assert configs == {("native", 1), ("numba", 1), ("native", 2), ("numba", 2), ("neal", 1)}
    assert all(row["wall_ms"] > 0 and row["cpu_ms"] >= 0 for row in record["rows"])
    assert record["background_load"] == 0 and len(record["load_start"]) == 3
