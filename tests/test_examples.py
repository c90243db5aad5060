"""The examples run and say what they claim."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO


def run_example(name: str, *args: str) -> str:
    result = subprocess.run([sys.executable, str(REPO / "examples" / name), *args],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_solve_by_name_table_finds_the_optimum():
    out = run_example("solve_by_name.py")
    rows = [line for line in out.splitlines() if line.startswith("| ") and "solver" not in line]
    assert len(rows) == 6
    cpsat = next(r for r in rows if r.startswith("| cpsat"))
    assert "2098" in cpsat and "OPTIMAL" in cpsat


def test_export_round_trips_are_exact(tmp_path):
    out = run_example("export_qubo.py", str(tmp_path))
    assert out.count("round trip exact") == 4
    assert "CP-SAT keeps 4 of 10" in out


def test_custom_solver_is_usable_by_name():
    out = run_example("custom_solver.py")
    assert "restart-greedy" in out.splitlines()[0]
    values = [float(line.split()[-1]) for line in out.splitlines()[1:]]
    assert values[0] == values[1]
    assert values[0] >= values[2] - 1e-9
