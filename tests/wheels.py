"""Building the project's wheel and installing it in a fresh venv, for tests and
scripts/newcomer_walk.py (imported as ``from wheels import build_wheel``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def build_wheel(root: Path) -> Path:
    """The wheel, built under ``root`` from a copy of the sources (no build/ folder or
    egg-info left in the checkout, no stale module from an old build/lib), without network:
    setuptools from this venv."""
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, src / name)
    # the editable install's in-place compiled kernel stays behind: the wheel builds its own
    shutil.copytree(
        REPO / "ising_qubo",
        src / "ising_qubo",
        ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyd"),
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


@dataclass(frozen=True)
class FreshVenv:
    """A virtual environment with only the wheel installed in it (the dependencies come
    from this venv through a ``.pth`` line), and a working folder outside the repository."""

    venv: Path
    site: Path  # the fresh venv's site-packages
    work: Path  # a working directory outside the repository

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    def env(self) -> dict[str, str]:
        """This process's environment as if the fresh venv were activated: its bin/ first
        on PATH, nothing of this venv or of PYTHONPATH."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env["VIRTUAL_ENV"] = str(self.venv)
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        return env


def install_in_fresh_venv(wheel: Path, root: Path) -> FreshVenv:
    """``wheel`` installed with pip into a new venv under ``root``, without network:
    ``--no-deps --no-index``, and the fresh venv sees this venv's installed dependencies
    through a ``.pth`` line (a plain path: the editable install of the checkout, a finder
    that a ``.pth`` file would have to run, stays invisible)."""
    venv = root / "venv"
    # no pip inside (ensurepip costs seconds): this venv's pip installs into it
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install"]
        + ["-q", "--no-deps", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    where = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(
        subprocess.check_output([str(venv / "bin" / "python"), "-c", where], text=True).strip()
    )
    here = sysconfig.get_paths()  # this venv's folders of installed packages (lib64 too)
    (site / "dependencies.pth").write_text("".join(f"{here[k]}\n" for k in ("purelib", "platlib")))
    work = root / "work"
    work.mkdir()
    return FreshVenv(venv, site, work)
