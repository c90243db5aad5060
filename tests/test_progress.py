"""Progress for a person at a terminal: bars and status lines go to stderr, bars only when
stderr is a terminal, ``--quiet`` silences both, standard output keeps only the result.

stderr is a real pseudo-terminal here (``os.openpty``): what tqdm and ``setup.sh`` decide
from ``isatty`` / ``[ -t 2 ]`` is what a person would see. One run is a real ``ising-qubo``
process; the others call :func:`ising_qubo.cli.app.main` in this process with ``sys.stderr``
on the terminal (cheaper: torch is imported once).
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import termios
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
from conftest import REPO, resnet20_prune_args, write_image_folder

from ising_qubo import _progress
from ising_qubo import io as problem_io
from ising_qubo.cli import app

T = TypeVar("T")
BAR = "%|"  # tqdm's "desc:  40%|####      | 2/5 [...]"
COLUMNS = 120


class Terminal:
    """A pseudo-terminal whose output is collected: write to ``slave``, then ``close()``
    and read ``text``."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        size = struct.pack("HHHH", 24, COLUMNS, 0, 0)  # rows, columns: what tqdm sizes to
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, size)
        self._chunks: list[bytes] = []
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: every writer has closed the terminal
                return
            if not data:
                return
            self._chunks.append(data)

    def close(self) -> str:
        """Close this end of the slave; the text once every writer has closed it."""
        os.close(self.slave)
        self._reader.join(timeout=30)
        os.close(self.master)
        return b"".join(self._chunks).decode("utf-8", "replace")


def terminal_env() -> dict[str, str]:
    return {**os.environ, "TERM": "xterm", "COLUMNS": str(COLUMNS)}


def run_process(args: Sequence[str], terminal: bool, cwd: Path | None = None, **env: str):
    """``args`` as a process with stderr on a pseudo-terminal (or a pipe): (code, stdout,
    stderr)."""
    environment = {**terminal_env(), **env}
    if not terminal:
        done = subprocess.run(
            args, capture_output=True, text=True, env=environment, cwd=cwd, timeout=300
        )
        return done.returncode, done.stdout, done.stderr
    tty = Terminal()
    with subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=tty.slave,
        env=environment,
        cwd=cwd,
    ) as process:
        out, _ = process.communicate(timeout=300)
    return process.returncode, out.decode(), tty.close()


def in_process(
    terminal: bool, call: Callable[..., T], *args: Any, **kwargs: Any
) -> tuple[T, str, str]:
    """``call(*args, **kwargs)`` with ``sys.stderr`` on a pseudo-terminal (or a plain text
    buffer, as in a pipe) and ``sys.stdout`` a buffer: (its result, stdout, stderr)."""
    stdout = io.StringIO()
    tty = Terminal() if terminal else None
    stderr = open(os.dup(tty.slave), "w", encoding="utf-8", buffering=1) if tty else io.StringIO()
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = stdout, stderr
    try:
        result = call(*args, **kwargs)
    finally:
        sys.stdout, sys.stderr = saved
    if tty is None:
        return result, stdout.getvalue(), stderr.getvalue()
    stderr.close()
    return result, stdout.getvalue(), tty.close()


def run_main(argv: Sequence[str], terminal: bool) -> tuple[int, str, str]:
    """``ising-qubo ARGV`` in this process: (exit code, stdout, stderr)."""
    return in_process(terminal, app.main, [str(a) for a in argv])


def assert_no_bar(text: str) -> None:
    assert BAR not in text and "\r" not in text.replace("\r\n", "\n"), text


# --- data loading ------------------------------------------------------------------------


def test_data_loading_bars_on_a_terminal_only(tmp_path, one_torch_thread):
    import torch
    from test_data import write_cifar10, write_fashion  # its writers of the real formats

    from ising_qubo.nets.data import load_dataset

    write_cifar10(tmp_path / "cifar")
    write_fashion(tmp_path / "fashion")
    write_image_folder(tmp_path / "images", per_class=(100, 100, 100), size=(4, 4))
    loads = {
        "read CIFAR-10 train": (("cifar10", tmp_path / "cifar", "train"), "/5 ["),  # 5 files
        "read Fashion-MNIST test": (("fashion-mnist", tmp_path / "fashion", "test"), "/2 ["),
        # 300 images, decoded by 2 threads
        "load train images": (("imagefolder", tmp_path / "images", "train"), "/300 ["),
    }
    for label, (args, total) in loads.items():
        options = {"num_workers": 2} if args[0] == "imagefolder" else {}
        dataset, out, shown = in_process(True, load_dataset, *args, **options)
        assert label in shown and BAR in shown and total in shown, (label, shown)
        assert out == ""
        for terminal, progress in [(False, True), (True, False)]:
            again, out, err = in_process(
                terminal, load_dataset, *args, progress=progress, **options
            )
            assert out == err == "" and torch.equal(again.images, dataset.images)
        with _progress.output_level(_progress.Level.STATUS):  # --no-progress, --quiet
            _, out, err = in_process(True, load_dataset, *args, **options)
        assert out == err == ""


# --- evaluate -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    import torch

    from ising_qubo.nets.models import build
    from ising_qubo.nets.persist import save_pruned

    torch.manual_seed(0)
    return save_pruned(build("resnet20", num_classes=4), tmp_path_factory.mktemp("m") / "model")


def evaluate_args(model: Path, images: Path, *options: str) -> list[str]:
    # 32 test images in batches of 8: a bar of 4 steps
    data = ["--dataset", "imagefolder", "--data-dir", str(images), "--batch-size", "8"]
    return ["evaluate", str(model), *data, *options]


@pytest.mark.slow  # a fresh interpreter imports torch: ~5 s, ~15 s on a loaded machine
def test_evaluate_draws_its_bar_on_the_terminal_and_prints_clean_json(saved_model, image_folder):
    """A real process: fd 2 is the terminal, stdout a pipe that gets the JSON only."""
    args = [sys.executable, "-m", "ising_qubo", *evaluate_args(saved_model, image_folder)]
    code, out, err = run_process([*args, "--json"], terminal=True, OMP_NUM_THREADS="1")
    assert code == 0, err
    assert BAR in err and "/4 [" in err and "batch" in err, err  # the bar over 4 batches
    assert "load test images" in err  # the image folder's decoding bar
    result = json.loads(out)  # one line of JSON and nothing else
    assert out.count("\n") == 1 and result["count"] == 32
    assert BAR not in out


def test_evaluate_quiet_and_off_a_terminal_draw_nothing(
    saved_model, image_folder, one_torch_thread
):
    args = evaluate_args(saved_model, image_folder, "--json")
    code, out, shown = run_main(args, terminal=True)
    assert code == 0 and BAR in shown and "evaluate" in shown
    expected = json.loads(out)
    for options, terminal in [(["--quiet"], True), (["-q"], True), ([], False)]:
        code, out, err = run_main([*args, *options], terminal)
        assert code == 0, err
        assert err == "", (options, terminal, err)  # no bar, no status line, nothing
        assert json.loads(out) == expected  # the requested output is complete
    code, out, err = run_main([*args, "--no-progress"], terminal=True)
    assert code == 0 and json.loads(out) == expected
    assert_no_bar(err)
    code, out, err = run_main(evaluate_args(saved_model, image_folder, "-q"), terminal=True)
    assert err == "" and out.startswith("top-1 ") and "32 test images" in out


# --- prune: status lines ------------------------------------------------------------------


def prune_args(images: Path, out: Path, *options: str) -> list[str]:
    quick = ["--batch-size", "16", "--finetune-epochs", "0", "--solver-param", "num_sweeps=50"]
    return [*resnet20_prune_args(images, *quick, "--out", str(out)), *options]


STATUS = ("loading imagefolder", "starting model: test top-1", "building the pruning problem")
# with no training epoch the Ising problem is solved at pruning time (else during training)
SOLVING = "solving the pruning problem with torch-sa"


@pytest.mark.slow  # four tiny prune runs: ~5 s, ~15 s on a loaded machine
def test_prune_status_lines_on_a_terminal_epoch_lines_in_logs(
    tmp_path, image_folder, one_torch_thread
):
    code, out, err = run_main(prune_args(image_folder, tmp_path / "a", "--epochs", "1"), True)
    assert code == 0, err
    for line in (*STATUS, "removing the pruned channels", "final model: test top-1"):
        assert line in err, (line, err)
    assert "train 1" in err and BAR in err  # the epoch's bar
    assert "\ntrain epoch 1: loss" in err.replace("\r", "\n")  # a line of its own
    # stdout: the result summary only
    assert out.splitlines()[0].startswith("parameters ") and len(out.splitlines()) == 4
    assert BAR not in out and "loading" not in out and "train epoch" not in out

    # off a terminal: no bar, no status line, but the epoch's line stays (a log keeps it)
    code, out, err = run_main(prune_args(image_folder, tmp_path / "b", "--epochs", "1"), False)
    assert code == 0 and len(out.splitlines()) == 4
    assert [line.split(":")[0] for line in err.splitlines()] == ["train epoch 1"], err

    no_bars = prune_args(image_folder, tmp_path / "c", "--epochs", "0", "--no-progress")
    code, out, err = run_main(no_bars, True)
    assert code == 0 and all(line in err for line in (*STATUS, SOLVING)), err
    assert_no_bar(err)

    quiet = prune_args(image_folder, tmp_path / "d", "--epochs", "1", "--quiet")
    code, out, err = run_main(quiet, True)
    assert code == 0 and err == ""  # not even the epoch's line
    assert "parameters " in out and (tmp_path / "d" / "report.json").is_file()


# --- bench ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bqp50_first(tmp_path_factory) -> Path:
    """Instance 1 of examples/instances/bqp50.txt alone (no best-known value: a run takes
    its whole time limit)."""
    instance = problem_io.read_instance(REPO / "examples/instances/bqp50.txt", instance=1)
    return problem_io.save(instance.bqm, tmp_path_factory.mktemp("bqp") / "bqp50-1.qubo")


def test_bench_bar_only_on_a_terminal_and_not_with_quiet(tmp_path, bqp50_first):
    args = ["bench", bqp50_first, "--solvers", "neal", "--seeds", "1", "--time-limit", "0.5"]
    args += ["--no-plot"]
    code, out, err = run_main([*args, "--out", tmp_path / "tty"], terminal=True)
    assert code == 0 and BAR in err and "bench" in err and "1/1" in err, err
    assert "| neal |" in out and BAR not in out  # the table on stdout, the bar not

    code, out, err = run_main([*args, "--out", tmp_path / "pipe"], terminal=False)
    assert code == 0 and "| neal |" in out
    assert_no_bar(err)

    code, out, err = run_main([*args, "--out", tmp_path / "quiet", "--quiet"], terminal=True)
    assert code == 0 and err == ""
    # --quiet keeps its old meaning too: no table, only the line naming the files
    assert out.strip() == (
        f"wrote {tmp_path / 'quiet'}/results.json, table.md, summary.csv, summary.tex"
    )
    assert json.loads((tmp_path / "quiet" / "results.json").read_text())["runs"]


# --- scripts/setup.sh --------------------------------------------------------------------

FAKE_PYTHON = """#!/bin/sh
# the interpreter setup.sh starts from: a version check, then -m venv
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
  mkdir -p "$3/bin" && cp "$FAKE_VENV_PYTHON" "$3/bin/python" && exit 0
fi
exit 0
"""

FAKE_VENV_PYTHON = """#!/bin/sh
# .venv/bin/python: pip writes its usual step lines, slowly; the import check passes
if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then
  echo "$@" > .venv/pip-args
  echo "Obtaining file:///checkout"
  sleep "$FAKE_PIP_DELAY"
  echo "Collecting alpha>=1"
  echo "  Downloading alpha-1.0-py3-none-any.whl (1.2 MB)"
  sleep "$FAKE_PIP_DELAY"
  echo "Installing collected packages: alpha"
  if [ "$FAKE_PIP_FAIL" = 1 ]; then echo "ERROR: No matching distribution for beta"; exit 1; fi
  echo "Successfully installed alpha-1.0"
fi
exit 0
"""

PIP_LINES = [
    "Obtaining file:///checkout",
    "Collecting alpha>=1",
    "Downloading alpha-1.0-py3-none-any.whl (1.2 MB)",
    "Installing collected packages: alpha",
    "Successfully installed alpha-1.0",
]
STEPS = [
    "setup.sh: creating .venv",
    "setup.sh: installing ising-qubo[dev] into .venv: several minutes, log in "
    ".venv/pip-install.log",
]


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A copy of scripts/setup.sh with a pyproject.toml and fake interpreters: no network,
    no real install."""
    root = tmp_path / "checkout"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "setup.sh", root / "scripts" / "setup.sh")
    (root / "pyproject.toml").write_text("[project]\nname = 'fake'\n")
    for name, text in (("python", FAKE_PYTHON), ("venv-python", FAKE_VENV_PYTHON)):
        (tmp_path / name).write_text(text)
        (tmp_path / name).chmod(0o755)
    return root


def setup(root: Path, terminal: bool, delay: float = 0, fail: bool = False):
    fake = root.parent
    return run_process(
        ["bash", "scripts/setup.sh"],
        terminal,
        cwd=root,
        PYTHON=str(fake / "python"),
        FAKE_VENV_PYTHON=str(fake / "venv-python"),
        FAKE_PIP_DELAY=str(delay),
        FAKE_PIP_FAIL="1" if fail else "0",
    )


def test_setup_off_a_terminal_says_each_step_once_and_nothing_when_up_to_date(checkout):
    code, out, err = setup(checkout, terminal=False)
    assert code == 0 and out == ""
    assert err.splitlines() == STEPS  # one line per step, no redrawn line
    assert (checkout / ".venv/.ising-qubo-installed").is_file()
    assert (checkout / ".venv/pip-args").read_text().split()[-2:] == ["-e", ".[dev]"]
    (checkout / ".venv/pip-args").unlink()
    assert setup(checkout, terminal=False) == (0, "", "")  # up to date: a no-op
    assert setup(checkout, terminal=True) == (0, "", "")
    assert not (checkout / ".venv/pip-args").exists()
    stamp = (checkout / ".venv/.ising-qubo-installed").stat().st_mtime
    os.utime(checkout / "pyproject.toml", (stamp + 10, stamp + 10))  # a stale stamp
    code, out, err = setup(checkout, terminal=False)
    assert (code, out, err.splitlines()) == (0, "", STEPS[1:])


def test_setup_on_a_terminal_follows_pip_on_one_line_and_clears_it(checkout):
    code, out, err = setup(checkout, terminal=True, delay=1.5)
    assert code == 0 and out == ""
    lines = err.split("\r\n")
    assert lines[:2] == STEPS
    live = lines[2]  # the redrawn line: each drawing starts with CR and erase-line
    drawings = live.split("\r\x1b[K")
    assert drawings[0] == "" and drawings[-1] == "", repr(live)  # cleared at the end
    shown = [d for d in drawings if d]
    assert len(shown) >= 2, repr(live)  # redrawn about once a second
    # each: seconds elapsed, then the latest of pip's step lines so far (or none yet)
    message = "|".join(map(re.escape, PIP_LINES))
    assert all(re.fullmatch(rf"  \d+ s  ({message})?", d) for d in shown), shown
    assert any("alpha" in d for d in shown), shown  # pip's progress reached the line
    assert all(len(d) < COLUMNS for d in shown)
    assert (checkout / ".venv/.ising-qubo-installed").is_file()


def test_setup_failure_prints_the_log_and_exits_1(checkout):
    code, out, err = setup(checkout, terminal=False, fail=True)
    assert code == 1 and out == ""
    assert "ERROR: No matching distribution for beta" in err
    assert err.rstrip().endswith(
        "ising-qubo: installing into .venv failed (log: .venv/pip-install.log)"
    )
    assert not (checkout / ".venv/.ising-qubo-installed").exists()
