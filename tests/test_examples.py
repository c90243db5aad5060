"""The examples run and say what they claim."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO


def run_example(name: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / name), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
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


def test_prune_cifar_example_shrinks_and_reloads(tmp_path):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", 16), ("test", 8)):
        for label in range(3):
            folder = tmp_path / split / f"c{label}"
            folder.mkdir(parents=True)
            for k in range(count):
                pixels = rng.integers(0, 255, size=(32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{k}.png")
    out = run_example("prune_cifar.py", "--data-dir", str(tmp_path), "--subset", "48")
    kept = float(out.split("% kept")[0].rsplit("(", 1)[1])
    assert kept <= 55.0
    assert "(same)" in out
