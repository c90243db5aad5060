"""The wheel installed with pip in a fresh virtual environment, used from outside the
repository through its ``ising-qubo`` console script: --version, solve (neal, torch-sa),
bench and a tiny prune.

No network: the wheel is built with this venv's setuptools, installed with ``--no-deps
--no-index``, and the fresh venv sees this venv's dependencies through a ``.pth`` line (a
plain path: the editable install of the checkout, a finder that a ``.pth`` file would have
to run, stays invisible). Every command runs with a temporary folder as its working
directory, so nothing can come from the source tree.
"""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path

import pytest
from conftest import brute_force_minimum, random_bqm
from wheels import build_wheel, install_in_fresh_venv

from ising_qubo import io

pytestmark = pytest.mark.slow

CORE = {"numpy", "dimod", "dwave-samplers", "tqdm"}


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    site: Path  # the fresh venv's site-packages
    work: Path  # working directory of every command: outside the repository

    def run(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
        """``args[0]`` from the fresh venv's bin/ (``ising-qubo``, ``python``)."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env["OMP_NUM_THREADS"] = "1"  # a loaded machine: tiny models gain nothing from more
        command = [str(self.venv / "bin" / args[0]), *args[1:]]
        return subprocess.run(
            command, capture_output=True, text=True, cwd=self.work, env=env, timeout=timeout
        )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("installed")
    wheel = build_wheel(root)
    fresh = install_in_fresh_venv(wheel, root)
    return Installed(wheel, fresh.venv, fresh.site, fresh.work)


def _requirements(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        [meta] = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        return Parser().parsestr(zf.read(meta).decode()).get_all("Requires-Dist") or []


def _name(requirement: str) -> str:
    for stop in "<>=!~;[ ":
        requirement = requirement.split(stop)[0]
    return requirement.lower()


def test_the_wheel_depends_on_the_light_core_only(installed):
    requirements = _requirements(installed.wheel)
    core = {_name(r) for r in requirements if "extra ==" not in r}
    assert core == CORE
    extras = {r.split("extra ==")[1].strip().strip("'\"") for r in requirements if "extra ==" in r}
    assert {"anneal", "cpsat", "plot", "torch", "prune", "bench", "all", "dev"} <= extras
    torch = [r for r in requirements if _name(r) == "torch"]
    assert torch and all(">=" in r and "==" not in r.split(";")[0] for r in torch)  # a range


def test_the_package_comes_from_the_fresh_venv(installed):
    where = installed.run("python", "-c", "import ising_qubo; print(ising_qubo.__file__)")
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(installed.site)
    version = installed.run("ising-qubo", "--version")
    assert version.returncode == 0, version.stderr
    wheel_version = installed.wheel.name.split("-")[1]
    assert version.stdout.strip() == f"ising-qubo {wheel_version}"


@pytest.mark.parametrize("solver", ["neal", "torch-sa"])
def test_solve_from_the_console_script(installed, solver):
    bqm = random_bqm(12, "SPIN", seed=5)
    name = f"solve-{solver}.coo"
    io.save(bqm, installed.work / name)
    done = installed.run(
        "ising-qubo", "solve", name, "--solver", solver, "--seed", "3", "--json", "-"
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    sample = {int(v): x for v, x in result["sample"].items()}
    assert bqm.energy(sample) == pytest.approx(result["energy"])
    assert result["energy"] == pytest.approx(brute_force_minimum(bqm))


def test_the_wheels_compiled_kernel_runs_torch_sa(installed):
    code = (
        "import dimod, sys; from ising_qubo import get_solver; from ising_qubo.solvers import "
        "_sa_native; b = dimod.generators.gnp_random_bqm(30, 0.2, 'SPIN', random_state=1); "
        "r = get_solver('torch-sa').sample(b, num_reads=2, num_sweeps=50, device='cpu'); "
        "print(r.info['backend'], _sa_native.library()._name, 'numba' in sys.modules)"
    )
    done = installed.run("python", "-c", code)
    assert done.returncode == 0, done.stderr
    backend, library, numba_loaded = done.stdout.split()
    assert backend == "native" and numba_loaded == "False"
    assert Path(library).is_relative_to(installed.site)  # the wheel's own build


def test_bench_writes_into_the_working_directory(installed):
    bqm = random_bqm(12, "SPIN", seed=6)
    io.save(bqm, installed.work / "bench.coo")
    done = installed.run(
        "ising-qubo", "bench", "bench.coo", "--solvers", "neal", "--seeds", "1",
        "--time-limit", "1", "--no-progress", "--quiet",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [results] = (installed.work / "bench-results").glob("*/results.json")
    [run] = json.loads(results.read_text())["runs"]
    assert run["solver"] == "neal"
    assert (results.parent / "trajectories.png").stat().st_size > 0  # matplotlib is found
    written = {p.name for p in installed.venv.rglob("*") if p.name in ("bench-results", "results")}
    assert not written, written  # nothing lands inside the installation


def test_a_tiny_prune_from_the_console_script(installed, image_folder):
    out = installed.work / "pruned"
    done = installed.run(
        "ising-qubo", "prune", "--model", "resnet20", "--dataset", "imagefolder",
        "--data-dir", str(image_folder), "--epochs", "0", "--finetune-epochs", "0",
        "--batch-size", "16", "--keep", "0.5", "--solver-param", "num_reads=2",
        "--solver-param", "num_sweeps=50", "--no-progress", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["params"]["kept_fraction"] == pytest.approx(0.5, abs=0.02)
    # the saved model, loaded by the installed package: its size is the reported one and it
    # classifies the folder's classes
    check = """
import sys, torch, ising_qubo
model = ising_qubo.load_pruned(sys.argv[1]).eval()
with torch.no_grad():
    shape = tuple(model(torch.zeros(2, 3, 32, 32)).shape)
print(sum(p.numel() for p in model.parameters()), *shape)
"""
    loaded = installed.run("python", "-c", check, str(out))
    assert loaded.returncode == 0, loaded.stderr
    classes = len([p for p in (image_folder / "train").iterdir() if p.is_dir()])
    assert loaded.stdout.split() == [str(report["params"]["after"]), "2", str(classes)]


def test_a_missing_problem_file_is_one_line(installed):
    """The installed CLI keeps its error convention (no traceback from site-packages)."""
    done = installed.run("ising-qubo", "solve", "absent.coo")
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1 and "absent.coo" in done.stderr
