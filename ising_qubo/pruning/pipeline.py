"""One pruning run, end to end: data, model, training with Ising-dropout (or a baseline),
structural pruning, fine-tuning, report, plots, saved model, resumable checkpoints.

(Long because the phases and the resume logic must agree on one checkpoint layout; the
pieces that stand alone live beside it: starting_point, export, refine, plots.)

The CLI's ``prune`` and ``train`` commands only fill a :class:`RunConfig` and call
:func:`run`. A run directory holds::

    config.json        the configuration (a resumed run must match it)
    checkpoint.pt      after every epoch (tensors and plain data; loaded weights_only)
    pruned_init/       the pruned architecture at the moment of pruning (for --resume)
    model/             the final model: model.safetensors + architecture.json
    report.json        parameters, MACs, accuracy before/after, kept units, energies, the
                       budget asked for and met ("budget": mode, by, asked, met)
                       (JSON as ising_qubo.io.jsonvalues writes it: inf/nan as strings)
    kept_channels.png  energy.png  accuracy.png
    .lock              while a process works in the run: its pid, under flock (one owner)

Under ``torchrun`` (several processes, :mod:`ising_qubo.nets.distributed`) the run is
data-parallel: ``batch_size`` is the global batch, each process trains on its shard with
``DistributedDataParallel`` (BatchNorm synchronised), evaluates its shard of the test set
(the counts are summed), the main process (rank 0) solves the Ising problem and broadcasts
the masks, and only the main process writes to the run directory; the others never touch
it. A checkpoint is read by the main process and broadcast, so the other nodes need no
access to ``--out``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ising_qubo import _progress
from ising_qubo.io._dirlock import DirectoryLock
from ising_qubo.io.jsonvalues import to_json, to_plain, write_json
from ising_qubo.nets import data as data_module
from ising_qubo.nets import distributed
from ising_qubo.nets.persist import ARCHITECTURE_FILE, WEIGHTS_FILE, load_pruned, save_pruned
from ising_qubo.nets.training import (
    History,
    evaluate,
    load_checkpoint,
    make_optimizer,
    make_scheduler,
    prepare_model,
    resolve_device,
    save_checkpoint,
    train_one_epoch,
)
from ising_qubo.nets.training.checkpoint_schema import check_run_checkpoint
from ising_qubo.pruning.budget import BUDGETS
from ising_qubo.pruning.groups import count_macs, count_params
from ising_qubo.pruning.latency import measured_latency_fraction
from ising_qubo.pruning.pruners import BASELINES, ImportancePruner, IsingPruner
from ising_qubo.pruning.run_schema import check_pruned_init, read_run_config
from ising_qubo.pruning.starting_point import calibration_batch, starting_model

METHODS = ("ising", *BASELINES, "none")
CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
REPORT = "report.json"
PHASES = ("train", "finetune")  # the phases a checkpoint can be written in


@dataclass
class RunConfig:
    """Everything a run depends on (``ising-qubo prune --help`` describes each field)."""

    out: str
    model: str = "resnet20"
    dataset: str = "cifar10"
    data_dir: str | None = None
    download: bool = False
    method: str = "ising"
    energy: str = "redundancy"
    solver: str = "torch-sa"
    solver_params: dict = field(default_factory=dict)
    keep: float = 0.5
    keep_by: str = "params"
    budget: str = "uniform"
    min_keep: float = 0.1
    importance: str = "l1"
    similarity: str = "cosine"
    epochs: int = 1
    finetune_epochs: int = 1
    freeze_epoch: int | None = None
    resolve_every: int = 20
    patience: int = 5
    optimizer: str = "sgd"
    lr: float | None = None
    finetune_lr: float | None = None
    weight_decay: float = 5e-4
    momentum: float = 0.9
    schedule: str = "cosine"
    step_size: int | None = None
    gamma: float = 0.1
    batch_size: int = 128
    train_subset: int | None = None
    test_subset: int | None = None
    val_size: int = 0
    calibration_size: int = 256
    refine: int = 1
    seed: int = 0
    device: str = "auto"
    amp: bool = False
    channels_last: bool = False
    checkpoint: str | None = None
    progress: bool | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if not 0.0 < self.keep <= 1.0:
            raise ValueError(f"--keep must be a fraction in (0, 1], got {self.keep}")
        if self.budget not in BUDGETS:
            raise ValueError(f"--budget must be one of {', '.join(BUDGETS)}, got {self.budget!r}")
        if isinstance(self.min_keep, bool) or not 0.0 <= self.min_keep < 1.0:
            raise ValueError(f"--min-keep must be a fraction in [0, 1), got {self.min_keep}")
        for name in ("epochs", "finetune_epochs"):
            if getattr(self, name) < 0:
                raise ValueError(
                    f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}"
                )
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be positive, got {self.batch_size}")
        if isinstance(self.refine, bool) or not isinstance(self.refine, int) or self.refine < 1:
            raise ValueError(f"--refine must be an integer >= 1, got {self.refine!r}")
        if self.keep_by == "latency" and (self.method != "ising" or self.budget != "global"):
            raise ValueError(
                f"--keep-by latency needs --method ising --budget global, got "
                f"--method {self.method} --budget {self.budget}"
            )
        if self.refine > 1 and self.method != "ising":
            raise ValueError(
                f"--refine {self.refine} applies to --method ising only, got {self.method!r}"
            )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _comparable(config: dict) -> dict:
    """The fields a resumed run must share with the interrupted one (a field added since
    that run was written counts with its default: --budget and --min-keep, for example)."""
    ignored = {"progress", "device", "out"}
    defaults = {
        f.name: f.default
        for f in dataclasses.fields(RunConfig)
        if f.default is not dataclasses.MISSING and f.name not in config
    }
    return {k: v for k, v in {**defaults, **config}.items() if k not in ignored}


class Run:
    """State of one run; :func:`run` drives it. Split in phases so a checkpoint written
    after any epoch is enough to continue."""

    def __init__(
        self, config: RunConfig, resume: bool = False, context: distributed.Context | None = None
    ) -> None:
        self.config = config
        self.out = Path(config.out)
        self.resume = resume
        self.ctx = context or distributed.Context(device=resolve_device(config.device))
        self.device = self.ctx.device
        # --batch-size is the global batch: each of the processes takes its share
        self.local_batch_size = self.ctx.local_batch_size(config.batch_size)
        self.history = History()
        self.energy_history: list[dict] = []
        self.timing: dict[str, float] = {"train": 0.0, "finetune": 0.0, "solver": 0.0}
        self.report: dict[str, Any] = {}

    # ----- set-up -------------------------------------------------------------------
    def say(self, message: str) -> None:
        """A status line on stderr when it is a terminal (main process only; none under
        --quiet: :func:`ising_qubo._progress.status`)."""
        if self.ctx.is_main:
            _progress.status(message)

    def log(self, message: str) -> None:
        """A line on stderr, terminal or not, where it does not mix with the result on
        stdout (main process only; none under --quiet)."""
        if self.ctx.is_main:
            _progress.log_line(message)

    @property
    def bars(self) -> bool:
        """Whether this process may draw bars: the main one, unless --no-progress (and then
        only on a terminal, see :mod:`ising_qubo._progress`)."""
        return self.ctx.is_main and self.config.progress is not False

    def prepare_directory(self) -> dict | None:
        """Refuse an existing run without ``resume``, check the options of a resumed one and
        load its checkpoint. Main process only (the others get the outcome)."""
        config_path = self.out / CONFIG
        checkpoint_path = self.out / CHECKPOINT
        state = None
        if self.resume:
            if not checkpoint_path.exists():
                where = (
                    ""
                    if not self.ctx.distributed
                    else " on the machine of rank 0 (on several machines with the c10d "
                    "rendezvous any of them can get rank 0: keep --out on a shared "
                    "filesystem, or use --rdzv-backend static with --node-rank)"
                )
                raise FileNotFoundError(
                    f"--resume: no {CHECKPOINT} in {self.out}{where} to "
                    f"resume from; start the run without --resume"
                )
            # both as JSON text holds them (inf/nan as strings), so such values compare equal
            saved = to_json(read_run_config(config_path, RunConfig))
            current = to_json(self.config.to_dict())
            if _comparable(saved) != _comparable(current):
                changed = sorted(k for k in _comparable(saved) if saved.get(k) != current.get(k))
                raise ValueError(
                    f"--resume: the options differ from the interrupted run in "
                    f"{self.out} ({', '.join(changed)}); use the same options"
                )
            state = check_run_checkpoint(load_checkpoint(checkpoint_path), checkpoint_path, PHASES)
            from ising_qubo.io._atomic import remove_stale_temporaries

            # the temporary files of writes a kill interrupted (this run owns the directory)
            files = [CONFIG, CHECKPOINT, REPORT, "kept_channels.png", "energy.png", "accuracy.png"]
            for folder in ("pruned_init", "model"):
                files += [f"{folder}/{ARCHITECTURE_FILE}", f"{folder}/{WEIGHTS_FILE}"]
            remove_stale_temporaries(self.out, files)
        elif checkpoint_path.exists() or (self.out / REPORT).exists():
            raise FileExistsError(
                f"{self.out} already holds a run; pass --resume to continue "
                f"it or choose another --out (nothing was overwritten)"
            )
        return state

    def write_config(self) -> None:
        """After the data and the model are known to load: a failed start leaves nothing."""
        self.out.mkdir(parents=True, exist_ok=True)
        write_json(self.out / CONFIG, self.config.to_dict())

    def load_data(self) -> None:
        c = self.config
        where = f" from {c.data_dir}" if c.data_dir else ""
        self.say(f"loading {c.dataset}{where}")
        started = time.perf_counter()
        splits = data_module.load_splits(
            c.dataset,
            c.data_dir,
            val_size=c.val_size,
            subset=c.train_subset,
            test_subset=c.test_subset,
            seed=c.seed,
            download=c.download,
            progress=self.bars,
        )
        if "test" not in splits:
            raise ValueError(
                f"dataset {c.dataset!r} in {c.data_dir} has no test split; "
                f"an image folder needs train/ and test/ subfolders"
            )
        self.splits = splits
        sizes = ", ".join(f"{len(split):,} {name}" for name, split in splits.items())
        self.say(f"loaded {sizes} images in {time.perf_counter() - started:.1f} s")
        train = splits["train"]
        rank, world_size = self.ctx.rank, self.ctx.world_size
        # each process: positions rank, rank+W, ... of the global permutation, B/W per
        # batch, so the processes' i-th batches together are the single-process i-th batch
        self.train_loader = data_module.BatchLoader(
            train,
            self.local_batch_size,
            shuffle=True,
            augment=True,
            device=self.device,
            seed=c.seed,
            drop_last=len(train) > c.batch_size,
            channels_last=c.channels_last,
            rank=rank,
            world_size=world_size,
        )
        # evaluation: every item once over all processes (no truncation), counts summed
        self.test_loader = data_module.BatchLoader(
            splits["test"],
            256,
            shuffle=False,
            device=self.device,
            channels_last=c.channels_last,
            even=False,
            rank=rank,
            world_size=world_size,
        )
        self.val_loader = (
            data_module.BatchLoader(
                splits["val"],
                256,
                shuffle=False,
                device=self.device,
                even=False,
                rank=rank,
                world_size=world_size,
            )
            if "val" in splits
            else None
        )
        self.calibration = calibration_batch(train, c.calibration_size, c.seed, self.device)
        self.example_inputs = self.calibration[0][:1]
        self.refine_batch = self._refine_batch(train) if c.refine > 1 else None

    def _refine_batch(self, train) -> tuple[torch.Tensor, torch.Tensor]:
        """--refine's held-out batch: ``calibration_size`` training images (stratified,
        seed + 1) chosen among those NOT in the calibration batch (``train.split`` holds
        out exactly the calibration's stratified selection), so the loss that picks among
        the solver's states is measured on images the energy never saw."""
        c = self.config
        rest, _calibration = train.split(min(c.calibration_size, len(train)), seed=c.seed)
        if len(rest) == 0:
            raise ValueError(
                f"--refine {c.refine}: the training set ({len(train)} images) has none "
                f"beyond the calibration batch of {c.calibration_size}"
            )
        return calibration_batch(rest, c.calibration_size, c.seed + 1, self.device)

    def build_model(self) -> nn.Module:
        c = self.config
        train = self.splits["train"]
        model, self.spec = starting_model(
            c.model, c.checkpoint, num_classes=train.num_classes, in_channels=train.in_channels
        )
        return prepare_model(model, self.device, c.channels_last)

    # ----- phases --------------------------------------------------------------------
    def _optimizer(self, model: nn.Module, epochs: int, lr: float | None):
        c = self.config
        optimizer = make_optimizer(
            c.optimizer, model.parameters(), lr=lr, weight_decay=c.weight_decay, momentum=c.momentum
        )
        scheduler = make_scheduler(
            c.schedule,
            optimizer,
            max(epochs, 1),
            len(self.train_loader),
            step_size=c.step_size,
            gamma=c.gamma,
        )
        return optimizer, scheduler

    def _make_pruner(self, model: nn.Module):
        c = self.config
        # several processes: the main one solves (or ranks units), every one gets the masks
        share = self.ctx.run_on_main if self.ctx.distributed else None
        if c.method == "ising":
            return IsingPruner(
                model,
                self.example_inputs,
                keep=c.keep,
                energy=c.energy,
                solver=c.solver,
                solver_params=c.solver_params,
                every=c.resolve_every,
                patience=c.patience,
                freeze_epoch=c.freeze_epoch,
                data=self.calibration,
                keep_by=c.keep_by,
                budget=c.budget,
                min_keep=c.min_keep,
                importance=c.importance,
                similarity=c.similarity,
                seed=c.seed,
                run_on_main=share,
                refine=c.refine,
                refine_data=self.refine_batch,
            )
        if c.method == "none":
            return None
        return ImportancePruner(
            model,
            self.example_inputs,
            keep=c.keep,
            importance=c.method,
            data=self.calibration,
            keep_by=c.keep_by,
            min_keep=c.min_keep,
            seed=c.seed,
            run_on_main=share,
        )

    def evaluate(self, model: nn.Module, loader, desc: str = "evaluate") -> dict:
        """Over the whole split: each process scores its shard, the sums are reduced."""
        reduce = self.ctx.all_reduce_sum if self.ctx.distributed else None
        return evaluate(
            model, loader, amp=self.config.amp, reduce=reduce, progress=self.bars, desc=desc
        )

    def _epoch(
        self, phase: str, epoch: int, train_model, model, optimizer, scheduler, hooks
    ) -> dict:
        """One epoch through ``train_model`` (the DDP wrapper when distributed), then the
        evaluation of ``model`` (the plain network)."""
        c = self.config
        self.train_loader.set_epoch(epoch if phase == "train" else c.epochs + epoch)
        started = time.perf_counter()
        stats = train_one_epoch(
            train_model,
            self.train_loader,
            optimizer,
            scheduler,
            device=self.device,
            hooks=hooks,
            amp=c.amp,
            # None (no --no-progress) is tqdm's default: a bar when stderr is a terminal
            progress=self.bars,
            desc=f"{phase} {epoch + 1}",
            epoch=epoch,
            reduce=self.ctx.all_reduce_sum if self.ctx.distributed else None,
        )
        self.timing[phase] += time.perf_counter() - started
        test = self.evaluate(model, self.test_loader, f"{phase} {epoch + 1}: test")
        row = {
            "phase": phase,
            "epoch": epoch,
            "train_loss": stats["loss"],
            "train_top1": stats["top1"],
            "test_top1": test["top1"],
            "test_top5": test["top5"],
            "test_loss": test["loss"],
        }
        if self.val_loader is not None:
            val = self.evaluate(model, self.val_loader, f"{phase} {epoch + 1}: validation")
            row.update(val_top1=val["top1"], val_top5=val["top5"])
        self.history.append(**row)
        self.log(
            f"{phase} epoch {epoch + 1}: loss {stats['loss']:.3f}, train top-1 "
            f"{stats['top1']:.2f}%, test top-1 {test['top1']:.2f}% top-5 "
            f"{test['top5']:.2f}%"
        )
        return row

    def _checkpoint(self, phase: str, epoch: int, model, optimizer, scheduler, pruner) -> None:
        """Written by the main process; every process waits for it (and fails with it)."""
        self.ctx.run_on_main(
            lambda: self._write_checkpoint(phase, epoch, model, optimizer, scheduler, pruner)
        )

    def _write_checkpoint(
        self, phase: str, epoch: int, model, optimizer, scheduler, pruner
    ) -> None:
        state = {
            "phase": phase,
            "epoch": epoch,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "history": self.history.to_dict(),
            "pruner": to_plain(pruner.state_dict()) if pruner is not None else None,
            "timing": dict(self.timing),
            "report": to_plain(self.report),
        }
        save_checkpoint(self.out / CHECKPOINT, **state)

    def pruned_architecture(self, unpruned: nn.Module) -> nn.Module:
        """The pruned model saved in ``pruned_init/`` (resuming in the fine-tuning phase),
        read by the main process; the others get its two files' bytes, so they need no
        access to the run directory."""
        folder = self.out / "pruned_init"
        # before anything is built from it: the run's own architecture, no layer larger
        self.ctx.run_on_main(lambda: check_pruned_init(folder, self.spec, unpruned))
        if not self.ctx.distributed:
            return load_pruned(folder)

        def read() -> dict[str, bytes]:
            try:
                return {
                    name: (folder / name).read_bytes() for name in (ARCHITECTURE_FILE, WEIGHTS_FILE)
                }
            except FileNotFoundError as error:
                raise FileNotFoundError(
                    f"--resume: {folder} lacks {Path(error.filename).name}: the run was "
                    f"interrupted in its fine-tuning phase and needs the pruned architecture "
                    f"its main process saved there"
                ) from None

        files = self.ctx.run_on_main(read)
        if self.ctx.is_main:
            return load_pruned(folder)
        with tempfile.TemporaryDirectory(prefix="ising-qubo-pruned-") as tmp:
            for name, content in files.items():
                (Path(tmp) / name).write_bytes(content)
            return load_pruned(tmp)


def run(config: RunConfig, resume: bool = False) -> dict:
    """Run (or, with ``resume``, continue) the pruning run; returns the report.

    A checkpoint is written before the first epoch and after every epoch (atomically), so
    an interrupt or a kill loses at most the epoch in progress: ``resume=True`` continues
    from the last checkpoint and, with the same seed, ends with the same masks and metrics.

    Started by ``torchrun`` with several processes, the run is data-parallel (see the
    module docstring and :mod:`ising_qubo.nets.distributed`); every process returns the report,
    the main one writes it. The process group is destroyed at the end, also on error.
    """
    with distributed.session(config.device) as ctx, _owned(config.out, ctx):
        try:
            return _run(config, resume, ctx)
        except KeyboardInterrupt:
            if ctx.is_main and (Path(config.out) / CHECKPOINT).exists():
                # how to continue is no progress report: printed under --quiet too
                print(
                    f"interrupted: the last checkpoint is kept in {config.out}; continue "
                    f"with the same command plus --resume",
                    file=sys.stderr,
                )
            raise


@contextlib.contextmanager
def _owned(out: str, ctx: distributed.Context) -> Iterator[None]:
    """The run directory's lock (:mod:`ising_qubo.io._dirlock`), held by the main process
    for the whole run -- the others never touch the directory -- so that a second run or
    ``--resume`` on the same ``--out`` is refused in one line while this one works. The
    kernel drops the lock when the process ends, however it ends."""
    lock = DirectoryLock(
        out, what="run directory", advice="wait for it to end or choose another --out"
    )
    ctx.run_on_main(lock.acquire)  # every process fails with the main one's refusal
    try:
        yield
    finally:
        if ctx.is_main:
            lock.release()


def _run(config: RunConfig, resume: bool, ctx: distributed.Context) -> dict:
    c = config
    torch.manual_seed(c.seed)
    np.random.seed(c.seed % 2**32)
    job = Run(config, resume, ctx)
    # the main process checks the directory and reads the checkpoint; every process gets
    # the outcome (the state, or the same error)
    state = ctx.run_on_main(job.prepare_directory)
    ctx.together(job.load_data)  # a node without the data fails every process, clearly
    model = ctx.together(job.build_model)
    ctx.run_on_main(job.write_config)
    job.report["initial"] = _measure(model, job, "starting model")
    if state is not None:
        job.history = History.from_dict(state["history"])
        job.timing.update(state["timing"])
        job.report.update(state.get("report") or {})

    # ----- phase 1: training (with Ising-dropout for the Ising method) ---------------------
    pruner = None
    start_epoch = 0
    if state is None or state["phase"] != "finetune":  # else: resumed inside fine-tuning
        if state is not None:
            model.load_state_dict(state["model"])
        if c.method != "none":
            job.say(f"building the pruning problem ({c.method}, keep {c.keep:g} by {c.keep_by})")
        pruner = job._make_pruner(model)
        optimizer, scheduler = job._optimizer(model, c.epochs, c.lr)
        if state is not None:
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if pruner is not None and state.get("pruner"):
                pruner.load_state_dict(state["pruner"])
            start_epoch = state["epoch"] + 1
        hooks = [pruner] if isinstance(pruner, IsingPruner) else []
        if state is None:  # a checkpoint before any work: even a kill in epoch 1 resumes
            job._checkpoint("train", -1, model, optimizer, scheduler, pruner)
        with ctx.wrap_model(model) as train_model:  # DDP + synchronised BN when distributed
            for epoch in range(start_epoch, c.epochs):
                job._epoch("train", epoch, train_model, model, optimizer, scheduler, hooks)
                if isinstance(pruner, IsingPruner):
                    pruner.on_epoch_end(epoch)
                job._checkpoint("train", epoch, model, optimizer, scheduler, pruner)
        del train_model  # the DDP wrapper and its gradient hooks go now
        job.report["before_pruning"] = _measure(model, job, "before pruning")

        # ----- phase 2: structural pruning ---------------------------------------------
        if pruner is not None:
            started = time.perf_counter()
            if isinstance(pruner, IsingPruner) and pruner.masks is None:
                job.say(f"solving the pruning problem with {c.solver}")
                pruner.step()
            elif isinstance(pruner, ImportancePruner):
                job.say(f"choosing the channels to remove ({c.method})")
                pruner.step()
            refined = None
            if isinstance(pruner, IsingPruner) and c.refine > 1:
                job.say(f"refining: the loss of {c.refine} candidate selections")
                refining = time.perf_counter()
                refined = pruner.refine_selection()
                job.timing["refine"] = time.perf_counter() - refining
            job.timing["selection"] = time.perf_counter() - started
            masks = {k: np.asarray(v) for k, v in pruner.masks.items()}
            group_sizes = {g.name: g.size for g in pruner.groups}
            filter_rate = _paper_filter_rate(pruner.groups, masks, model)
            # a latency budget is a fitted model: time the pruned network against a copy
            # of the dense one, so the report holds what was really met
            dense_copy = copy.deepcopy(model) if c.keep_by == "latency" else None
            started = time.perf_counter()
            dense_params = count_params(model)
            job.say("removing the pruned channels (surgery)")
            history = pruner.prune()
            job.timing["surgery"] = time.perf_counter() - started
            job.say(f"parameters {dense_params:,} -> {count_params(model):,}")
            if dense_copy is not None and isinstance(pruner, IsingPruner):
                job.report["latency"] = {
                    "predicted": pruner.problem.budget_report(masks)["met"],
                    "measured": measured_latency_fraction(dense_copy, model, job.example_inputs),
                }
                del dense_copy
            if isinstance(pruner, IsingPruner):
                job.energy_history = pruner.energy_history
                job.timing["solver"] = float(
                    sum(r["solver_seconds"] for r in pruner.energy_history)
                )
                # energy building + solving + budget polish, over all re-solves
                job.timing["selection"] = float(sum(r["seconds"] for r in pruner.energy_history))
            job.report["pruning"] = {
                "kept": {
                    name: [int(mask.sum()), group_sizes[name]] for name, mask in masks.items()
                },
                "removed": {name: idx for name, idx in history},
                "paper_filter_pruning_rate": filter_rate,
                "energy_history": job.energy_history,
            }
            if refined is not None:  # --refine K: each candidate's energy and held-out loss
                job.report["pruning"]["refine"] = {
                    "k": c.refine,
                    "held_out": len(job.refine_batch[1]) if job.refine_batch else 0,
                    "chosen": refined.chosen,
                    "candidates": refined.table(),
                }
            ctx.run_on_main(
                lambda: save_pruned(
                    model, job.out / "pruned_init", spec=job.spec, metadata={"history": history}
                )
            )
            job.report["after_pruning"] = _measure(model, job, "after pruning")
        start_epoch = 0
        state = None
    else:
        model = prepare_model(job.pruned_architecture(model), job.device, c.channels_last)
        model.load_state_dict(state["model"])
        start_epoch = state["epoch"] + 1

    # ----- phase 3: fine-tuning -------------------------------------------------------
    if c.method != "none" and c.finetune_epochs > 0:
        optimizer, scheduler = job._optimizer(
            model, c.finetune_epochs, c.finetune_lr if c.finetune_lr else c.lr
        )
        if state is not None:
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
        # a new wrapper: the surgery gave the model new parameters
        with ctx.wrap_model(model) as train_model:
            for epoch in range(start_epoch, c.finetune_epochs):
                job._epoch("finetune", epoch, train_model, model, optimizer, scheduler, [])
                job._checkpoint("finetune", epoch, model, optimizer, scheduler, None)
        del train_model

    job.report["final"] = _measure(model, job, "final model")
    report = _final_report(job)
    job.say(f"writing the model, {REPORT} and plots to {job.out}")

    def write_outputs() -> None:
        save_pruned(
            model,
            job.out / "model",
            spec=job.spec,
            metadata={"report": "report.json", "config": to_json(c.to_dict())},
        )
        write_json(job.out / REPORT, report)
        from ising_qubo.pruning.plots import plot_run

        plot_run(report, job.out)

    ctx.run_on_main(write_outputs)  # the others wait for it, and fail with it
    return report


def _measure(model: nn.Module, job: Run, stage: str) -> dict:
    """The ``stage``'s accuracy on the test split and its size; said on a status line."""
    test = job.evaluate(model, job.test_loader, f"{stage}: test")
    measured = {
        "top1": test["top1"],
        "top5": test["top5"],
        "loss": test["loss"],
        "params": count_params(model),
        "macs": count_macs(model, job.example_inputs),
    }
    job.say(
        f"{stage}: test top-1 {test['top1']:.2f}% top-5 {test['top5']:.2f}%, "
        f"{measured['params']:,} parameters"
    )
    return measured


def _final_report(job: Run) -> dict:
    before = job.report.get("before_pruning", job.report["initial"])
    after = job.report["final"]
    params_ratio = after["params"] / before["params"]
    return {
        "config": job.config.to_dict(),
        "device": str(job.device),
        "world_size": job.ctx.world_size,  # processes (batch_size is their global batch)
        "data": {name: len(split) for name, split in job.splits.items()},
        "params": {
            "before": before["params"],
            "after": after["params"],
            "kept_fraction": params_ratio,
        },
        "macs": {
            "before": before["macs"],
            "after": after["macs"],
            "kept_fraction": after["macs"] / before["macs"],
        },
        # before: the network as trained for `epochs` (with Ising-dropout for the Ising
        # method), just before the cut; after_surgery: right after it; after: after the
        # `finetune_epochs`. Read together, the fine-tuning's gain is not pruning's.
        "accuracy": {
            "before": {"top1": before["top1"], "top5": before["top5"]},
            "after": {"top1": after["top1"], "top5": after["top5"]},
            **(
                {"after_surgery": {k: job.report["after_pruning"][k] for k in ("top1", "top5")}}
                if "after_pruning" in job.report
                else {}
            ),
            "epochs": {"train": job.config.epochs, "finetune": job.config.finetune_epochs},
        },
        "stages": {
            k: job.report[k]
            for k in ("initial", "before_pruning", "after_pruning", "final")
            if k in job.report
        },
        "pruning": job.report.get("pruning"),
        "budget": _budget_report(job),
        "history": job.history.to_dict(),
        "timing_seconds": job.timing,
        "paper_comparison": {
            "filter_pruning_rate": (job.report.get("pruning") or {}).get(
                "paper_filter_pruning_rate"
            ),
            "parameter_pruning_rate": 1.0 - params_ratio,
            "note": "the paper counts removed filters only; parameter_pruning_rate counts "
            "the really pruned model (input channels removed downstream included)",
        },
    }


def _budget_report(job: Run) -> dict:
    """The budget asked for and the one the really pruned model meets (its parameters or
    MACs after the surgery over those before it; its latency timed against the dense
    model's right after the surgery, and the fraction the budget's model predicted)."""
    c = job.config
    before = job.report.get("before_pruning", job.report["initial"])
    after = job.report.get("after_pruning", before)
    if c.method == "ising":
        mode = c.budget
    else:  # the baselines: Torch-Pruning's global ones allocate per layer too
        mode = "global" if "global" in c.method else "uniform"
    report: dict[str, Any] = {
        "mode": mode,
        "by": c.keep_by,
        "asked": c.keep if c.method != "none" else 1.0,
    }
    if c.keep_by == "latency":  # timed after the surgery; "predicted": the budget's model
        latency = job.report.get("latency") or {}
        report.update(met=latency.get("measured"), predicted=latency.get("predicted"))
    else:
        report["met"] = after[c.keep_by] / before[c.keep_by]
    if c.method == "ising" and mode == "global":
        report["min_keep"] = c.min_keep
    return report


def _paper_filter_rate(groups, masks, model: nn.Module) -> float:
    """The paper's count: parameters of the removed filters (weights, bias) over all
    parameters, ignoring the input channels that go with them downstream."""
    removed = 0
    for group in groups:
        keep = masks[group.name]
        for layer in group.layers:
            dropped = int((~keep[layer.units]).sum())
            per = layer.module.weight[0].numel()
            if getattr(layer.module, "bias", None) is not None:
                per += 1
            removed += dropped * per
    return removed / count_params(model)
