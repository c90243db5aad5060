"""A newcomer's walk through README.md, scripted: what a reader does with a fresh clone
(and with a wheel installed in a fresh venv), taken from the README's own text, so that a
changed README is walked as changed.

    .venv/bin/python scripts/newcomer_walk.py           # this checkout, quick (about 1 min)
    .venv/bin/python scripts/newcomer_walk.py --wheel   # + a fresh wheel install
    .venv/bin/python scripts/newcomer_walk.py --full    # + the pruning quick start and the
                                                        #   heavy examples (about 6 more min)

Run it with the checkout's .venv (``bash scripts/setup.sh`` makes it). The checkout walk
works in a temporary folder that mirrors the repository root (its top-level entries
linked, ``../shared`` beside it), so the README's relative paths resolve and nothing is
written into the checkout:

1. ``bash scripts/run.sh`` (the main job) reports the optimum 2098 of bqp50 #1;
2. every ```python block runs as written; the blocks of one section run in one
   interpreter, in order, as a reader's session would (a later block may use an earlier
   one's imports); a ``print(...)  # TEXT`` must print TEXT;
3. every concrete command line of the README (indented blocks and inline code spans
   that start with ``ising-qubo``, ``.venv/bin/ising-qubo``, ``cat`` or ``bash scripts/``)
   runs as written, with ``.venv/bin`` first on PATH as ``source .venv/bin/activate``
   puts it; a placeholder of the synopsis is replaced by a real file (``FILE``, ``F``,
   ``IN``: ``G1.txt``, the reader's own problem file, here Gset G1; ``OUT``: ``G1.coo``),
   an optional ``[--flag]`` runs without and with it, and a line with any other
   placeholder, or one that installs, trains or needs GPUs, is listed as not run;
4. the README's ``bench`` line runs on a pseudo-terminal and draws a progress bar there,
   and none when stderr is a pipe (step 3);
5. with ``--full``: the pruning quick start (untar the CIFAR-10 JPEG copy, prune ResNet-20,
   evaluate: the same accuracy as the run's report), the blocks that build large networks,
   and the command lines that train or export.

``--wheel``: the wheel, built offline from this checkout and installed into a fresh venv
(tests/wheels.py), walks steps 2 and 3 from a folder outside the repository: the blocks and
command lines that name no file of the repository and run the bare ``ising-qubo``.

Without ``../shared`` beside the checkout, the lines that read it (its paths, ``bench`` of
a named set) are listed as not run, G1.txt is a ring of 8 nodes, the bar is checked on
``bench G1.txt``, and ``--full`` is refused.

Exit status 0 when every step passed; otherwise 1, with the step, the README line and the
command's output.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SHARED = REPO.parent / "shared"
G1 = SHARED / "bench" / "gset" / "G1.txt"

#: Placeholders of the README's synopses, and the real files the walk puts in their place.
SUBSTITUTES = {"FILE": "G1.txt", "F": "G1.txt", "IN": "G1.txt", "OUT": "G1.coo"}
#: Command lines the walk leaves out, and why (matched at the start of the line).
NOT_RUN = {
    "pip ": "installs packages (--wheel installs the wheel instead)",
    "torchrun ": "several processes or GPUs",
    "bash scripts/test.sh": "the test suite itself",
    "source ": "activation: the walk puts .venv/bin first on PATH instead",
}
#: Commands and subcommands that make a line heavy (minutes on 2 cores, or the data they
#: unpack): run with --full only.
HEAVY_COMMANDS = {"prune", "train", "export", "evaluate", "tar", "mkdir"}
#: A python block that imports torch builds and prunes networks (minutes on 2 cores):
#: run with --full only.
HEAVY_BLOCK = re.compile(r"^\s*(import|from)\s+(torch|torchvision|torch_pruning)\b", flags=re.M)
#: What a program prints: a tqdm bar ("  40%|####      | 2/5 [...]").
PROGRESS_BAR = re.compile(r"\d+%\|")
#: The main job, and what it must print: the optimum of OR-Library bqp50 #1.
MAIN_JOB = "bash scripts/run.sh"
EXPECTED_OUTPUT = {MAIN_JOB: "2098"}

#: A command line that reads ../shared: by its path, or a named benchmark set of `bench`.
NEEDS_SHARED = re.compile(r"\.\./shared|\bbench\s+(gset|bqp\d+)\b")
#: The bar check when the README has no runnable bench line (no ../shared here).
FALLBACK_BENCH = "ising-qubo bench G1.txt --solvers neal --seeds 1 --time-limit 1 --no-plot"

PROGRAMS = ("ising-qubo ", ".venv/bin/ising-qubo ", "cat ", "bash scripts/", "mkdir ", "tar ")
PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*(\.\.\.)?$")


class WalkError(Exception):
    """A step of the walk failed: the message says which and shows the output."""


@dataclass(frozen=True)
class Block:
    line: int  # README line of the block's first line of code
    section: str
    code: str

    @property
    def heavy(self) -> bool:
        return bool(HEAVY_BLOCK.search(self.code))

    def expected_prints(self) -> list[str]:
        """TEXT of each ``print(...)  # TEXT`` line: what the README says it prints."""
        found = re.findall(r"^\s*print\(.*\)\s+#\s*(.+?)\s*$", self.code, flags=re.M)
        return found


@dataclass(frozen=True)
class Command:
    line: int  # README line
    section: str
    text: str  # as the walk runs it (placeholders replaced)
    written: str  # as the README writes it
    skip: str = ""  # why it is not run; empty: run it

    @property
    def heavy(self) -> bool:
        words = self.text.split()
        return words[0] in HEAVY_COMMANDS or bool(set(words[1:2]) & HEAVY_COMMANDS)


# ----------------------------------------------------------------------- reading README


def sections(text: str) -> Iterator[tuple[int, str, list[str]]]:
    """(first line number, title, lines) of each ``## `` section (the top as "")."""
    title, start = "", 1
    lines: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("## "):
            yield start, title, lines
            title, start, lines = line[3:].strip(), number, []
        lines.append(line)
    yield start, title, lines


def python_blocks(text: str) -> list[Block]:
    blocks = []
    for start, title, lines in sections(text):
        inside, first = False, 0
        code: list[str] = []
        for offset, line in enumerate(lines):
            if not inside and line.strip() == "```python":
                inside, code, first = True, [], start + offset + 1
            elif inside and line.strip() == "```":
                inside = False
                blocks.append(Block(first, title, "\n".join(code) + "\n"))
            elif inside:
                code.append(line)
    return blocks


def _strip_comment(line: str) -> str:
    return re.split(r"\s{2,}#\s", line, maxsplit=1)[0].rstrip()


def _written_commands(text: str) -> Iterator[tuple[int, str, str]]:
    """(line, section, command) of indented code lines (``\\`` continuations joined) and
    of inline code spans of three words or more that start with a program (a shorter one
    is a name in a sentence: "give it ``ising-qubo solve`` options"), outside fences."""
    for start, title, lines in sections(text):
        fenced, in_block, previous_blank, pending, pending_line = False, False, True, "", 0
        for number, line in enumerate(lines, start):
            if line.lstrip().startswith("```"):
                fenced = not fenced
            elif fenced:
                pass
            elif line.startswith("    ") and line.strip() and (in_block or previous_blank):
                in_block = True
                piece = _strip_comment(line.strip())
                pending_line = pending_line if pending else number
                if piece.endswith("\\"):
                    pending += piece[:-1].rstrip() + " "
                else:
                    yield pending_line, title, pending + piece
                    pending = ""
            elif line.strip():
                in_block = False
                for span in re.findall(r"`([^`]+)`", line):
                    if span.startswith(PROGRAMS) and len(span.split()) >= 3:
                        yield number, title, span.strip()
            previous_blank = not line.strip()


def _expand(command: str) -> tuple[list[str], str]:
    """The command lines a synopsis stands for, or ([], why not)."""
    variants = [""]
    for optional, word in re.findall(r"(\[[^\]]*\])|(\S+)", command):
        if word:
            if word in SUBSTITUTES:
                word = SUBSTITUTES[word]
            elif PLACEHOLDER.match(word) or "..." in word or re.search(r"\w\|\w", word):
                return [], f"placeholder {word}"
            variants = [f"{v} {word}".strip() for v in variants]
        else:
            inner = optional[1:-1].split()
            if any(PLACEHOLDER.match(w) or "..." in w for w in inner):
                continue  # an option with a value to choose: left at its default
            variants = variants + [f"{v} {' '.join(inner)}".strip() for v in variants]
    return variants, ""


def commands(text: str) -> list[Command]:
    found: list[Command] = []
    for line, section, written in _written_commands(text):
        if not written.startswith(PROGRAMS + tuple(NOT_RUN)):
            continue  # prose set as code, a continuation line of a synopsis
        reason = next((why for start, why in NOT_RUN.items() if written.startswith(start)), "")
        if reason:
            found.append(Command(line, section, written, written, reason))
            continue
        variants, reason = _expand(written)
        if reason:
            found.append(Command(line, section, written, written, reason))
        for variant in variants:
            found.append(Command(line, section, variant, written))
    unique: dict[str, Command] = {}
    for command in found:
        unique.setdefault(command.text, command)
    return list(unique.values())


# ----------------------------------------------------------------------- running


@dataclass(frozen=True)
class Place:
    """Where commands run: a working folder, the environment, and the venv's python."""

    work: Path
    env: dict[str, str]
    python: Path


def _show(done: subprocess.CompletedProcess) -> str:
    out, err = done.stdout[-3000:], done.stderr[-3000:]
    return f"exit {done.returncode}\n--- stdout\n{out}\n--- stderr\n{err}"


def run_command(place: Place, command: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        cwd=place.work,
        env=place.env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


RUNNER = """
import json, sys
namespace = {"__name__": "__main__"}
for line, code in json.load(open(sys.argv[1])):
    print(f"[walk: README.md:{line}]", flush=True)
    exec(compile("\\n" * (line - 1) + code, "README.md", "exec"), namespace)
"""


def run_blocks(place: Place, blocks: list[Block], timeout: float) -> str:
    """The blocks in one interpreter (tracebacks name README.md and its line numbers)."""
    listing = place.work / f".walk-blocks-{blocks[0].line}.json"
    listing.write_text(json.dumps([[b.line, b.code] for b in blocks]))
    done = subprocess.run(
        [str(place.python), "-c", RUNNER, str(listing)],
        cwd=place.work,
        env=place.env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = ", ".join(str(b.line) for b in blocks)
    if done.returncode != 0:
        raise WalkError(f"python blocks at README.md:{lines} failed\n{_show(done)}")
    for block in blocks:
        for text in block.expected_prints():
            if text not in done.stdout:
                raise WalkError(
                    f"README.md:{block.line}: the block should print {text!r}\n{_show(done)}"
                )
    return done.stdout


def run_on_pty(place: Place, command: str, timeout: float) -> tuple[int, str]:
    """Exit status and everything written to the terminal by ``command`` run with a
    pseudo-terminal as its stdin, stdout and stderr."""
    controller, terminal = pty.openpty()
    # a new pseudo-terminal is 0 x 0 characters (no window gave it a size), and a bar fitted
    # to 0 columns is empty: give it the size of a small terminal window
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    env = dict(place.env, TERM="xterm")
    process = subprocess.Popen(
        ["bash", "-c", command],
        cwd=place.work,
        env=env,
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        start_new_session=True,
    )
    os.close(terminal)
    output = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                os.killpg(process.pid, signal.SIGKILL)
                raise WalkError(f"{command}: still running after {timeout:.0f} s on a terminal")
            ready, _, _ = select.select([controller], [], [], 0.2)
            if not ready:
                continue
            try:
                data = os.read(controller, 65536)
            except OSError:  # EIO: every holder of the terminal has closed it
                break
            if not data:
                break
            output += data
    finally:
        os.close(controller)
    return process.wait(timeout=30), output.decode(errors="replace")


# ----------------------------------------------------------------------- the walks


def log(message: str) -> None:
    print(f"walk: {message}", flush=True)


@contextmanager
def timed_step(name: str) -> Iterator[None]:
    started = time.perf_counter()
    log(f"{name} ...")
    yield
    log(f"{name}: ok ({time.perf_counter() - started:.1f} s)")


def write_readers_file(path: Path) -> None:
    """The problem file the README calls G1.txt: Gset G1 from ../shared/bench, else a
    ring of 8 nodes in the same (rudy) format."""
    if G1.is_file():
        shutil.copy(G1, path)
    else:
        path.write_text("8 8\n" + "".join(f"{i} {i % 8 + 1} 1\n" for i in range(1, 9)))


def mirror_checkout(root: Path) -> Place:
    """A folder standing for the repository root: every top-level entry linked, except what
    runs write (data/, runs/, bench-results/, build/) and git's folder; ../shared beside it."""
    work = root / "ising-qubo"
    work.mkdir()
    for entry in REPO.iterdir():
        if entry.name not in (".git", "data", "runs", "bench-results", "build", "dist"):
            (work / entry.name).symlink_to(entry)
    if SHARED.is_dir():
        (root / "shared").symlink_to(SHARED)
    write_readers_file(work / "G1.txt")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    venv = work / ".venv"
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("OMP_NUM_THREADS", "2")
    return Place(work, env, venv / "bin" / "python")


def walk_blocks(place: Place, blocks: list[Block], full: bool, timeout: float) -> None:
    by_section: dict[str, list[Block]] = {}
    for block in blocks:
        by_section.setdefault(block.section, []).append(block)
    for section, group in by_section.items():
        heavy = [b for b in group if b.heavy]
        if heavy and not full:
            # a section's session up to its first heavy block (later ones may need it)
            group = group[: group.index(heavy[0])]
            for b in heavy:
                log(f"README.md:{b.line} (python, {section}): not run without --full (heavy)")
        if not group:
            continue
        with timed_step(f"python blocks of '{section}' (lines {[b.line for b in group]})"):
            run_blocks(place, group, timeout)


def walk_commands(
    place: Place, found: list[Command], full: bool, timeout: float
) -> dict[str, subprocess.CompletedProcess]:
    results = {}
    for command in found:
        where = f"README.md:{command.line}"
        if command.skip:
            log(f"{where}: not run ({command.skip}): {command.written}")
            continue
        if NEEDS_SHARED.search(command.text) and not SHARED.is_dir():
            log(f"{where}: not run ({SHARED} is not beside this checkout): {command.text}")
            continue
        if command.heavy and not full:
            log(f"{where}: not run without --full: {command.text}")
            continue
        with timed_step(f"{where}: {command.text}"):
            done = run_command(place, command.text, timeout)
            piped_early = "| head" in command.text and done.returncode == 141
            if (done.returncode != 0 and not piped_early) or "Traceback" in done.stderr:
                raise WalkError(f"{where}: {command.text}\n{_show(done)}")
            # "stops without a message": the summary (on stderr with --json -) may be there,
            # an error about the closed pipe may not
            if piped_early and re.search(r"(?i)broken ?pipe|error", done.stderr):
                raise WalkError(f"{where}: a message when the reader left\n{_show(done)}")
            expected = EXPECTED_OUTPUT.get(command.text)
            if expected is not None and expected not in done.stdout:
                raise WalkError(f"{where}: {command.text} should print {expected}\n{_show(done)}")
        results[command.text] = done
    return results


def check_progress_bar(
    place: Place, found: list[Command], results: dict[str, subprocess.CompletedProcess]
) -> None:
    """The README's first ``bench`` line that ran (else ``FALLBACK_BENCH``, when
    ../shared is missing): a bar on a terminal, none on a pipe."""
    bench = next((c.text for c in found if " bench " in f" {c.text} " and c.text in results), "")
    if not bench:
        if SHARED.is_dir():
            raise WalkError("no runnable 'ising-qubo bench' line in README.md to show a bar")
        bench = FALLBACK_BENCH
        results[bench] = run_command(place, bench, timeout=300)
    with timed_step(f"on a pseudo-terminal: {bench}"):
        status, screen = run_on_pty(place, bench, timeout=300)
        if status != 0 or not PROGRESS_BAR.search(screen):
            raise WalkError(
                f"{bench}: no progress bar on a terminal (exit {status})\n{screen[-3000:]}"
            )
        piped = results[bench].stderr
        if PROGRESS_BAR.search(piped):
            raise WalkError(f"{bench}: a progress bar on a pipe\n{piped[-3000:]}")


def check_same_accuracy(place: Place, results: dict[str, subprocess.CompletedProcess]) -> None:
    """The quick start's ``evaluate`` of a run's model says "same accuracy": its top-1 and
    parameter count are the run's report.json's after pruning."""
    for command, done in results.items():
        words = command.split()
        if "evaluate" not in words[1:2] or "--json" in words:
            continue
        model = Path(words[2])
        report_file = (
            place.work / (model.parent if model.name == "model" else model) / "report.json"
        )
        report = json.loads(report_file.read_text())
        top1 = re.search(r"top-1 ([\d.]+)%", done.stdout)
        params = re.search(r"([\d,]+) parameters", done.stdout)
        expected = (f"{report['accuracy']['after']['top1']:.2f}", report["params"]["after"])
        got = (top1 and top1.group(1), params and int(params.group(1).replace(",", "")))
        if got != expected:
            raise WalkError(f"{command}: top-1 and parameters {got}, report.json {expected}")
        log(f"{command}: top-1 {got[0]}%, {got[1]:,} parameters, as in {report_file.name}")


def walk_checkout(text: str, full: bool, timeout: float) -> None:
    found = commands(text)
    # the main job first, as a reader would
    found.sort(key=lambda command: command.text != MAIN_JOB)
    if not found or found[0].text != MAIN_JOB:
        raise WalkError(f"README.md no longer shows the main job, {MAIN_JOB!r}")
    with tempfile.TemporaryDirectory(prefix="newcomer-walk-") as root:
        place = mirror_checkout(Path(root))
        results = walk_commands(place, found[:1], full, timeout)
        walk_blocks(place, python_blocks(text), full, timeout)
        results |= walk_commands(place, found[1:], full, timeout)
        check_progress_bar(place, found, results)
        if full:
            check_same_accuracy(place, results)


def _names_repository_files(text: str) -> bool:
    """Whether ``text`` names a path of the repository or its venv (relative, as written)."""
    if ".venv/" in text or "../shared" in text or "scripts/" in text:
        return True
    return any((REPO / word).exists() for word in re.findall(r"[\w.-]+/[\w./-]+", text))


def walk_wheel(text: str, full: bool, timeout: float) -> None:
    sys.path.insert(0, str(REPO / "tests"))
    from wheels import build_wheel, install_in_fresh_venv

    with tempfile.TemporaryDirectory(prefix="newcomer-wheel-") as root:
        with timed_step("building the wheel and installing it into a fresh venv"):
            wheel = build_wheel(Path(root))
            fresh = install_in_fresh_venv(wheel, Path(root))
        place = Place(fresh.work, fresh.env(), fresh.bin / "python")
        write_readers_file(place.work / "G1.txt")
        where = subprocess.run(
            [str(place.python), "-c", "import ising_qubo; print(ising_qubo.__file__)"],
            cwd=place.work, env=place.env, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        if not Path(where).is_relative_to(fresh.site):
            raise WalkError(f"ising_qubo imported from {where}, not from the fresh venv")
        blocks = [b for b in python_blocks(text) if not _names_repository_files(b.code)]
        walk_blocks(place, blocks, full, timeout)
        found = [
            c
            for c in commands(text)
            if c.text.startswith(("ising-qubo ", "cat ")) and not _names_repository_files(c.text)
        ]
        walk_commands(place, found, full, timeout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="also the minutes-long steps")
    parser.add_argument("--wheel", action="store_true", help="also walk a fresh wheel install")
    parser.add_argument(
        "--no-checkout", action="store_true", help="skip the checkout walk (with --wheel)"
    )
    parser.add_argument(
        "--readme", type=Path, default=README, help="the README to walk (default: this one)"
    )
    parser.add_argument(
        "--timeout", type=float, default=900, help="seconds allowed to one step (default 900)"
    )
    args = parser.parse_args(argv)
    text = args.readme.read_text()
    started = time.perf_counter()
    if args.full and not SHARED.is_dir():
        print(f"walk: --full needs {SHARED} (the CIFAR-10 JPEG copy)", file=sys.stderr)
        return 2
    try:
        if not args.no_checkout:
            walk_checkout(text, args.full, args.timeout)
        if args.wheel:
            walk_wheel(text, args.full, args.timeout)
    except (WalkError, subprocess.TimeoutExpired) as error:
        print(f"walk: FAILED: {error}", file=sys.stderr)
        return 1
    log(f"passed ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
