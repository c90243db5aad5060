"""What ``prune --resume`` reads is validated before use, and one run directory has one owner.

A tiny finished run is made once (its checkpoint is in the fine-tuning phase, so a resume
reads ``checkpoint.pt``, ``config.json`` and ``pruned_init/``); every test tampers with a
copy of it and resumes through the CLI. A malformed file must end in exit 2 with one line
that names the file and the key, leave the directory as it was, and not hang (the "billion
laughs" history would take hours if it were walked as a tree).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import resnet20_prune_args
from timing import cpu_timed

from ising_qubo.cli import main
from ising_qubo.io._dirlock import LOCK_FILE, DirectoryInUseError, DirectoryLock
from ising_qubo.nets.training import load_checkpoint, save_checkpoint
from ising_qubo.nets.training.checkpoint_schema import MAX_ENTRIES, check_tree_size

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


def prune_args(data_dir: Path, out: Path, *extra: str) -> list[str]:
    options = ["--method", "l1", "--epochs", "0", "--finetune-epochs", "1", "--batch-size", "16"]
    return resnet20_prune_args(data_dir, *options, "--no-progress", "--out", str(out), *extra)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, image_folder) -> Path:
    out = tmp_path_factory.mktemp("finished") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(prune_args(image_folder, out)) == 0
    finally:
        torch.set_num_threads(threads)
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["phase"] == "finetune"  # a resume rebuilds the model from pruned_init/
    assert not (out / LOCK_FILE).exists()  # a finished run leaves no lock file behind
    return out


@pytest.fixture
def run_copy(tmp_path, finished_run) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    return copy


def snapshot(folder: Path) -> dict[str, bytes]:
    """The files under ``folder``; config.json without "out" (a resume that gets as far as
    pruned_init/ has rewritten it with its own --out, the options unchanged)."""
    files = {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }
    try:
        config = json.loads(files["config.json"])
        config.pop("out")
        files["config.json"] = json.dumps(config).encode()
    except (ValueError, AttributeError, KeyError, TypeError, RecursionError):
        pass  # a tampered config.json: compared as bytes
    return files


def resume(capsys, image_folder, out: Path) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = main(prune_args(image_folder, out, "--resume"))
    return code, capsys.readouterr().err.strip().splitlines()


# ----- tampering ------------------------------------------------------------------------


def edit_checkpoint(edit):
    def tamper(run: Path) -> None:
        state = load_checkpoint(run / "checkpoint.pt")
        edit(state)
        save_checkpoint(run / "checkpoint.pt", **state)

    return tamper


def write_checkpoint_raw(edit):
    """For what save_checkpoint refuses to write (cycles), as a hostile file would be."""

    def tamper(run: Path) -> None:
        state = load_checkpoint(run / "checkpoint.pt")
        edit(state)
        torch.save(state, run / "checkpoint.pt")

    return tamper


def edit_json(name: str, edit):
    def tamper(run: Path) -> None:
        path = run / name
        data = json.loads(path.read_text())
        path.write_text(json.dumps(edit(data)))

    return tamper


def with_key(data: dict, key: str, value) -> dict:
    data[key] = value
    return data


def with_spec_classes(arch: dict, classes: int) -> dict:
    arch["spec"]["kwargs"]["num_classes"] = classes
    return arch


def with_wider_layer(arch: dict) -> dict:
    arch["modules"]["conv1"]["out_channels"] = 10**6  # resnet20's stem has 16
    return arch


def cyclic_report(state: dict) -> None:
    loop: list = [1]
    loop.append(loop)
    state["report"]["loop"] = loop


def deep_report(state: dict) -> None:
    nested: list = []
    for _ in range(100):
        nested = [nested]
    state["report"]["deep"] = nested


CASES = [
    # name, tamper, file, key (as the message names it)
    ("no history", edit_checkpoint(lambda s: s.pop("history")), "checkpoint.pt", "history"),
    ("no phase", edit_checkpoint(lambda s: s.pop("phase")), "checkpoint.pt", "phase"),
    ("epoch 'abc'", edit_checkpoint(lambda s: s.update(epoch="abc")), "checkpoint.pt", "epoch"),
    ("epoch True", edit_checkpoint(lambda s: s.update(epoch=True)), "checkpoint.pt", "epoch"),
    ("unknown phase", edit_checkpoint(lambda s: s.update(phase="x")), "checkpoint.pt", "phase"),
    (
        "history a list",
        edit_checkpoint(lambda s: s.update(history=[1])),
        "checkpoint.pt",
        "history",
    ),
    (
        "history column of lists",
        edit_checkpoint(lambda s: s["history"].update(test_top1=[[1.0]])),
        "checkpoint.pt",
        "history",
    ),
    (
        "history columns of unequal length",
        edit_checkpoint(lambda s: s["history"].update(test_top1=[1.0, 2.0])),
        "checkpoint.pt",
        "history",
    ),
    (
        "model not tensors",
        edit_checkpoint(lambda s: s.update(model={"w": 1})),
        "checkpoint.pt",
        "model",
    ),
    (
        "optimizer without param_groups",
        edit_checkpoint(lambda s: s.update(optimizer={"state": {}})),
        "checkpoint.pt",
        "optimizer",
    ),
    (
        "timing as text",
        edit_checkpoint(lambda s: s["timing"].update(train="fast")),
        "checkpoint.pt",
        "timing",
    ),
    (
        "report stage without params",
        edit_checkpoint(lambda s: s["report"]["before_pruning"].pop("params")),
        "checkpoint.pt",
        "report",
    ),
    ("cyclic report", write_checkpoint_raw(cyclic_report), "checkpoint.pt", "report"),
    ("report nested 100 deep", edit_checkpoint(deep_report), "checkpoint.pt", "report"),
    (
        "config.json a list",
        lambda run: (run / "config.json").write_text("[1, 2]"),
        "config.json",
        None,
    ),
    (
        "config.json epochs '3'",
        edit_json("config.json", lambda c: with_key(c, "epochs", "3")),
        "config.json",
        "epochs",
    ),
    (
        "config.json keep true",
        edit_json("config.json", lambda c: with_key(c, "keep", True)),
        "config.json",
        "keep",
    ),
    (
        "config.json unknown key",
        edit_json("config.json", lambda c: with_key(c, "rm", "-rf")),
        "config.json",
        "rm",
    ),
    (
        "config.json nested 10^5 deep",
        lambda run: (run / "config.json").write_text("[" * 100_000 + "]" * 100_000),
        "config.json",
        None,
    ),
    (
        "pruned_init declaring 10^9 classes",
        edit_json("pruned_init/architecture.json", lambda a: with_spec_classes(a, 10**9)),
        "pruned_init/architecture.json",
        "spec.kwargs.num_classes",
    ),
    (
        "pruned_init layer wider than the unpruned one",
        edit_json("pruned_init/architecture.json", with_wider_layer),
        "pruned_init/architecture.json",
        "modules",
    ),
]


@pytest.mark.parametrize(
    ("tamper", "file", "key"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_a_malformed_resume_file_is_one_line_naming_file_and_key(
    capsys, image_folder, run_copy, tamper, file, key
):
    tamper(run_copy)
    before = snapshot(run_copy)
    code, lines = resume(capsys, image_folder, run_copy)
    assert code == 2, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"ising-qubo: error: {run_copy / file}: "), lines[0]
    if key is not None:
        assert f"key '{key}'" in lines[0], lines[0]
    assert snapshot(run_copy) == before  # refused before anything was written


def test_the_untouched_copy_resumes(capsys, image_folder, run_copy):
    """The cases above fail because of their tampering, not because of the copy."""
    code, lines = resume(capsys, image_folder, run_copy)
    assert code == 0, lines
    assert not (run_copy / LOCK_FILE).exists()


# ----- the billion laughs -----------------------------------------------------------------


def laughs(levels: int, width: int = 10) -> list:
    """One list referenced ``width`` times at each of ``levels`` levels: ``width**levels``
    leaves as a tree, ``levels`` small lists in memory and in the file."""
    node: list = [1.0] * width
    for _ in range(levels - 1):
        node = [node] * width
    return node


def tree_size(value) -> int:
    """Entries counted by walking every reference (the reference for check_tree_size)."""
    if isinstance(value, dict):
        return 1 + sum(tree_size(k) + tree_size(v) for k, v in value.items())
    if isinstance(value, (list, tuple, set)):
        return 1 + sum(tree_size(v) for v in value)
    return 1


def test_tree_size_counts_every_reference_but_visits_each_container_once():
    shared = {"a": laughs(3, width=4), "b": (laughs(2), laughs(2)), "c": [None, "x"]}
    shared["d"] = [shared["a"], shared["a"]]
    assert check_tree_size(shared, "f.pt", "k") == tree_size(shared)
    with cpu_timed() as run, pytest.raises(ValueError, match=r"^f\.pt: key 'k' is too large"):
        check_tree_size(laughs(12), "f.pt", "k")  # 10**12 leaves as a tree
    # CPU time (the work done, which load cannot stretch): the budget's visits take about
    # 0.05 s; visiting 10**12 leaves would take days
    assert run.seconds < 5
    assert check_tree_size(laughs(5), "f.pt", "k") == tree_size(laughs(5)) < MAX_ENTRIES


def test_a_billion_laughs_history_is_saved_quickly_and_refused_on_resume(
    tmp_path, image_folder, run_copy
):
    state = load_checkpoint(run_copy / "checkpoint.pt")
    state["history"]["train_loss"] = laughs(9)  # 10**9 floats as a tree
    with cpu_timed() as run:
        save_checkpoint(run_copy / "checkpoint.pt", **state)  # checks each list once
    # CPU time (the work done, which load cannot stretch): well under a second here;
    # checking the 10**9 floats as a tree would take hours
    assert run.seconds < 30
    assert (run_copy / "checkpoint.pt").stat().st_size < 2 * 2**20
    # in a process of its own: a regression would hang, and this ends it
    result = subprocess.run(
        [sys.executable, "-m", "ising_qubo.cli", *prune_args(image_folder, run_copy, "--resume")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert lines == [
        f"ising-qubo: error: {run_copy / 'checkpoint.pt'}: key 'history' is too large: the "
        f"checkpoint would hold over {MAX_ENTRIES:,} entries (a shared reference counts each "
        f"time it appears); not a checkpoint this tool wrote"
    ]


# ----- one owner per run directory ----------------------------------------------------------


def test_a_second_process_on_a_locked_run_is_refused_in_one_line(capsys, image_folder, run_copy):
    before = snapshot(run_copy)
    with DirectoryLock(run_copy, what="run directory"):
        assert (run_copy / LOCK_FILE).read_text().strip() == str(os.getpid())
        code, lines = resume(capsys, image_folder, run_copy)
        assert code == 2
        assert lines == [
            f"ising-qubo: error: run directory {run_copy} is in use by another process "
            f"(pid {os.getpid()}); wait for it to end or choose another --out"
        ]
        # a fresh start on the same --out is refused the same way, before anything else
        capsys.readouterr()
        assert main(prune_args(image_folder, run_copy)) == 2
        assert "is in use by another process" in capsys.readouterr().err
    assert snapshot(run_copy) == before  # the holder released: its lock file went too


def test_a_killed_holder_frees_the_run_and_the_next_resume_proceeds(capsys, image_folder, run_copy):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from ising_qubo.io._dirlock import DirectoryLock; "
            "DirectoryLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(300)",
            str(run_copy),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        code, lines = resume(capsys, image_folder, run_copy)
        assert code == 2
        assert len(lines) == 1 and f"in use by another process (pid {holder.pid})" in lines[0]
    finally:
        holder.send_signal(signal.SIGKILL)  # no release: the kernel drops the flock
        holder.wait(timeout=60)
    assert (run_copy / LOCK_FILE).exists()  # what the killed holder left behind
    code, lines = resume(capsys, image_folder, run_copy)
    assert code == 0, lines
    assert json.loads((run_copy / "report.json").read_text())["history"]["phase"] == ["finetune"]
    assert not (run_copy / LOCK_FILE).exists()


def test_a_failed_start_leaves_no_directory_behind(capsys, tmp_path):
    out = tmp_path / "new" / "run"
    capsys.readouterr()
    assert main(prune_args(tmp_path / "no-such-data", out)) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "new").exists()  # the lock made both folders and removed them


def test_the_lock_is_exclusive_and_removes_what_it_made(tmp_path):
    first = DirectoryLock(tmp_path / "d", what="run directory")
    first.acquire()
    with pytest.raises(DirectoryInUseError, match=rf"run directory {tmp_path / 'd'} is in use"):
        DirectoryLock(tmp_path / "d", what="run directory").acquire()
    first.release()
    assert not (tmp_path / "d").exists()  # made by the lock, left empty: removed
    with DirectoryLock(tmp_path / "d"):  # free again
        pass


def test_a_lock_taken_on_a_file_just_removed_is_taken_again_on_the_new_one(tmp_path, monkeypatch):
    """The previous holder removes the lock file between our open and our flock: we then
    hold a lock on a file nobody else can open, and must lock the one at the path."""
    import fcntl

    from ising_qubo.io import _dirlock

    real_flock = fcntl.flock
    calls = []

    def released_in_between(fd, operation):
        if not calls:
            os.unlink(tmp_path / LOCK_FILE)  # what the previous holder's release does
        calls.append(fd)
        return real_flock(fd, operation)

    monkeypatch.setattr(_dirlock.fcntl, "flock", released_in_between)
    lock = DirectoryLock(tmp_path)
    lock.acquire()
    monkeypatch.setattr(_dirlock.fcntl, "flock", real_flock)
    assert len(calls) == 2  # the orphan, then the file at the path
    assert (tmp_path / LOCK_FILE).read_text().strip() == str(os.getpid())
    with pytest.raises(DirectoryInUseError):
        DirectoryLock(tmp_path).acquire()
    lock.release()
    assert list(tmp_path.iterdir()) == []
