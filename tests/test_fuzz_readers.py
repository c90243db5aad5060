"""The reader fuzzing targets (``tests/fuzz_readers.py``), run by CI for a bounded time.

Each run is a child process under an address-space limit, so a crash of the interpreter in
compiled code, a hang or a huge allocation fails the test instead of killing pytest.
``ISING_QUBO_FUZZ_SECONDS`` lengthens the run (default 16 s over all targets).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "fuzz_readers.py"
MEMORY_LIMIT = 4 * 2**30  # far above what reading a mutated file of a few hundred bytes needs

pytestmark = pytest.mark.slow


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _fuzz(args: list[str], tmp_path: Path, prelude: str = "") -> subprocess.CompletedProcess:
    """Run the driver in a child; ``prelude`` is Python run before it (to swap a reader)."""
    code = (
        f"import sys; sys.path.insert(0, {str(HERE)!r}); import fuzz_readers\n"
        f"{prelude}\nsys.exit(fuzz_readers.main(sys.argv[1:]))"
    )
    seconds = float(args[args.index("--seconds") + 1])
    return subprocess.run(
        [sys.executable, "-c", code, *args, "--last", str(tmp_path / "last-input")],
        capture_output=True,
        text=True,
        timeout=seconds + 120,  # a hang of any single read is a failure too
        preexec_fn=_limit_memory,
        cwd=tmp_path,
    )


def test_every_reader_survives_structured_mutations(tmp_path):
    seconds = os.environ.get("ISING_QUBO_FUZZ_SECONDS", "16")
    done = _fuzz(["--seconds", seconds], tmp_path)
    last = tmp_path / "last-input"
    assert done.returncode == 0, (
        f"exit {done.returncode}; last input {last.read_bytes()[:300]!r}\n{done.stderr[-3000:]}"
    )
    report = json.loads(done.stdout)
    assert sorted(report) == sorted(["bqm", "json", "coo", "qubo", "gset", "bqp", "sniffed"])
    for target, counts in report.items():
        assert counts["inputs"] >= 20, (target, counts)
        assert counts["accepted"] + counts["refused"] == counts["inputs"]
        assert counts["refused"] > 0, (target, counts)  # the mutations do break files


def test_the_bqm_target_finds_the_bugs_of_an_unchecked_reader(tmp_path):
    """Swap our validating .bqm reader for dimod's own (which trusts the file): the target
    must then fail, by a wrong exception or by the interpreter dying in compiled code."""
    prelude = (
        "import dimod\n"
        "from ising_qubo.io import native\n"
        "from ising_qubo.io._instance import Instance\n"
        "def trusting(path):\n"
        "    with open(path, 'rb') as f:\n"
        "        return [Instance(bqm=dimod.BinaryQuadraticModel.from_file(f), name='x', "
        "path=path)]\n"
        "native.read = trusting\n"
    )
    done = _fuzz(["--seconds", "30", "--target", "bqm"], tmp_path, prelude)
    assert done.returncode != 0
    assert done.returncode < 0 or "Finding" in done.stderr, done.stderr[-2000:]


# The first finding of the structured JSON target (2026-11-29): a label equal to an
# integer beyond 64 bits reached dimod, which raised OverflowError (a traceback).
@pytest.mark.parametrize(
    ("label", "reason"),
    [
        (1e30, "label 1e+30 is an integer beyond 64 bits"),
        (2**63, "label 9223372036854775808 is an integer beyond 64 bits"),
        (-(2**63) - 1, "label -9223372036854775809 is an integer beyond 64 bits"),
        (float("inf"), "label inf is not a finite number"),
    ],
)
def test_labels_dimod_cannot_index_are_one_line(tmp_path, label, reason):
    import dimod

    import ising_qubo.io as qio

    bqm = dimod.BinaryQuadraticModel({0: 1.0, 1: 2.0}, {(0, 1): 1.0}, 0.0, "SPIN")
    path = qio.save(bqm, tmp_path / "model.json")
    document = json.loads(path.read_text())
    document["variable_labels"] = [0, label]
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError) as caught:
        qio.load_all(path)
    assert str(caught.value) == f"{path}: malformed BQM JSON document (variable_labels: {reason})"
    coo = tmp_path / "model.coo"
    coo.write_text(f"# vartype=SPIN\n# label 1 {json.dumps(label)}\n0 1 1.0\n")
    with pytest.raises(ValueError, match=reason.replace("+", r"\+")):
        qio.load_all(coo)
    # the largest ones dimod takes still load
    document["variable_labels"] = [0, 2**63 - 1]
    path.write_text(json.dumps(document))
    assert list(qio.load_all(path)[0].variables) == [0, 2**63 - 1]
