"""The light core (``pip install ising-qubo``, no extras): QUBO files and the dimod solvers
work without torch, torchvision, Torch-Pruning, numba, OR-Tools, matplotlib and safetensors,
and whatever needs one of them fails with one line naming the extra to install.

The extras are hidden, without network or a second environment, in a fresh interpreter
whose path finder does not see them: ``import torch`` there fails exactly as where torch
was never installed (``ModuleNotFoundError``, ``find_spec`` None).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import dimod
import pytest
from conftest import REPO, brute_force_minimum, random_bqm

import ising_qubo
from ising_qubo import io
from ising_qubo._extras import MissingExtraError, as_missing_extra, require
from ising_qubo.solvers import get_solver, register_solver, solver_info, unregister_solver

EXTRAS = ("torch", "torchvision", "torch_pruning", "numba", "ortools", "matplotlib")
HIDDEN = (*EXTRAS, "safetensors")

# Runs first in the child: the path finder is replaced by one that does not see HIDDEN.
HIDE = """
import sys
from importlib.machinery import PathFinder

HIDDEN = set({hidden!r})


class WithoutExtras:
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.partition(".")[0] in HIDDEN:
            return None  # as when the package is not installed
        return PathFinder.find_spec(name, path, target)

    @classmethod
    def invalidate_caches(cls):
        PathFinder.invalidate_caches()


sys.meta_path[:] = [WithoutExtras if f is PathFinder else f for f in sys.meta_path]
"""

CLI = "from ising_qubo.cli import main\nsys.exit(main(sys.argv[1:]))\n"


def run_without(
    code: str, *args: str, cwd: Path, hidden: tuple[str, ...] = HIDDEN
) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter that cannot import ``hidden``."""
    return subprocess.run(
        [sys.executable, "-c", HIDE.format(hidden=hidden) + textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def cli_without(*args: str, cwd: Path, hidden: tuple[str, ...] = HIDDEN):
    return run_without(CLI, *args, cwd=cwd, hidden=hidden)


@pytest.fixture
def problem(tmp_path: Path) -> tuple[dimod.BinaryQuadraticModel, Path, Path]:
    """A 10-variable SPIN problem written as .coo and .json (by the library, in this
    process, where every extra is installed)."""
    bqm = random_bqm(10, "SPIN", seed=3)
    return bqm, io.save(bqm, tmp_path / "p.coo"), io.save(bqm, tmp_path / "p.json")


def test_the_child_cannot_see_the_extras(tmp_path):
    """The premise of every test here: each extra fails to import as if not installed, and
    the core dependencies still import."""
    probe = """
    import importlib, importlib.util, json
    seen = {}
    for name in HIDDEN:
        try:
            importlib.import_module(name)
            seen[name] = "imported"
        except ModuleNotFoundError as exc:
            seen[name] = [exc.name, importlib.util.find_spec(name)]
    import dimod, dwave.samplers, numpy, tqdm
    print(json.dumps(seen))
    """
    done = run_without(probe, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {name: [name, None] for name in HIDDEN}


def test_import_and_file_io_without_extras(problem, tmp_path):
    bqm, coo, _ = problem
    code = """
    import ising_qubo
    bqm = ising_qubo.io.read_instance(sys.argv[1]).bqm
    ising_qubo.io.save(bqm, sys.argv[2])
    print(ising_qubo.__version__)
    """
    done = run_without(code, str(coo), str(tmp_path / "copy.qubo"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ising_qubo.__version__
    # .qubo holds BINARY models: converted back to SPIN, the copy is the same model
    copy = io.read_instance(tmp_path / "copy.qubo").bqm
    assert copy.vartype is dimod.BINARY
    assert copy.change_vartype(dimod.SPIN, inplace=False).is_almost_equal(bqm)


@pytest.mark.parametrize(
    "solver, suffix", [("neal", "coo"), ("tabu", "json"), ("exact", "coo"), ("greedy", "json")]
)
def test_core_solvers_solve_files_without_extras(problem, tmp_path, solver, suffix):
    bqm, *_ = problem
    seed = [] if solver == "exact" else ["--seed", "1"]  # exact takes no seed
    done = cli_without(
        "solve", f"p.{suffix}", "--solver", solver, *seed, "--json", "-", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    sample = {int(v): x for v, x in result["sample"].items()}
    assert bqm.energy(sample) == pytest.approx(result["energy"])  # the energy is the sample's
    if solver != "greedy":  # a local search may stop above the minimum
        assert result["energy"] == pytest.approx(brute_force_minimum(bqm))


def test_convert_and_info_without_extras(problem, tmp_path):
    bqm, coo, _ = problem
    converted = cli_without("convert", "p.coo", "out.json", cwd=tmp_path)
    assert converted.returncode == 0, converted.stderr
    assert io.read_instance(tmp_path / "out.json").bqm.is_almost_equal(bqm)
    info = cli_without("info", "p.coo", "--json", cwd=tmp_path)
    assert info.returncode == 0, info.stderr
    [described] = json.loads(info.stdout)
    assert (described["num_variables"], described["num_interactions"]) == (
        bqm.num_variables,
        bqm.num_interactions,
    )


MISSING = [
    ("torch-sa", "numba", "anneal"),
    ("cpsat", "ortools", "cpsat"),
    ("torch-sb", "torch", "torch"),
    ("sb-ref", "torch", "torch"),
]


@pytest.mark.parametrize("solver, module, extra", MISSING)
def test_a_solver_without_its_extra_is_one_line_naming_it(problem, tmp_path, solver, module, extra):
    done = cli_without("solve", "p.coo", "--solver", solver, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"ising-qubo: error: {solver} needs {module}: pip install 'ising-qubo[{extra}]'"
    ]


def test_the_solver_listing_says_which_are_unavailable_and_why(tmp_path):
    done = cli_without("solvers", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    available = {row["name"]: row["available"] for row in json.loads(done.stdout)}
    for name in ("neal", "tabu", "greedy", "exact", "de"):
        assert available[name] == "yes"
    for solver, module, extra in MISSING:
        assert (
            available[solver] == f"no ({solver} needs {module}: pip install 'ising-qubo[{extra}]')"
        )


@pytest.mark.parametrize("command", ["export", "evaluate"])
def test_network_commands_name_the_prune_extra(tmp_path, command):
    args = ["--out", "x"] if command == "export" else ["model"]
    done = cli_without(command, *args, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"ising-qubo: error: {command} needs torch: pip install 'ising-qubo[prune]'"
    ]


def test_python_api_names_the_extra(tmp_path):
    code = """
    import ising_qubo
    for attempt in (lambda: ising_qubo.get_solver("torch-sa"), lambda: ising_qubo.prune_model):
        try:
            attempt()
        except ImportError as exc:
            print(f"{type(exc).__name__}: {exc}")
    """
    done = run_without(code, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "MissingExtraError: torch-sa needs numba: pip install 'ising-qubo[anneal]'",
        "MissingExtraError: ising_qubo.prune_model needs torch: pip install 'ising-qubo[prune]'",
    ]


def test_the_anneal_extra_alone_runs_torch_sa_on_the_cpu(problem, tmp_path):
    """numba without torch: torch-sa's compiled CPU kernel needs nothing else."""
    bqm, *_ = problem
    without_numba_hidden = tuple(name for name in HIDDEN if name != "numba")
    args = ["solve", "p.coo", "--solver", "torch-sa", "--seed", "2", "--json", "-"]
    done = cli_without(*args, cwd=tmp_path, hidden=without_numba_hidden)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["energy"] == pytest.approx(brute_force_minimum(bqm))
    assert bqm.energy({int(v): x for v, x in result["sample"].items()}) == pytest.approx(
        result["energy"]
    )


# ---------------------------------------------------------------- in this process


def test_require_names_the_extra_for_a_missing_module():
    with pytest.raises(MissingExtraError) as caught:
        require("ising_qubo_no_such_module.sub", "anneal", "the thing")
    assert str(caught.value) == (
        "the thing needs ising_qubo_no_such_module: pip install 'ising-qubo[anneal]'"
    )
    assert isinstance(caught.value, ImportError)
    assert require("json", "anneal", "the thing") is json


def test_a_module_missing_inside_an_installed_package_is_not_a_missing_extra(tmp_path, monkeypatch):
    """An installed package whose own import fails names the real culprit, not an extra."""
    (tmp_path / "half_installed.py").write_text("import ising_qubo_no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="ising_qubo_no_such_dependency") as caught:
        require("half_installed", "anneal", "the thing")
    assert not isinstance(caught.value, MissingExtraError)


def test_as_missing_extra_only_translates_optional_modules():
    translated = as_missing_extra(ModuleNotFoundError("x", name="torch_pruning.utils"), "prune")
    assert str(translated) == "prune needs torch-pruning: pip install 'ising-qubo[prune]'"
    assert as_missing_extra(ModuleNotFoundError("x", name="yaml"), "prune") is None
    assert as_missing_extra(ImportError("cannot import name"), "prune") is None


def test_a_registered_solver_that_needs_a_missing_module():
    name = "needs-a-missing-module"
    register_solver(
        name, "ising_qubo.solvers.neal:NealSampler", needs={"ising_qubo_no_such_module": "cpsat"}
    )
    try:
        message = f"{name} needs ising_qubo_no_such_module: pip install 'ising-qubo[cpsat]'"
        with pytest.raises(MissingExtraError, match=f"^{re.escape(message)}$"):
            get_solver(name)
        [entry] = [e for e in solver_info() if e.name == name]
        assert entry.available() == f"no ({message})"
    finally:
        unregister_solver(name)


def test_every_extra_module_is_declared_in_pyproject():
    """Each module the package treats as optional is in the extra it names (so the message
    tells the truth), and none is a core dependency."""
    import tomllib  # Python 3.11+; CI runs 3.11

    from ising_qubo._extras import _DISTRIBUTION, EXTRA_OF

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]

    def names(requirements: list[str], seen: frozenset = frozenset()) -> set[str]:
        out = set()
        for requirement in requirements:
            if requirement.startswith("ising-qubo["):  # an extra of an extra
                for inner in requirement[len("ising-qubo[") : -1].split(","):
                    if inner not in seen:
                        out |= names(extras[inner], seen | {inner})
            else:
                out.add(requirement.split(">")[0].split("<")[0].split("=")[0].strip().lower())
        return out

    core = names(project["dependencies"])
    assert core == {"numpy", "dimod", "dwave-samplers", "tqdm"}
    for module, extra in EXTRA_OF.items():
        distribution = _DISTRIBUTION.get(module, module).lower()
        assert distribution in names(extras[extra]), (module, extra)
        assert distribution in names(extras["all"]) and distribution not in core
    assert names(extras["all"]) <= names(extras["dev"])
