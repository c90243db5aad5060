"""Building the project's wheel for tests (imported as ``from wheels import build_wheel``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def build_wheel(root: Path) -> Path:
    """The wheel, built under ``root`` from a copy of the sources (no build/ folder or
    egg-info left in the checkout, no stale module from an old build/lib), without network:
    setuptools from this venv."""
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(
        REPO / "ising_qubo", src / "ising_qubo", ignore=shutil.ignore_patterns("__pycache__")
    )
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(root / "dist"), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    [built] = (root / "dist").glob("ising_qubo-*.whl")
    return built
