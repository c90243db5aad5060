"""scripts/newcomer_walk.py: what it takes from a README (python blocks, concrete command
lines, placeholders), and that it fails, naming the README line, when an example fails.

The walk itself runs in CI (.ci/run: the whole walk, a fresh wheel and the pruning quick
start included); here, its reading of the README and its failure path, in seconds.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import newcomer_walk as walk  # noqa: E402  (a script, not a package)

SCRIPT = REPO / "scripts" / "newcomer_walk.py"

SAMPLE = textwrap.dedent("""\
    # tool

    Intro with `ising-qubo solve` in a sentence and `ising-qubo convert G1.txt - --to coo`.

    ## Set-up

        bash scripts/run.sh      # the main job
        bash scripts/test.sh     # the suite

    ## Python

    ```python
    import numpy as np
    print(np.zeros(2).sum())   # 0.0
    ```

    ## Command line

        ising-qubo --version
        ising-qubo info FILE [--instance K] [--json]
        ising-qubo bench INSTANCES... --solvers torch-sa,neal,... [--seeds N]
                              [--time-limit SEC]
        .venv/bin/ising-qubo prune --model resnet20 \\
            --keep 0.5 --out runs/r20

    ## Networks

    ```python
    import torch
    x = torch.zeros(1)
    ```

    ```python
    y = x + 1
    ```
""")


def test_python_blocks_keep_their_readme_lines_and_sections():
    blocks = walk.python_blocks(SAMPLE)
    lines = SAMPLE.splitlines()
    fences = [number + 1 for number, line in enumerate(lines, 1) if line == "```python"]
    assert [b.line for b in blocks] == fences  # the line after each opening fence
    assert [b.section for b in blocks] == ["Python", "Networks", "Networks"]
    for block in blocks:  # the line named is the block's first line of code
        assert lines[block.line - 1] == block.code.splitlines()[0]
    assert blocks[0].expected_prints() == ["0.0"]
    assert [b.heavy for b in blocks] == [False, True, False]


def test_command_lines_as_written_with_placeholders_filled_or_refused():
    found = {c.text: c for c in walk.commands(SAMPLE)}
    runnable = [t for t, c in found.items() if not c.skip]
    assert runnable == [
        "ising-qubo convert G1.txt - --to coo",  # inline, three words or more
        "bash scripts/run.sh",
        "ising-qubo --version",
        "ising-qubo info G1.txt",  # FILE filled, [--instance K] left at its default
        "ising-qubo info G1.txt --json",  # an optional flag: without and with it
        ".venv/bin/ising-qubo prune --model resnet20 --keep 0.5 --out runs/r20",  # joined
    ]
    assert found["bash scripts/test.sh"].skip == "the test suite itself"
    bench = next(c for t, c in found.items() if t.startswith("ising-qubo bench"))
    assert bench.skip == "placeholder INSTANCES..."
    assert found[runnable[-1]].heavy and not found["ising-qubo info G1.txt"].heavy
    assert "ising-qubo solve" not in found  # a name in a sentence, not a command


def test_the_readme_shows_the_main_job_and_a_bench_line():
    """What the walk relies on in the real README: the main job and a runnable bench line
    (for the progress bar on a terminal), and at least one quick python block."""
    text = (REPO / "README.md").read_text()
    runnable = [c.text for c in walk.commands(text) if not c.skip and not c.heavy]
    assert walk.MAIN_JOB in runnable
    assert any(" bench " in f" {t} " for t in runnable)
    assert any(not b.heavy for b in walk.python_blocks(text))


def _walk(readme, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--readme", str(readme), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_readme_without_the_main_job_fails_the_walk(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(SAMPLE.replace("bash scripts/run.sh", "bash scripts/go.sh"))
    done = _walk(readme)
    assert done.returncode == 1
    assert "no longer shows the main job" in done.stderr


@pytest.mark.slow
def test_a_failing_example_fails_the_walk_naming_its_line(tmp_path):
    """The main job runs (a few seconds), then the python block raises: exit 1, the
    block's README line in the message and the raising line in the traceback."""
    readme = tmp_path / "README.md"
    readme.write_text(
        "## Set-up\n\n    bash scripts/run.sh\n\n## Python\n\n```python\nx = 1\n"
        "raise ValueError(f'broken example {x}')\n```\n"
    )
    done = _walk(readme)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "bash scripts/run.sh: ok" in done.stdout  # the main job found 2098
    assert "python blocks at README.md:8 failed" in done.stderr
    assert 'File "README.md", line 9' in done.stderr and "broken example 1" in done.stderr
