"""Output paths (issue 17): a regular file is replaced atomically, a character device or a
FIFO is written in place (never renamed over: ``solve --json /dev/null`` as root once made
``/dev/null`` a plain file), a directory is refused, and a failed write (disk full) is one
line and a non-zero exit with the old file kept and no temporary file left.

Run as root, the devices written are private copies made with ``mknod`` in ``tmp_path``
(the same major/minor numbers as ``/dev/null`` and ``/dev/full``): a regression must not
be able to replace the machine's own. Other users write the real ones, which they cannot
replace anyway (creating the temporary file in ``/dev`` fails).
"""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import socket
import stat
import tempfile
import threading
from pathlib import Path

import dimod
import pytest

from ising_qubo import io as qio
from ising_qubo.cli import app
from ising_qubo.io._atomic import (
    atomic_path,
    atomic_write,
    remove_stale_temporaries,
)

BQM = dimod.BinaryQuadraticModel(
    {0: -1.0, 1: 2.0, 2: -3.0}, {(0, 1): -4.0, (1, 2): 1.5}, 0.5, "BINARY"
)
OPTIMUM = min(dimod.ExactSolver().sample(BQM).record.energy)  # brute force over 8 states


@pytest.fixture()
def problem(tmp_path) -> Path:
    return qio.save(BQM, tmp_path / "small.coo")


def solve_json(capsys, problem: Path, out: object) -> tuple[int, str]:
    code = app.main(["solve", str(problem), "--solver", "exact", "--json", str(out)])
    return code, capsys.readouterr().err


def one_error_line(code: int, stderr: str) -> str:
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith("ising-qubo: error: "), stderr
    return lines[0].removeprefix("ising-qubo: error: ")


def char_device(tmp_path: Path, name: str, minor: int) -> Path:
    """``/dev/<name>`` (major 1), or as root a private node of the same device."""
    if os.geteuid() != 0:
        if not os.path.exists(f"/dev/{name}"):
            pytest.skip(f"no /dev/{name}")
        return Path(f"/dev/{name}")
    path = tmp_path / name
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, minor))
    except OSError as exc:  # a container without CAP_MKNOD: never fall back to the real one
        pytest.skip(f"cannot make a private /dev/{name} as root: {exc}")
    return path


class FifoReader:
    """Reads a FIFO to its end in a thread (a writer's ``open`` waits for a reader)."""

    def __init__(self, path: Path) -> None:
        self.data: bytes | None = None
        self.thread = threading.Thread(target=self._read, args=(path,), daemon=True)
        self.thread.start()

    def _read(self, path: Path) -> None:
        with open(path, "rb") as fifo:
            self.data = fifo.read()

    def result(self) -> bytes:
        self.thread.join(timeout=60)
        assert self.data is not None, "nothing reached the FIFO's reader"
        return self.data


def entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# --- devices and FIFOs are written in place -------------------------------------------


def test_solve_json_into_a_fifo_writes_the_result_and_keeps_the_fifo(tmp_path, problem, capsys):
    fifo = tmp_path / "result.fifo"
    os.mkfifo(fifo)
    reader = FifoReader(fifo)
    code, err = solve_json(capsys, problem, fifo)
    assert code == 0, err
    result = json.loads(reader.result())
    assert result["energy"] == OPTIMUM
    assert BQM.energy({int(v): x for v, x in result["sample"].items()}) == OPTIMUM
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert entries(tmp_path) == ["result.fifo", "small.coo"]  # no temporary file


def test_solve_json_to_the_null_device_keeps_it_a_device(tmp_path, problem, capsys):
    null = char_device(tmp_path, "null", 3)
    before = os.stat(null)
    code, err = solve_json(capsys, problem, null)
    assert code == 0, err
    after = os.stat(null)
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev
    assert after.st_ino == before.st_ino  # the same node, not a new one under its name


def test_a_writer_wanting_a_file_name_delivers_its_bytes_into_a_fifo(tmp_path, monkeypatch):
    private = tmp_path / "private"  # where the bytes wait before they are copied
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    fifo = tmp_path / "weights.fifo"
    os.mkfifo(fifo)
    payload = os.urandom(300_000)  # more than a pipe buffer holds
    reader = FifoReader(fifo)
    with atomic_path(fifo) as name:
        assert name.parent == private
        name.write_bytes(payload)  # as torch.save(obj, name) would
    assert reader.result() == payload
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert entries(private) == [] and entries(tmp_path) == ["private", "weights.fifo"]


def test_writing_the_full_device_in_place_is_a_clear_error(tmp_path):
    full = char_device(tmp_path, "full", 7)
    with pytest.raises(OSError, match="No space left on device") as caught:
        with atomic_write(full, binary=True) as handle:
            handle.write(b"x" * 100)
    assert str(caught.value) == f"cannot write {full}: No space left on device"
    assert caught.value.errno == errno.ENOSPC
    assert stat.S_ISCHR(os.stat(full).st_mode)


# --- what is refused ------------------------------------------------------------------


def test_a_directory_as_output_is_refused_in_one_line(tmp_path, problem, capsys):
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "inside.txt").write_text("kept")
    message = one_error_line(*solve_json(capsys, problem, folder))
    assert message == f"--json {folder}: it is a directory"
    assert entries(folder) == ["inside.txt"]
    with pytest.raises(IsADirectoryError, match="is a directory"):
        with atomic_path(folder):
            raise AssertionError("refused before the writer runs")


def test_a_socket_as_output_is_refused(tmp_path):
    path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        with pytest.raises(ValueError, match=r"s\.sock: it is a socket"):
            with atomic_write(path, binary=False):
                raise AssertionError("refused before the writer runs")
    assert stat.S_ISSOCK(os.stat(path).st_mode)


# --- failed writes: reported, old file kept, nothing left -----------------------------


def test_disk_full_at_fsync_is_one_line_and_keeps_the_old_file(
    tmp_path, problem, capsys, monkeypatch
):
    out = tmp_path / "out.json"
    out.write_text('{"old": true}\n')

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    message = one_error_line(*solve_json(capsys, problem, out))
    assert message == f"cannot write {out}: No space left on device"
    assert out.read_text() == '{"old": true}\n'
    assert entries(tmp_path) == ["out.json", "small.coo"]


@pytest.fixture()
def small_file_size_limit():
    """Writes past 4 KiB fail with EFBIG (a real write error from the kernel, as a full
    disk gives ENOSPC) while the fixture is active."""
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else it kills us
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous_handler)


def test_a_write_error_at_close_is_not_swallowed(tmp_path, small_file_size_limit):
    out = tmp_path / "out.txt"
    out.write_text("old\n")
    with pytest.raises(OSError, match=r"cannot write .*out\.txt: File too large"):
        with atomic_write(out, binary=False) as handle:
            handle.write("y" * 6000)  # still in the buffer: the failure comes at close
    assert out.read_text() == "old\n"
    assert entries(tmp_path) == ["out.txt"]


def test_a_write_error_a_writer_catches_is_still_the_error_raised(tmp_path, small_file_size_limit):
    out = tmp_path / "out.bin"
    out.write_bytes(b"old")

    def swallowing_writer(handle):  # as torch.save does: "unexpected pos ..."
        try:
            handle.write(os.urandom(20_000))
        except OSError:
            raise RuntimeError(
                "[enforce fail at inline_container.cc:672] . unexpected pos"
            ) from None

    with pytest.raises(OSError, match="File too large") as caught:
        with atomic_write(out, binary=True) as handle:
            swallowing_writer(handle)
    assert caught.value.errno == errno.EFBIG
    assert out.read_bytes() == b"old"
    assert entries(tmp_path) == ["out.bin"]

    def silent_writer(handle):  # catches the error and carries on as if written
        try:
            handle.write(os.urandom(20_000))
        except OSError:
            pass

    with pytest.raises(OSError, match="File too large"):
        with atomic_write(out, binary=True) as handle:
            silent_writer(handle)
    assert out.read_bytes() == b"old"


def test_a_missing_output_folder_is_named_not_the_temporary_file(tmp_path, problem, capsys):
    out = tmp_path / "no-such-folder" / "out.json"
    message = one_error_line(*solve_json(capsys, problem, out))
    assert message == f"--json {out}: folder {out.parent} does not exist"
    with pytest.raises(FileNotFoundError, match="No such file or directory"):
        with atomic_path(out):  # the library's own write says it too
            raise AssertionError("refused before the writer runs")


def test_a_bad_output_path_is_refused_before_the_solve(tmp_path, problem, capsys, monkeypatch):
    """Minutes of solving must not end in 'folder does not exist': no solver is made."""
    import ising_qubo.solvers

    def no_solver(*args, **kwargs):
        raise AssertionError("the solver was reached")

    monkeypatch.setattr(ising_qubo.solvers, "get_solver", no_solver)
    out = tmp_path / "missing" / "out.json"
    assert one_error_line(*solve_json(capsys, problem, out)).startswith(f"--json {out}: ")
    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("x")
    message = one_error_line(*solve_json(capsys, problem, not_a_folder / "out.json"))
    assert message == f"--json {not_a_folder / 'out.json'}: {not_a_folder} is not a folder"


# --- stale temporaries ----------------------------------------------------------------


def test_stale_temporaries_of_the_named_files_are_removed(tmp_path):
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    stale = [
        run / ".report.json.0123456789ab.tmp",
        run / "model" / ".model.safetensors.a1b2c3d4e5f6.tmp",
    ]
    kept = [
        run / "report.json",
        run / ".report.json.notrandom.tmp",  # not a name the helper makes
        run / ".report.json.0123456789ab.tmp.bak",
        run / ".notes.txt.0123456789ab.tmp",  # a file not named
        run / "model" / "model.safetensors",
    ]
    for path in stale + kept:
        path.write_text("x")
    link = run / ".config.json.ffffffffffff.tmp"
    link.symlink_to(run / "report.json")  # not a regular file: left alone
    removed = remove_stale_temporaries(
        run, ["report.json", "config.json", "model/model.safetensors", "absent/x.json"]
    )
    assert sorted(removed) == sorted(stale)
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in kept) and link.is_symlink()


def test_the_pattern_matches_the_temporaries_the_helper_makes(tmp_path):
    target = tmp_path / "report.json"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            assert remove_stale_temporaries(tmp_path, ["report.json"]) == [tmp]
            raise KeyboardInterrupt  # the temporary is gone already: no error about it
    assert entries(tmp_path) == []
