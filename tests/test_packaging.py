"""The wheel a user installs: licence, metadata, type hints, every module, and the bench
command run from the wheel's files outside the repository (results in the working directory,
instance sets only from --instances-dir or ISING_QUBO_BENCH_DIR)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from wheels import build_wheel

REPO = Path(__file__).resolve().parents[1]
APACHE_HEADER = ("Apache License", "Version 2.0, January 2004")
APACHE_TAIL = "limitations under the License."


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def _is_compiled_kernel(name: str) -> bool:
    """The built extension (not its C source, which ships beside it)."""
    return name.startswith("ising_qubo/solvers/_sa_kernel.") and name.endswith((".so", ".pyd"))


def _metadata(wheel: Path) -> tuple[list[str], str, str]:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        [meta] = [n for n in names if n.endswith(".dist-info/METADATA")]
        dist_info = meta.rsplit("/", 1)[0]
        return names, zf.read(meta).decode(), zf.read(f"{dist_info}/licenses/LICENSE").decode()


def test_license_is_the_verbatim_apache_2_text():
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert all(part in text for part in APACHE_HEADER) and text.rstrip().endswith(APACHE_TAIL)
    # the nine sections and the appendix of the standard text, nothing filled in or cut
    for k, title in enumerate(
        (
            "Definitions",
            "Grant of Copyright License",
            "Grant of Patent License",
            "Redistribution",
            "Submission of Contributions",
            "Trademarks",
            "Disclaimer of Warranty",
            "Limitation of Liability",
            "Accepting Warranty or Additional Liability",
        ),
        start=1,
    ):
        assert f"   {k}. {title}." in text, title
    assert "END OF TERMS AND CONDITIONS" in text and "Copyright [yyyy]" in text
    assert len(text.splitlines()) == 202


@pytest.mark.slow
def test_wheel_ships_licence_type_marker_and_every_module(wheel):
    names, metadata, licence = _metadata(wheel)
    assert "ising_qubo/py.typed" in names
    assert licence == (REPO / "LICENSE").read_text(encoding="utf-8")
    modules = {
        p.relative_to(REPO).as_posix()
        for p in (REPO / "ising_qubo").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert modules <= set(names), sorted(modules - set(names))
    # torch-sa's compiled CPU kernel, built for this platform by setup.py
    assert [n for n in names if _is_compiled_kernel(n)], names

    meta = Parser().parsestr(metadata)
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta.get_all("License-File") == ["LICENSE"]
    classifiers = meta.get_all("Classifier")
    for wanted in (
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
        "Operating System :: OS Independent",
        "Programming Language :: Python :: 3.10",
        "Typing :: Typed",
    ):
        assert wanted in classifiers
    # PEP 639: with a licence expression, licence classifiers are not allowed
    assert not [c for c in classifiers if c.startswith("License ::")]
    assert meta.get_all("Project-URL")


@pytest.mark.slow
def test_bench_from_the_wheel_outside_the_repository(wheel, tmp_path):
    site = tmp_path / "site-packages"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "ISING_QUBO_BENCH_DIR"}
    env["PYTHONPATH"] = str(site)  # ahead of this venv's editable install of the checkout

    def run(*args: str, **extra_env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, *args],
            capture_output=True,
            text=True,
            cwd=work,
            env={**env, **extra_env},
            timeout=180,
        )

    where = run("-c", "import ising_qubo.bench.instances as m; print(m.__file__, m.REPO_ROOT)")
    assert where.returncode == 0, where.stderr
    assert where.stdout.split() == [str(site / "ising_qubo/bench/instances.py"), "None"]

    bench = ["-m", "ising_qubo.cli", "bench", "--solvers", "neal", "--seeds", "1"]
    bench += ["--time-limit", "0.2", "--no-progress", "--no-plot", "--quiet"]
    done = run(*bench, "sk:8")
    assert done.returncode == 0, done.stderr
    [results] = (work / "bench-results").glob("*/results.json")
    assert json.loads(results.read_text())["runs"][0]["instance"] == "sk8_s0"
    assert not (site / "benchmarks").exists()

    missing = run(*bench, "gset:G1")
    assert missing.returncode == 2
    lines = missing.stderr.strip().splitlines()
    assert len(lines) == 1, missing.stderr
    assert "--instances-dir" in lines[0] and "ISING_QUBO_BENCH_DIR" in lines[0]

    sets = tmp_path / "sets"
    (sets / "beasley").mkdir(parents=True)
    shutil.copy2(REPO / "examples" / "instances" / "bqp50.txt", sets / "beasley" / "bqp50.txt")
    for how in ({"ISING_QUBO_BENCH_DIR": str(sets)}, {}):
        flag = [] if how else ["--instances-dir", str(sets)]
        out = tmp_path / f"out{len(flag)}"
        done = run(*bench, "bqp50:1", *flag, "--out", str(out), **how)
        assert done.returncode == 0, done.stderr
        data = json.loads((out / "results.json").read_text())
        assert data["instances"][0]["source"] == f"{sets / 'beasley' / 'bqp50.txt'}#1"


@pytest.mark.slow
def test_without_a_c_compiler_the_wheel_still_builds_without_the_kernel(tmp_path, monkeypatch):
    # the C kernel is optional (setup.py): torch-sa then runs numba (test_sa_native.py)
    monkeypatch.setenv("CC", "/bin/false")
    names, _, _ = _metadata(build_wheel(tmp_path))
    assert "ising_qubo/solvers/torch_sa.py" in names
    assert not [n for n in names if _is_compiled_kernel(n)], names
