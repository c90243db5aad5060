"""Solver limits (issue 17): a num_reads whose states cannot fit in memory is refused before
anything is allocated, and bad parameter values (seed, types) give one line naming the
solver and the parameter, through the Python API and the command line alike.

The command-line cases run in a subprocess under an address-space limit (RLIMIT_AS), so a
solver that started allocating its states would fail there with a MemoryError traceback
instead of the one-line refusal.
"""

from __future__ import annotations

import itertools
import os
import resource
import subprocess
import sys
from pathlib import Path

import dimod
import numpy as np
import pytest

import ising_qubo.io as qio
from ising_qubo.solvers import get_solver, solver_info
from ising_qubo.solvers._common import (
    MEMORY_LIMIT_VARIABLE,
    check_states_memory,
    state_memory_limit,
)

GiB = 2**30
# every solver of the registry whose dependencies are installed here
AVAILABLE = [e.name for e in solver_info() if e.available().startswith("yes")]
# the ones whose num_reads sizes an allocation (cpsat keeps only solutions found; exact
# takes no num_reads)
READS_SOLVERS = [s for s in ("neal", "tabu", "greedy", "de", "torch-sa", "torch-sb", "sb-ref")]
SEEDED_SOLVERS = [s for s in AVAILABLE if s != "exact"]
# torch itself maps about 3.2 GiB of address space when imported
TORCH_SOLVERS = {"torch-sb", "sb-ref"}
# solver parameters that keep each run short on a tiny problem
QUICK = {"sb-ref": {"num_steps": 1000, "device": "cpu"}, "torch-sb": {"device": "cpu"}}


def available(names: list[str]) -> list:
    return [
        pytest.param(n, marks=pytest.mark.skip(reason=f"{n} is not available here"))
        if n not in AVAILABLE
        else n
        for n in names
    ]


def tiny_bqm(n: int = 6, seed: int = 3) -> dimod.BinaryQuadraticModel:
    rng = np.random.default_rng(seed)
    linear = {i: float(rng.normal()) for i in range(n)}
    quadratic = {(i, j): float(rng.normal()) for i, j in itertools.combinations(range(n), 2)}
    return dimod.BinaryQuadraticModel(linear, quadratic, 0.5, dimod.BINARY)


def enumerated_minimum(bqm: dimod.BinaryQuadraticModel) -> float:
    """The lowest energy over all 2^n states, computed here from the biases."""
    labels = list(bqm.variables)
    best = np.inf
    for state in itertools.product((0, 1), repeat=len(labels)):
        x = dict(zip(labels, state))
        energy = bqm.offset + sum(b * x[v] for v, b in bqm.linear.items())
        energy += sum(b * x[u] * x[v] for (u, v), b in bqm.quadratic.items())
        best = min(best, energy)
    return best


@pytest.fixture
def limit_env(monkeypatch):
    def set_limit(text: str | None) -> None:
        if text is None:
            monkeypatch.delenv(MEMORY_LIMIT_VARIABLE, raising=False)
        else:
            monkeypatch.setenv(MEMORY_LIMIT_VARIABLE, text)

    set_limit(None)
    return set_limit


# --- the memory estimate and its limit ------------------------------------------------------


def test_estimate_is_reads_times_entries_plus_per_read_bytes(limit_env):
    needed = 100 * (6 * 10 + 16)  # 100 reads of 6 variables at 10 bytes, 16 per read
    limit_env(str(needed))
    check_states_memory(100, 6, 10, "x")
    limit_env(str(needed - 1))
    with pytest.raises(ValueError, match=r"^x: num_reads=100 x 6 variables needs about 7\.4 KiB"):
        check_states_memory(100, 6, 10, "x")


def test_fixed_bytes_count_and_are_named(limit_env):
    limit_env("1M")
    with pytest.raises(ValueError, match=r"1\.5 MiB of it for the matrix\); the limit is 1\.0 MiB"):
        check_states_memory(1, 1, 1, "x", fixed_bytes=3 * 2**19, fixed_for="the matrix")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("123", 123), ("8G", 8 * GiB), ("8GiB", 8 * GiB), ("1.5k", 1536), ("2e3", 2000)],
)
def test_limit_from_the_environment(limit_env, text, expected):
    limit_env(text)
    assert state_memory_limit() == (expected, f"{MEMORY_LIMIT_VARIABLE}={text}")


@pytest.mark.parametrize("text", ["abc", "0", "-5", "8X", "1e30"])
def test_bad_limit_in_the_environment_is_one_line(limit_env, text):
    limit_env(text)
    with pytest.raises(ValueError, match=rf"^{MEMORY_LIMIT_VARIABLE}='{text}': expected a posit"):
        state_memory_limit()


def test_default_limit_is_half_the_memory_there_is(limit_env):
    limit, source = state_memory_limit()
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert 0 < limit <= physical // 2
    assert source.startswith("half of") and MEMORY_LIMIT_VARIABLE in source


# --- every solver: huge num_reads refused, normal runs still right --------------------------


@pytest.mark.parametrize("name", available(READS_SOLVERS))
def test_huge_num_reads_is_refused_by_the_python_api(name, limit_env):
    sampler = get_solver(name)
    with pytest.raises(ValueError) as caught:
        sampler.sample(tiny_bqm(), num_reads=10**12, **QUICK.get(name, {}))
    message = str(caught.value)
    assert "\n" not in message
    reads = "num_reads=1000000000000"
    reads += " x population_size=8" if name == "de" else ""
    assert message.startswith(f"{name}: {reads}"), message
    assert "x 6 variables needs about" in message and "TiB of memory" in message
    assert "the limit is" in message and MEMORY_LIMIT_VARIABLE in message


def test_neal_counts_less_per_read_when_it_runs_in_batches(limit_env):
    # a time limit makes neal draw its reads in batches: no int64 copy of all the states
    bqm = tiny_bqm()
    limit_env(str(2000 * (6 * 5 + 16)))  # room for 5 bytes per entry, not 10
    neal = get_solver("neal")
    with pytest.raises(ValueError, match=r"^neal: num_reads=2000 x 6 variables"):
        neal.sample(bqm, num_reads=2000, num_sweeps=10, seed=1)
    result = neal.sample(bqm, num_reads=2000, num_sweeps=10, seed=1, time_limit=30)
    assert len(result) == 2000


def test_exact_refuses_states_beyond_the_limit(limit_env):
    limit_env("1K")
    with pytest.raises(ValueError, match=r"^exact: all 2\^10 states x 10 variables needs"):
        get_solver("exact").sample(tiny_bqm(10))


def test_torch_sa_batch_counts_all_problems(limit_env):
    if "torch-sa" not in AVAILABLE:
        pytest.skip("torch-sa is not available here")
    limit_env(str(1000 * (12 * 40 + 16) - 1))  # two problems of 6: 12 variables per read
    with pytest.raises(ValueError, match=r"^torch-sa: num_reads=1000 x 12 variables"):
        get_solver("torch-sa").sample_batch([tiny_bqm(), tiny_bqm(seed=4)], num_reads=1000)


def test_cpsat_huge_num_reads_allocates_nothing_and_solves():
    if "cpsat" not in AVAILABLE:
        pytest.skip("cpsat is not available here")
    bqm = tiny_bqm()
    result = get_solver("cpsat").sample(bqm, num_reads=10**12, num_workers=1, seed=0)
    assert len(result) <= 2**6  # only the solutions CP-SAT found
    assert result.first.energy == pytest.approx(enumerated_minimum(bqm))


@pytest.mark.filterwarnings("ignore:No agent has converged")  # sb-ref's package, on 6 spins
@pytest.mark.parametrize("name", available(SEEDED_SOLVERS))
def test_normal_runs_find_the_optimum_with_the_largest_seed(name, limit_env):
    bqm = tiny_bqm()
    params = {"seed": 2**31 - 1, **QUICK.get(name, {})}
    if name == "cpsat":
        params["num_workers"] = 1
    else:
        params["num_reads"] = 16
    result = get_solver(name).sample(bqm, **params)
    assert result.first.energy == pytest.approx(enumerated_minimum(bqm))


# --- parameter values: one line naming the solver and the parameter -------------------------


@pytest.mark.parametrize("seed", [{}, 1.5, -1, 2**31, True, "1", [1]])
@pytest.mark.parametrize("name", available(SEEDED_SOLVERS))
def test_bad_seed_is_one_line(name, seed):
    with pytest.raises(ValueError) as caught:
        get_solver(name).sample(tiny_bqm(), seed=seed, **QUICK.get(name, {}))
    assert str(caught.value) == (
        f"{name}: seed must be None or an integer in [0, 2^31 - 1], got {seed!r}"
    )


@pytest.mark.skipif("torch-sa" not in AVAILABLE, reason="torch-sa needs numba")
@pytest.mark.parametrize("seed", [{}, -1, 2**31, True])
@pytest.mark.parametrize("entry", ["sample_batch", "sample_structured"])
def test_torch_sa_batch_entries_check_the_seed(entry, seed):
    """The batch and structured entry points draw their start states from ``seed`` before
    the kernel sees it: a bad one must be the same one line as in ``sample``."""
    from ising_qubo.lowrank import LowRankIsing

    solver = get_solver("torch-sa")
    if entry == "sample_batch":
        call = lambda: solver.sample_batch([tiny_bqm()], num_reads=2, seed=seed)  # noqa: E731
    else:
        problem = LowRankIsing.from_binary(np.array([1.0, -2.0, 0.5]))
        call = lambda: solver.sample_structured(problem, num_reads=2, seed=seed)  # noqa: E731
    with pytest.raises(ValueError) as caught:
        call()
    assert str(caught.value) == (
        f"torch-sa: seed must be None or an integer in [0, 2^31 - 1], got {seed!r}"
    )


@pytest.mark.parametrize(
    "name", available(["neal", "tabu", "greedy", "de", "torch-sa", "torch-sb"])
)
def test_bad_initial_states_generator_is_one_line(name):
    with pytest.raises(ValueError, match=rf"^{name}: initial_states_generator must be 'none'"):
        get_solver(name).sample(tiny_bqm(), initial_states_generator={}, **QUICK.get(name, {}))


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("tabu", {"tenure": {}}, "tabu: tenure must be an integer below 2^63, got {}"),
        ("tabu", {"timeout": 0.5}, "tabu: timeout must be an integer (milliseconds) below 2^63"),
        ("tabu", {"num_restarts": float("inf")}, "tabu: num_restarts must be a number below 2^6"),
        ("tabu", {"energy_threshold": 1e300}, "tabu: energy_threshold must be a number below"),
        ("neal", {"beta_range": [{}, 1]}, "neal: beta_range must be two numbers [hot, cold]"),
        ("neal", {"beta_range": float("nan")}, "neal: beta_range must be two numbers [hot, co"),
        ("neal", {"randomize_order": "yes"}, "neal: randomize_order must be true or false"),
        ("neal", {"num_sweeps_per_beta": {}}, "neal: num_sweeps_per_beta must be an integer"),
        ("neal", {"proposal_acceptance_criteria": {}}, "neal: proposal_acceptance_criteria mu"),
        ("greedy", {"large_sparse_opt": {}}, "greedy: large_sparse_opt must be true or false"),
        ("cpsat", {"num_workers": {}}, "cpsat: num_workers must be a positive integer, got {}"),
        ("cpsat", {"num_workers": 0}, "cpsat: num_workers must be a positive integer, got 0"),
        ("cpsat", {"resolution": {}}, "cpsat: resolution must be a positive number, got {}"),
        ("cpsat", {"cardinality": {}}, "cpsat: cardinality must be a non-negative integer"),
        ("cpsat", {"cardinality": float("inf")}, "cpsat: cardinality must be a non-negative i"),
    ],
)
def test_bad_parameter_types_are_one_line(name, params, message):
    if name not in AVAILABLE:
        pytest.skip(f"{name} is not available here")
    with pytest.raises(ValueError) as caught:
        get_solver(name).sample(tiny_bqm(), **params)
    assert str(caught.value).startswith(message), caught.value


# --- the command line, under an address-space limit -----------------------------------------


def run_cli(args: list[str], address_space: int, env: dict[str, str] | None = None):
    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))

    return subprocess.run(
        [sys.executable, "-m", "ising_qubo.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit_memory,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def problem_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("limits") / "fifty.coo"
    qio.save(tiny_bqm(50), path)
    return path


@pytest.mark.parametrize("name", available(READS_SOLVERS))
def test_cli_refuses_before_allocating(name, problem_file):
    # 2 * 10^7 reads of 50 variables: dimod alone would draw 8 GB of int64 states, which
    # the address-space limit (3 GiB; 6 GiB where torch is imported) makes a MemoryError
    address_space = (6 if name in TORCH_SOLVERS else 3) * GiB
    args = ["solve", str(problem_file), "--solver", name, "--num-reads", str(2 * 10**7)]
    for key, value in QUICK.get(name, {}).items():
        args += ["--param", f"{key}={value}"]
    done = run_cli(args, address_space, {MEMORY_LIMIT_VARIABLE: "1G"})
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"ising-qubo: error: {name}: num_reads=20000000 ")
    assert "x 50 variables needs about" in lines[0]
    assert lines[0].endswith(f"the limit is 1.0 GiB ({MEMORY_LIMIT_VARIABLE}=1G)")


def test_cli_refuses_num_reads_of_10_to_the_12_under_the_default_limit(problem_file):
    done = run_cli(
        ["solve", str(problem_file), "--num-reads", str(10**12)],
        3 * GiB,
        {MEMORY_LIMIT_VARIABLE: ""},
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("ising-qubo: error: neal: num_reads=1000000000000 x 50 ")
    assert "the limit is" in done.stderr and "half of" in done.stderr


@pytest.mark.parametrize(
    ("param", "message"),
    [
        ("seed={}", "neal: seed must be None or an integer in [0, 2^31 - 1], got {}"),
        ("seed=1.5", "neal: seed must be None or an integer in [0, 2^31 - 1], got 1.5"),
        ("num_reads=-1", "neal: num_reads must be a positive integer, got -1"),
    ],
)
def test_cli_bad_parameter_is_one_line(problem_file, param, message):
    done = run_cli(["solve", str(problem_file), "--param", param], 3 * GiB)
    assert done.returncode == 2
    assert done.stderr == f"ising-qubo: error: {message}\n"


def test_cli_bad_limit_variable_is_one_line(problem_file):
    args = ["solve", str(problem_file), "--num-reads", "10"]
    done = run_cli(args, 3 * GiB, {MEMORY_LIMIT_VARIABLE: "lots"})
    assert done.returncode == 2
    assert done.stderr == (
        f"ising-qubo: error: {MEMORY_LIMIT_VARIABLE}='lots': expected a positive number of "
        "bytes (e.g. 8000000000 or 8G)\n"
    )
