"""``--background-load N``: busy processes started and stopped by the benchmark harness."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ising_qubo.bench.load import BackgroundLoad, check_count, max_processes
from ising_qubo.cli import app as cli

SPIN_MARKER = "os.getppid() == parent"  # a line of the busy processes' program


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state first), None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process, from psutil if installed, else /proc."""
    try:
        import psutil
    except ImportError:
        fields = _stat_fields(pid)
        assert fields is not None, f"process {pid} is gone"
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie waits for a reaper that may never come)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def _wait_until(condition, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def _spinners_of(parent: int) -> list[int]:
    """Running busy processes (by their program text) whose parent is ``parent``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        try:
            command = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if fields and int(fields[1]) == parent and SPIN_MARKER in command:
            if _running(int(entry.name)):
                found.append(int(entry.name))
    return found


pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


def test_processes_are_busy_inside_and_gone_after():
    with BackgroundLoad(2) as load:
        pids = load.pids
        assert len(pids) == 2 and all(_running(p) for p in pids)
        assert sorted(_spinners_of(os.getpid())) == sorted(pids)
        start = {p: _cpu_seconds(p) for p in pids}
        # busy, not sleeping: each gains CPU time (generous bound for a loaded machine)
        assert _wait_until(lambda: all(_cpu_seconds(p) - start[p] > 0.1 for p in pids))
        record = load.record()
        assert record["processes"] == 2 and record["alive_at_end"] == 2
    assert not any(_running(p) for p in pids)
    assert _spinners_of(os.getpid()) == []
    assert load.record()["alive_at_end"] == 2  # the count at the end, before stopping


def test_processes_stop_when_the_block_raises():
    with pytest.raises(KeyboardInterrupt), BackgroundLoad(1) as load:
        pids = load.pids
        assert _running(pids[0])
        raise KeyboardInterrupt  # Ctrl-C inside a benchmark
    assert not _running(pids[0])


def test_ctrl_c_reaches_only_the_harness():
    import signal

    with BackgroundLoad(1) as load:
        [pid] = load.pids
        # a terminal's Ctrl-C goes to our process group: the busy process is not in it
        assert os.getpgid(pid) != os.getpgid(0)
        assert _wait_until(lambda: _cpu_seconds(pid) > 0.05)  # its program is running
        os.kill(pid, signal.SIGINT)  # and a SIGINT sent to it directly is ignored
        time.sleep(0.3)
        assert _running(pid)
    assert not _running(pid)


def test_processes_end_when_the_parent_dies(tmp_path):
    # the parent leaves without running any cleanup (os._exit): the child notices itself
    code = (
        "import os, sys\n"
        "from ising_qubo.bench.load import BackgroundLoad\n"
        "load = BackgroundLoad(1).__enter__()\n"
        "print(load.pids[0], flush=True)\n"
        "os._exit(0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    orphan = int(done.stdout.split()[0])
    assert _wait_until(lambda: not _running(orphan))


def test_lifetime_cap_ends_a_process_that_is_never_stopped():
    with BackgroundLoad(1, max_seconds=0.3) as load:
        assert _wait_until(lambda: not _running(load.pids[0]))
        assert load.record()["alive_at_end"] == 0


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2", max_processes() + 1])
def test_bad_counts_are_one_line_value_errors(bad):
    with pytest.raises(ValueError, match="background_load must be a whole number") as info:
        check_count(bad)
    assert "\n" not in str(info.value) and repr(bad) in str(info.value)
    with pytest.raises(ValueError):
        BackgroundLoad(bad)
    assert check_count(0) == 0 and check_count(max_processes()) == max_processes()


BENCH = ["bench", "sk:8", "--solvers", "neal", "--seeds", "1", "--time-limit", "0.2"]
QUIET = ["--no-progress", "--no-plot", "--quiet"]


def test_cli_flag_is_recorded_in_results_and_table(tmp_path):
    out = tmp_path / "loaded"
    assert cli.main([*BENCH, "--background-load", "1", "--out", str(out), *QUIET]) == 0
    load = json.loads((out / "results.json").read_text())["settings"]["background_load"]
    assert load["processes"] == 1 and load["alive_at_end"] == 1
    if hasattr(os, "getloadavg"):
        assert len(load["loadavg_start"]) == 3 and len(load["loadavg_end"]) == 3
    table = (out / "table.md").read_text()
    assert "background load: 1 busy process started by the harness" in table
    assert _spinners_of(os.getpid()) == []  # stopped when the benchmark ended

    idle = tmp_path / "idle"
    assert cli.main([*BENCH, "--out", str(idle), *QUIET]) == 0
    data = json.loads((idle / "results.json").read_text())
    assert data["settings"]["background_load"]["processes"] == 0
    assert "background load: 0 busy processes" in (idle / "table.md").read_text()


@pytest.mark.parametrize("bad", ["-1", "two", "1.5", str(max_processes() + 1)])
def test_cli_bad_count_is_exit_2_and_one_line(bad, tmp_path, capsys):
    out = tmp_path / "never"
    assert cli.main([*BENCH, "--background-load", bad, "--out", str(out), *QUIET]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--background-load" in err[0] and bad in err[0]
    assert not out.exists()
