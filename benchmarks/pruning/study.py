"""The resumable pruning study of issue 14: one protocol, every run a directory.

    python benchmarks/pruning/study.py run --out DIR [--datasets cifar10-jpeg,fashion-mnist]
        [--seeds 0 1 2] [--only PATTERN] [--resume] [--cifar-dir DIR] [--fashion-dir DIR]
    python benchmarks/pruning/study.py plan --out DIR     # runs, which are done, time left
    python benchmarks/pruning/study.py latency --out DIR [--repeats N]   # quiet re-timing
    python benchmarks/pruning/study.py solvers --out DIR [--solvers torch-sa,neal,tabu]
    python benchmarks/pruning/study.py report --out DIR [--docs]

The protocol (methods, schedules, budgets, goals) is fixed in :mod:`study_protocol`;
``--protocol JSON`` (inline or a file) overrides parts of it, for tests. The first ``run``
writes ``DIR/protocol.json`` and later sessions must use the same protocol (more seeds
may be added).

Every run lives in ``DIR/<dataset>/<run>/``: ``config.json`` is written first,
``pipeline/`` is the run directory of :func:`ising_qubo.pruning.pipeline.run` (checkpoint
after every epoch, the saved model, ``report.json``), and ``result.json`` is written
atomically last. A run with ``result.json`` is skipped. A run directory without it is
restarted from scratch, or with ``--resume`` continued from the pipeline's last
checkpoint. A run that fails leaves ``error.txt`` and the study goes on with the others
(the runs that need its dense model wait). The dense model of (dataset, seed) is its own
run (``dense-seed<S>``); every method of that seed starts from its saved model.

At the start of ``run`` the training speed of one and two torch threads is measured
(``DIR/threads.json``, once per study directory) and the faster count is used.

Each run times its pruned model against its dense one when it finishes, on whatever the
machine is doing then (the study's own later runs are not, but other tenants are).
``latency`` re-times every finished pruned run in one process, meant for a moment when
the study is stopped and the machine quiet; it writes ``latency_quiet.json`` beside the
run's ``result.json`` (with the load average at its start and end) and the report uses
it instead of the in-run figure, saying which it used.

(Long because the CLI, the run bookkeeping and the measurements a run adds to the
pipeline's report belong together; the protocol, the statistics and the report live in
study_protocol.py, study_stats.py and report.py beside it.)
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import os
import platform
import shutil
import statistics
import sys
import time
import traceback
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional

from ising_qubo.io.jsonvalues import write_json
from ising_qubo.nets import models
from ising_qubo.nets.persist import load_pruned
from ising_qubo.pruning.pipeline import CHECKPOINT, REPORT, run

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report as study_report  # noqa: E402
import study_solvers  # noqa: E402
from study_protocol import (  # noqa: E402
    ISING_METHODS,
    REFERENCE_SECONDS_PER_IMAGE,
    StudyRun,
    identity,
    pipeline_config,
    plan_runs,
    protocol_with,
)

REPO = Path(__file__).resolve().parents[2]
RESULT = "result.json"
RUN_CONFIG = "config.json"
ERROR = "error.txt"
PIPELINE = "pipeline"
PROTOCOL_FILE = "protocol.json"
THREADS_FILE = "threads.json"
QUIET_LATENCY = "latency_quiet.json"
#: The CLI options that name a dataset's folder (else the protocol's default_dir).
DATA_OPTIONS = {"cifar10-jpeg": "cifar_dir", "fashion-mnist": "fashion_dir"}
MISSING_DATA_HINT = {
    "cifar10-jpeg": "mkdir -p data/cifar10-jpeg && tar -xJf "
    "../shared/data/cifar10-jpeg.tar.xz -C data/cifar10-jpeg",
    "fashion-mnist": "apt-get install -y dataset-fashion-mnist",
}


# ----- measurements ---------------------------------------------------------------------
def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # not every platform has it
        return None


def measure_threads(protocol: dict[str, Any], input_shape: list[int]) -> dict[str, Any]:
    """Seconds per training step of the protocol's model with each candidate thread count
    (one warm-up step each, the candidates in turn), and the fastest count."""
    settings = protocol["threads"]
    model = models.build(protocol["model"], num_classes=10, in_channels=input_shape[0])
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(settings["batch"], *input_shape, generator=generator)
    targets = torch.randint(0, 10, (settings["batch"],), generator=generator)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def steps(count: int) -> None:
        for _ in range(count):
            optimizer.zero_grad()
            functional.cross_entropy(model(inputs), targets).backward()
            optimizer.step()

    before = torch.get_num_threads()
    seconds: dict[str, float] = {}
    load_at_start = load_average()
    try:
        for count in settings["candidates"]:
            torch.set_num_threads(int(count))
            steps(1)
            started = time.perf_counter()
            steps(settings["steps"])
            seconds[str(count)] = (time.perf_counter() - started) / settings["steps"]
    finally:
        torch.set_num_threads(before)
    chosen = min(seconds, key=seconds.__getitem__)
    return {
        "seconds_per_step": seconds,
        "batch": settings["batch"],
        "steps": settings["steps"],
        "input_shape": list(input_shape),
        "chosen": int(chosen),
        "load_average": [load_at_start, load_average()],
        "cpu": cpu_name(),
        "cpus": os.cpu_count(),
        "measured": datetime.now().isoformat(timespec="seconds"),
    }


def latency_ratio(
    dense_dir: Path, pruned_dir: Path, input_shape: list[int], batch: int, repeats: int
) -> dict[str, Any]:
    """Median CPU forward time of the pruned model and the dense one, measured interleaved
    in one process (dense, pruned, dense, ...) so that both see the same machine state."""
    dense, pruned = load_pruned(dense_dir).eval(), load_pruned(pruned_dir).eval()
    x = torch.randn(batch, *input_shape, generator=torch.Generator().manual_seed(0))
    times: dict[str, list[float]] = {"dense": [], "pruned": []}
    load_at_start = load_average()
    with torch.no_grad():
        for model in (dense, pruned):
            for _ in range(3):
                model(x)
        for _ in range(repeats):
            for name, model in (("dense", dense), ("pruned", pruned)):
                started = time.perf_counter()
                model(x)
                times[name].append(time.perf_counter() - started)
    dense_s, pruned_s = statistics.median(times["dense"]), statistics.median(times["pruned"])
    return {
        "ratio": pruned_s / dense_s,
        "dense_ms": 1e3 * dense_s,
        "pruned_ms": 1e3 * pruned_s,
        "batch": batch,
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "load_average": [load_at_start, load_average()],
    }


# ----- the study directory --------------------------------------------------------------
def run_dir(out: Path, study_run: StudyRun) -> Path:
    return out / study_run.dataset / study_run.name


def run_state(out: Path, study_run: StudyRun) -> str:
    """done, failed, partial (a pipeline checkpoint to --resume from), started or todo."""
    folder = run_dir(out, study_run)
    if (folder / RESULT).exists():
        return "done"
    if (folder / ERROR).exists():
        return "failed"
    if (folder / PIPELINE / CHECKPOINT).exists():
        return "partial"
    return "started" if folder.exists() else "todo"


def read_result(out: Path, study_run: StudyRun) -> dict[str, Any] | None:
    path = run_dir(out, study_run) / RESULT
    return json.loads(path.read_text()) if path.exists() else None


def load_protocol(out: Path, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The study directory's protocol (``protocol.json``), else the module's with
    ``overrides``."""
    saved = out / PROTOCOL_FILE
    if saved.exists():
        return protocol_with(json.loads(saved.read_text()))
    return protocol_with(overrides)


def fix_protocol(out: Path, protocol: dict[str, Any], seeds: list[int]) -> dict[str, Any]:
    """Write ``protocol.json`` on the first run; later refuse a different protocol. The
    seeds of every session are kept (their union)."""
    saved_path = out / PROTOCOL_FILE
    if saved_path.exists():
        saved = protocol_with(json.loads(saved_path.read_text()))
        if identity(saved) != identity(protocol):
            changed = sorted(
                k for k in identity(saved) if identity(saved)[k] != identity(protocol).get(k)
            )
            raise ValueError(
                f"{out} holds a study under another protocol (differs in: "
                f"{', '.join(changed)}); use another --out or the same protocol"
            )
        protocol = saved
    protocol["seeds"] = sorted(set(protocol["seeds"]) | set(seeds))
    out.mkdir(parents=True, exist_ok=True)
    write_json(saved_path, protocol)
    return protocol


def data_dir_of(label: str, spec: dict[str, Any], options: dict[str, str | None]) -> Path:
    """The dataset's folder: the CLI's option, else the protocol's default (a relative
    default is taken from the repository root, so the study runs from any folder)."""
    given = options.get(DATA_OPTIONS.get(label, ""))
    if given:
        return Path(given).resolve()
    default = Path(spec.get("default_dir") or "")
    return default if default.is_absolute() else (REPO / default).resolve()


def chosen_threads(out: Path, protocol: dict[str, Any], input_shape: list[int]) -> dict:
    path = out / THREADS_FILE
    if path.exists():
        return json.loads(path.read_text())
    print("measuring training speed with each torch thread count ...", flush=True)
    measured = measure_threads(protocol, input_shape)
    write_json(path, measured)
    return measured


# ----- one run -------------------------------------------------------------------------
def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    """A run's pipeline settings without the paths (the study folder and data may move)."""
    return {k: v for k, v in config.items() if k not in ("out", "checkpoint", "data_dir")}


def execute(
    out: Path, protocol: dict[str, Any], study_run: StudyRun, data_dir: Path, resume: bool
) -> dict[str, Any]:
    """Run one study run to its ``result.json`` (see the module docstring)."""
    folder = run_dir(out, study_run)
    pipeline_dir = folder / PIPELINE
    dense_model = (
        None if study_run.method == "dense" else run_dir(out, study_run.dense) / PIPELINE / "model"
    )
    config = pipeline_config(protocol, study_run, pipeline_dir, str(data_dir), dense_model)
    study_config = {
        "run": study_run.key,
        "method": study_run.method,
        "seed": study_run.seed,
        "keep": study_run.keep,
        "pipeline": config.to_dict(),
    }
    continued = False
    if folder.exists():
        saved = (
            json.loads((folder / RUN_CONFIG).read_text()) if (folder / RUN_CONFIG).exists() else {}
        )
        same = _comparable(saved.get("pipeline", {})) == _comparable(config.to_dict())
        if resume and same and (pipeline_dir / CHECKPOINT).exists():
            continued = True
            print(f"  continuing {study_run.key} from its checkpoint", flush=True)
        else:
            why = "its settings differ" if resume and not same else "no checkpoint to resume"
            print(
                f"  restarting {study_run.key} from scratch"
                + (f" ({why})" if resume else " (pass --resume to continue it)"),
                flush=True,
            )
            shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not continued:
        write_json(folder / RUN_CONFIG, study_config)
    (folder / ERROR).unlink(missing_ok=True)

    load_at_start = load_average()
    started = time.perf_counter()
    if continued and (pipeline_dir / REPORT).exists() and (pipeline_dir / "model").exists():
        report = json.loads((pipeline_dir / REPORT).read_text())  # finished, not recorded
    else:
        report = run(config, resume=continued)
    wall = time.perf_counter() - started
    spec = protocol["datasets"][study_run.dataset]
    latency = None
    if dense_model is not None:
        latency = latency_ratio(
            dense_model,
            pipeline_dir / "model",
            spec["input_shape"],
            protocol["latency"]["batch"],
            protocol["latency"]["repeats"],
        )
    result = result_of(study_run, report, latency)
    result.update(
        wall_seconds=wall,
        resumed=continued,
        load_average={"start": load_at_start, "end": load_average()},
        torch_threads=torch.get_num_threads(),
        machine=cpu_name(),
        torch=torch.__version__,
        finished=datetime.now().isoformat(timespec="seconds"),
    )
    write_json(folder / RESULT, result)
    return result


def result_of(
    study_run: StudyRun, report: dict[str, Any], latency: dict[str, Any] | None
) -> dict[str, Any]:
    """The numbers the study reports, from the pipeline's report."""
    stages = report["stages"]
    timing = report["timing_seconds"]
    history = report.get("history") or {}
    val = [v for v in history.get("val_top1", []) if v is not None]
    after = report["accuracy"]["after"]
    dense = study_run.method == "dense"
    # a pruned run starts from the dense model, so its "initial" stage is the dense
    # model's accuracy on the same test set (the pairing of the loss is exact)
    reference = after if dense else stages["initial"]
    pruning = report.get("pruning") or {}
    return {
        "dataset": study_run.dataset,
        "run": study_run.name,
        "method": study_run.method,
        "seed": study_run.seed,
        "keep": study_run.keep,
        "top1": after["top1"],
        "top5": after["top5"],
        "val_top1": val[-1] if val else None,
        "dense_top1": reference["top1"],
        "dense_top5": reference["top5"],
        "top1_after_surgery": (stages.get("after_pruning") or {}).get("top1"),
        "params": report["params"]["after"],
        "params_dense": report["params"]["before"],
        "macs": report["macs"]["after"],
        "macs_dense": report["macs"]["before"],
        "budget": report.get("budget"),
        "selection_seconds": timing.get("selection"),
        "solver_seconds": timing.get("solver"),
        "train_seconds": timing.get("train", 0.0) + timing.get("finetune", 0.0),
        "kept_by_group": pruning.get("kept"),
        "latency": latency,
        "device": report.get("device"),
        "data": report.get("data"),
    }


# ----- commands --------------------------------------------------------------------------
def _selected(
    runs: list[StudyRun], only: str | None, out: Path
) -> tuple[list[StudyRun], list[StudyRun]]:
    """The runs ``--only`` picks, plus the unfinished dense runs they need (second list)."""
    if not only:
        return runs, []
    picked = {r for r in runs if fnmatch.fnmatch(r.name, only) or fnmatch.fnmatch(r.key, only)}
    needed = {
        r.dense
        for r in picked
        if r.method != "dense" and r.dense not in picked and run_state(out, r.dense) != "done"
    }
    return [r for r in runs if r in picked or r in needed], sorted(needed, key=runs.index)


def command_run(args: argparse.Namespace, overrides: dict[str, Any] | None) -> int:
    out = Path(args.out)
    # the module's protocol (with --protocol's overrides) must be the one the directory
    # was started with
    protocol = protocol_with(overrides)
    seeds = args.seeds if args.seeds is not None else protocol["seeds"]
    protocol = fix_protocol(out, protocol, seeds)
    labels = args.datasets.split(",") if args.datasets else list(protocol["datasets"])
    unknown = [label for label in labels if label not in protocol["datasets"]]
    if unknown:
        raise ValueError(
            f"unknown dataset(s) {', '.join(unknown)}; the protocol has "
            f"{', '.join(protocol['datasets'])}"
        )
    options = vars(args)
    data_dirs: dict[str, Path] = {}
    for label in labels:
        folder = data_dir_of(label, protocol["datasets"][label], options)
        if folder.is_dir():
            data_dirs[label] = folder
        else:
            hint = MISSING_DATA_HINT.get(label)
            print(
                f"skipping {label}: no data at {folder}" + (f" (get it: {hint})" if hint else ""),
                flush=True,
            )
    if not data_dirs:
        print("no dataset to run", flush=True)
        return 1
    print(f"load average: {load_average()}", flush=True)
    first_shape = protocol["datasets"][next(iter(data_dirs))]["input_shape"]
    threads = chosen_threads(out, protocol, first_shape)
    torch.set_num_threads(threads["chosen"])
    per_step = ", ".join(f"{k}: {v:.3f} s" for k, v in threads["seconds_per_step"].items())
    print(
        f"torch threads: {threads['chosen']} (seconds per training step of batch "
        f"{threads['batch']}: {per_step})",
        flush=True,
    )

    runs, dependencies = _selected(plan_runs(protocol, list(data_dirs), seeds), args.only, out)
    for dense in dependencies:
        print(f"also running {dense.key}: the selected runs start from its model", flush=True)
    failed: list[str] = []
    for study_run in runs:
        state = run_state(out, study_run)
        if state == "done":
            check_finished(out, protocol, study_run, data_dirs[study_run.dataset])
            print(f"done     {study_run.key}", flush=True)
            continue
        if study_run.method != "dense" and run_state(out, study_run.dense) != "done":
            print(f"waiting  {study_run.key}: {study_run.dense.name} has not finished", flush=True)
            continue
        print(f"running  {study_run.key} (load average {load_average()})", flush=True)
        try:
            result = execute(out, protocol, study_run, data_dirs[study_run.dataset], args.resume)
        except Exception as error:  # one failed run must not stop a study that spans days
            folder = run_dir(out, study_run)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / ERROR).write_text(traceback.format_exc())
            print(
                f"FAILED   {study_run.key}: {type(error).__name__}: {error} "
                f"(traceback in {folder / ERROR})",
                flush=True,
            )
            failed.append(study_run.key)
            continue
        print(
            f"finished {study_run.key}: top-1 {result['top1']:.2f}%, "
            f"{result['params']:,} parameters, {result['wall_seconds']:.0f} s",
            flush=True,
        )
    if failed:
        print(f"{len(failed)} run(s) failed: {', '.join(failed)}", flush=True)
    return 1 if failed else 0


def check_finished(
    out: Path, protocol: dict[str, Any], study_run: StudyRun, data_dir: Path
) -> None:
    """A finished run must have been made under the current protocol."""
    saved = json.loads((run_dir(out, study_run) / RUN_CONFIG).read_text())
    expected = pipeline_config(
        protocol,
        study_run,
        Path("."),
        str(data_dir),
        None if study_run.method == "dense" else Path("."),
    ).to_dict()
    if _comparable(saved["pipeline"]) != _comparable(expected):
        changed = sorted(
            k for k in _comparable(expected) if saved["pipeline"].get(k) != expected.get(k)
        )
        raise ValueError(
            f"{study_run.key} was run with other settings ({', '.join(changed)}); "
            f"delete it or use another --out"
        )


def study_runs(out: Path, protocol: dict[str, Any]) -> list[StudyRun]:
    """The planned runs of every dataset of the protocol and every seed recorded."""
    return plan_runs(protocol, list(protocol["datasets"]), protocol["seeds"])


def estimate_seconds(
    out: Path, protocol: dict[str, Any], runs: list[StudyRun]
) -> tuple[dict[tuple[str, str], float], dict[tuple[str, str], str]]:
    """Expected wall seconds per (dataset, "dense" | "pruned") run and where the number
    comes from: the mean of the finished, not resumed runs of that kind, else a prior
    from the training speed (:func:`seconds_per_image`) and the protocol's epochs."""
    finished: dict[tuple[str, str], list[float]] = {}
    for r in runs:
        result = read_result(out, r)
        if result is not None and not result.get("resumed"):
            finished.setdefault((r.dataset, _kind(r)), []).append(result["wall_seconds"])
    estimates: dict[tuple[str, str], float] = {}
    sources: dict[tuple[str, str], str] = {}
    for label, spec in protocol["datasets"].items():
        for kind in ("dense", "pruned"):
            if finished.get((label, kind)):
                estimates[label, kind] = statistics.fmean(finished[label, kind])
                sources[label, kind] = f"mean of {len(finished[label, kind])} finished"
                continue
            epochs = spec["dense_epochs" if kind == "dense" else "finetune_epochs"]
            # a pruned model at keep ~0.5 trains at about 0.6 of the dense cost
            scale = 1.0 if kind == "dense" else 0.6
            estimates[label, kind] = scale * epochs * epoch_seconds(out, protocol, label)[0]
            sources[label, kind] = "prior"
    return estimates, sources


def _kind(study_run: StudyRun) -> str:
    return "dense" if study_run.method == "dense" else "pruned"


def seconds_per_image(out: Path) -> tuple[float, list[int], str]:
    """Training seconds per image, the input shape it was measured at, and its source:
    the study's thread measurement, else the reference timing."""
    threads_path = out / THREADS_FILE
    if threads_path.exists():
        threads = json.loads(threads_path.read_text())
        step = threads["seconds_per_step"][str(threads["chosen"])]
        return step / threads["batch"], threads["input_shape"], "threads.json"
    return REFERENCE_SECONDS_PER_IMAGE, [3, 32, 32], "the reference timing in study_protocol.py"


def train_images(spec: dict[str, Any]) -> int:
    return int(spec.get("train_subset") or spec.get("train_size", 0) - spec["val_size"])


def epoch_seconds(out: Path, protocol: dict[str, Any], label: str) -> tuple[float, str]:
    """One dense epoch: training, then evaluating test and validation (forward only,
    about a third of a training step per image), scaled by the pixels per image."""
    per_image, shape, source = seconds_per_image(out)
    spec = protocol["datasets"][label]
    pixels = math.prod(spec["input_shape"][1:]) / math.prod(shape[1:])
    evaluated = (spec.get("test_subset") or spec.get("test_size", 0)) + spec["val_size"]
    return per_image * pixels * (train_images(spec) + evaluated / 3), source


def command_plan(args: argparse.Namespace, overrides: dict[str, Any] | None) -> int:
    out = Path(args.out)
    protocol = load_protocol(out, overrides)
    runs = study_runs(out, protocol)
    estimates, sources = estimate_seconds(out, protocol, runs)
    lines = [f"# Pruning study plan: {out}", "", f"load average now: {load_average()}"]
    threads_path = out / THREADS_FILE
    if threads_path.exists():
        threads = json.loads(threads_path.read_text())
        lines.append(
            f"torch threads: {threads['chosen']} (seconds per step of batch "
            f"{threads['batch']}: {threads['seconds_per_step']})"
        )
    for label in protocol["datasets"]:
        seconds, source = epoch_seconds(out, protocol, label)
        lines.append(
            f"one dense epoch of {label} ({train_images(protocol['datasets'][label]):,} "
            f"training images, evaluation included): about {seconds:.0f} s (from {source})"
        )
    lines += ["", "| run | state | seconds | top-1 |", "|---|---|---|---|"]
    left: dict[str, float] = {}
    counts: dict[str, int] = {}
    for r in runs:
        state = run_state(out, r)
        counts[state] = counts.get(state, 0) + 1
        result = read_result(out, r)
        if result is not None:
            lines.append(
                f"| {r.key} | {state} | {result['wall_seconds']:.0f} | {result['top1']:.2f} |"
            )
            continue
        guess = estimates[r.dataset, _kind(r)]
        left[r.dataset] = left.get(r.dataset, 0.0) + guess
        lines.append(f"| {r.key} | {state} | ~{guess:.0f} | |")
    summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    per_dataset = ", ".join(f"{label} {seconds / 3600:.1f} h" for label, seconds in left.items())
    lines += [
        "",
        f"{len(runs)} runs: {summary}.",
        f"time left: about {sum(left.values()) / 3600:.1f} h"
        + (f" ({per_dataset})" if per_dataset else "")
        + "; per run: "
        + "; ".join(f"{label} {kind} {sources[label, kind]}" for label, kind in sources)
        + ". A partial run counts in full.",
    ]
    text = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "plan.md").write_text(text)
    print(text)
    return 0


def command_latency(args: argparse.Namespace, overrides: dict[str, Any] | None) -> int:
    """Re-time every finished pruned run against its dense model (see the module)."""
    out = Path(args.out)
    protocol = load_protocol(out, overrides)
    repeats = args.repeats if args.repeats is not None else protocol["latency"]["repeats"]
    if repeats < 1:
        raise ValueError(f"--repeats must be at least 1, got {repeats}")
    runs = [
        r
        for r in study_runs(out, protocol)
        if r.method != "dense"
        and read_result(out, r) is not None
        and (run_dir(out, r.dense) / PIPELINE / "model").is_dir()
    ]
    if not runs:
        print("no finished pruned run to time", flush=True)
        return 0
    threads_path = out / THREADS_FILE
    if threads_path.exists():  # the runs' own thread count, so the figures compare
        torch.set_num_threads(int(json.loads(threads_path.read_text())["chosen"]))
    # the machine's load before the pass: the timing itself keeps the torch threads busy,
    # so the load average read between runs counts the pass's own work
    before = load_average()
    print(f"load average: {before}; {len(runs)} runs", flush=True)
    for study_run in runs:
        measured = latency_ratio(
            run_dir(out, study_run.dense) / PIPELINE / "model",
            run_dir(out, study_run) / PIPELINE / "model",
            protocol["datasets"][study_run.dataset]["input_shape"],
            protocol["latency"]["batch"],
            repeats,
        )
        measured["measured"] = datetime.now().isoformat(timespec="seconds")
        measured["load_before_pass"] = before
        write_json(run_dir(out, study_run) / QUIET_LATENCY, measured)
        print(
            f"{study_run.key}: pruned/dense {measured['ratio']:.3f} "
            f"({measured['pruned_ms']:.1f} / {measured['dense_ms']:.1f} ms, "
            f"load {measured['load_average'][0]})",
            flush=True,
        )
    return 0


def command_solvers(args: argparse.Namespace, overrides: dict[str, Any] | None) -> int:
    """The Ising methods' problems solved by other solvers (study_solvers.py)."""
    out = Path(args.out)
    protocol = load_protocol(out, overrides)
    solvers = [name.strip() for name in args.solvers.split(",") if name.strip()]
    first = protocol["selection"]["solver"]
    if not solvers or solvers[0] != first:
        raise ValueError(f"--solvers must start with the study's solver, {first}")
    options = vars(args)
    cases = []
    for study_run in study_runs(out, protocol):
        if study_run.method not in ISING_METHODS or study_run.keep != protocol["keep"]:
            continue
        dense_model = run_dir(out, study_run.dense) / PIPELINE / "model"
        data_dir = data_dir_of(study_run.dataset, protocol["datasets"][study_run.dataset], options)
        if run_state(out, study_run.dense) != "done" or not data_dir.is_dir():
            continue
        config = pipeline_config(protocol, study_run, out / "unused", str(data_dir), dense_model)
        result = read_result(out, study_run)
        kept = None if result is None else {g: k for g, (k, _) in result["kept_by_group"].items()}
        cases.append((study_run.key, config, kept))
    if not cases:
        print("no finished dense model to build a problem on", flush=True)
        return 0
    print(f"load average: {load_average()}; {len(cases)} problems", flush=True)
    study_solvers.compare(cases, solvers, out / study_solvers.SOLVERS_FILE)
    return 0


def with_quiet_latency(result: dict[str, Any], folder: Path) -> dict[str, Any]:
    """``result`` with ``latency_quiet`` from the run's ``latency_quiet.json``, if any."""
    path = folder / QUIET_LATENCY
    if path.exists():
        result["latency_quiet"] = json.loads(path.read_text())
    return result


def command_report(args: argparse.Namespace, overrides: dict[str, Any] | None) -> int:
    out = Path(args.out)
    protocol = load_protocol(out, overrides)
    runs = study_runs(out, protocol)
    results = {
        r.key: with_quiet_latency(result, run_dir(out, r))
        for r in runs
        if (result := read_result(out, r)) is not None
    }
    # results of seeds or budgets outside the plan are reported too, never dropped
    for path in sorted(out.glob(f"*/*/{RESULT}")):
        result = with_quiet_latency(json.loads(path.read_text()), path.parent)
        results.setdefault(f"{result['dataset']}/{result['run']}", result)
    states = {r.key: run_state(out, r) for r in runs}
    threads_path = out / THREADS_FILE
    threads = json.loads(threads_path.read_text()) if threads_path.exists() else None
    docs = REPO / "docs" if args.docs else None
    markdown = study_report.write_report(out, protocol, runs, results, states, threads, docs)
    print(markdown.read_text())
    return 0


def parse_protocol(text: str | None) -> dict[str, Any] | None:
    """``--protocol``: inline JSON (starting with ``{``) or the path of a JSON file."""
    if text is None:
        return None
    try:
        value = json.loads(text if text.lstrip().startswith("{") else Path(text).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(
            f"--protocol: neither a JSON object nor a readable JSON file: {error}"
        ) from None
    if not isinstance(value, dict):
        raise ValueError(f"--protocol must be a JSON object, got {type(value).__name__}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="run (or continue) the study")
    plan_parser = commands.add_parser("plan", help="list the runs, their state, the time left")
    report_parser = commands.add_parser("report", help="results.md and figures from what finished")
    latency_parser = commands.add_parser(
        "latency", help="re-time every finished pruned run (stop the study first)"
    )
    latency_parser.add_argument(
        "--repeats", type=int, help="timed forward passes per model (default: the protocol's)"
    )
    solvers_parser = commands.add_parser(
        "solvers", help="the Ising methods' problems solved by other solvers: masks compared"
    )
    solvers_parser.add_argument(
        "--solvers", default="torch-sa,neal,tabu", help="comma-separated, the study's first"
    )
    for data_option in ("--cifar-dir", "--fashion-dir"):
        solvers_parser.add_argument(data_option, help="as for run")
    for sub in (run_parser, plan_parser, report_parser, latency_parser, solvers_parser):
        sub.add_argument("--out", required=True, help="the study directory")
        sub.add_argument("--protocol", help="JSON overrides of the protocol (tests)")
    run_parser.add_argument("--datasets", help="comma-separated labels (default: all)")
    run_parser.add_argument("--seeds", type=int, nargs="+", help="default: the protocol's")
    run_parser.add_argument("--only", help="fnmatch pattern of run names, e.g. 'dense-*'")
    run_parser.add_argument("--resume", action="store_true", help="continue partial runs")
    run_parser.add_argument("--cifar-dir", help="the CIFAR-10 JPEG copy (image folder)")
    run_parser.add_argument("--fashion-dir", help="the Fashion-MNIST idx files")
    report_parser.add_argument(
        "--docs", action="store_true", help="also write docs/results.md and docs/figures/"
    )
    args = parser.parse_args(argv)
    overrides = parse_protocol(args.protocol)
    command = {
        "run": command_run,
        "plan": command_plan,
        "report": command_report,
        "latency": command_latency,
        "solvers": command_solvers,
    }
    return command[args.command](args, overrides)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ValueError as error:  # bad options or protocol: one line, no traceback
        print(f"study.py: error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # the pipeline has saved its last epoch's checkpoint
        print("interrupted: continue with `study.py run --out ... --resume`", file=sys.stderr)
        sys.exit(130)
