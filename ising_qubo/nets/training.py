"""Generic training machinery for the pruning pipeline: optimizers, per-iteration schedules,
a hookable training loop, evaluation, Ising-dropout masking, atomic checkpoints.

Nothing here knows about energies or solvers. The pipeline drives the Ising dropout through
:class:`UnitDropout`: whenever the solver returns a new state it calls
:meth:`UnitDropout.set_slices` with the (parameter, dim, indices) of the dropped units, and
the hook, passed to :func:`train_one_epoch` (or called by hand from any loop, in the spirit of
Torch-Pruning's ``step()``), keeps those units at zero in the forward pass and leaves their
stored weights untouched by the optimizer.

Order of the hook calls in one iteration (the same order to use in a hand-written loop)::

    hook.before_forward(it)        # zero the dropped entries (their values are saved)
    loss = criterion(model(x), y)
    loss.backward()
    hook.after_backward(it)        # zero the gradients of the dropped entries
    optimizer.step()
    hook.after_step(it, loss.item())   # put the saved values back: step undone for them
    scheduler.step()               # schedules here are per iteration

plus ``on_epoch_start(epoch)`` / ``on_epoch_end(epoch)`` around each epoch and
``on_error(it, exc)`` when an iteration raises (so a hook can leave the model intact).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import pickle
import secrets
import time
import warnings
import zipfile
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ising_qubo.solvers._torch_common import resolve_device as _resolve_device

__all__ = [
    "CheckpointError",
    "History",
    "TrainingHook",
    "UnitDropout",
    "accuracy_topk",
    "evaluate",
    "load_checkpoint",
    "load_weights",
    "make_optimizer",
    "make_scheduler",
    "prepare_model",
    "read_weights",
    "resolve_device",
    "save_checkpoint",
    "train_one_epoch",
]

Slice = tuple[torch.Tensor, int, torch.Tensor]

# --------------------------------------------------------------------------------------
# devices
# --------------------------------------------------------------------------------------


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``None`` or ``"auto"``: CUDA when visible, else CPU; ``"cpu"``, ``"cuda"``, ``"cuda:k"``.

    Asking for CUDA where torch sees none is a ValueError (not a silent fall-back to the
    CPU, which would turn a misconfigured 200-epoch run into a days-long one).
    """
    # Same semantics as the torch solvers, so `--device` means one thing across the package.
    return _resolve_device("auto" if device is None else device, "training")


def _model_device(model: nn.Module) -> torch.device:
    """Where the model's parameters (else buffers) live; CPU for a model with neither."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def prepare_model(model: nn.Module, device: str | torch.device | None,
                  channels_last: bool = False) -> nn.Module:
    """Move ``model`` to ``device`` (see :func:`resolve_device`), in place; return it.

    ``channels_last`` switches 4-d weights to NHWC, which lets cuDNN use tensor-core
    kernels (notably with AMP). It is applied on CUDA only: on the CPU it is often slower
    and never needed, so the request is ignored there.
    """
    resolved = resolve_device(device)
    model.to(resolved)
    if channels_last and resolved.type == "cuda":
        model.to(memory_format=torch.channels_last)
    return model


# --------------------------------------------------------------------------------------
# optimizers and schedules
# --------------------------------------------------------------------------------------

_DEFAULT_LR = {"sgd": 0.1, "adadelta": 1.0}


def _check_number(what: str, value: Any, *, low: float, low_open: bool,
                  high: float = math.inf, high_open: bool = True) -> float:
    """``value`` as a float inside the interval, else a ValueError naming it."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (
            value < high if high_open else value <= high)
    if not ok:
        lo = f"{'(' if low_open else '['}{low:g}"
        hi = f"{high:g}{')' if high_open else ']'}"
        raise ValueError(f"{what} must be a finite number in {lo}, {hi}, got {value!r}")
    return float(value)


def _check_int(what: str, value: Any, low: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{what} must be an integer >= {low}, got {value!r}")
    return value


def make_optimizer(name: str, params: Iterable[Any], lr: float | None = None,
                   weight_decay: float = 5e-4, momentum: float = 0.9) -> torch.optim.Optimizer:
    """``"sgd"`` (heavy-ball momentum, no Nesterov) or ``"adadelta"``.

    ``lr=None`` takes the optimizer's customary default: 0.1 for SGD, 1.0 for Adadelta (whose
    lr only scales its self-tuned step). ``momentum`` applies to SGD only. The paper trains
    with Adadelta and weight decay 1e-5; pass ``weight_decay=1e-5`` to reproduce it (the
    default 5e-4 is the usual SGD value for CIFAR ResNets). ``params`` is anything
    ``torch.optim`` accepts: parameters or parameter-group dicts.
    """
    key = name.lower() if isinstance(name, str) else name
    if key not in _DEFAULT_LR:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {sorted(_DEFAULT_LR)}")
    lr = _DEFAULT_LR[key] if lr is None else _check_number("lr", lr, low=0, low_open=True)
    weight_decay = _check_number("weight_decay", weight_decay, low=0, low_open=False)
    if key == "sgd":
        momentum = _check_number("momentum", momentum, low=0, low_open=False, high=1)
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                               nesterov=False)
    return torch.optim.Adadelta(params, lr=lr, weight_decay=weight_decay)


_SCHEDULES = ("constant", "cosine", "step")


def make_scheduler(name: str, optimizer: torch.optim.Optimizer, epochs: int,
                   steps_per_epoch: int, step_size: int | None = None, gamma: float = 0.1,
                   warmup_epochs: float = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """A learning-rate schedule to ``step()`` once per ITERATION (after ``optimizer.step()``).

    Stepping per iteration rather than per epoch makes the schedule exact for short runs (a
    3-epoch cosine run decays smoothly instead of in 3 stairs). With ``t`` the number of
    scheduler steps taken so far, ``T = epochs * steps_per_epoch`` and
    ``W = round(warmup_epochs * steps_per_epoch)``, the learning rate is
    ``base_lr * warmup(t) * main(t)``:

    * ``warmup(t) = min(1, (t + 1) / W)`` (1 when ``W = 0``): linear warm-up;
    * ``"cosine"``: ``0.5 * (1 + cos(pi * p))`` with ``p = clamp((t - W) / (T - W), 0, 1)``:
      full learning rate after warm-up, 0 after the last iteration (and stays 0 after);
    * ``"step"``: ``gamma ** ((t // steps_per_epoch) // step_size)``: multiplied by ``gamma``
      at the start of every ``step_size``-th epoch (default ``max(1, epochs // 4)``: the
      paper's x0.1 every 50 of 200 epochs);
    * ``"constant"``: 1.

    It is a :class:`~torch.optim.lr_scheduler.LambdaLR` whose factors are plain functions, so
    its ``state_dict`` holds plain data only (it round-trips through
    :func:`save_checkpoint`); to resume, rebuild it with the same arguments and
    ``load_state_dict``.
    """
    key = name.lower() if isinstance(name, str) else name
    if key not in _SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose one of {list(_SCHEDULES)}")
    epochs = _check_int("epochs", epochs, 1)
    steps_per_epoch = _check_int("steps_per_epoch", steps_per_epoch, 1)
    gamma = _check_number("gamma", gamma, low=0, low_open=True)
    warmup_epochs = _check_number("warmup_epochs", warmup_epochs, low=0, low_open=False,
                                  high=epochs)
    step_size = max(1, epochs // 4) if step_size is None else _check_int("step_size",
                                                                          step_size, 1)
    total = epochs * steps_per_epoch
    warmup = round(warmup_epochs * steps_per_epoch)
    if key == "cosine" and warmup >= total:
        raise ValueError(f"warmup_epochs={warmup_epochs!r} leaves no iterations for the "
                         f"cosine decay over {epochs} epochs")

    def factor(t: int) -> float:
        scale = min(1.0, (t + 1) / warmup) if warmup else 1.0
        if key == "cosine":
            progress = min(1.0, max(0.0, (t - warmup) / (total - warmup)))
            return scale * 0.5 * (1.0 + math.cos(math.pi * progress))
        if key == "step":
            return scale * gamma ** ((t // steps_per_epoch) // step_size)
        return scale

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# --------------------------------------------------------------------------------------
# metrics and evaluation
# --------------------------------------------------------------------------------------


def _topk_correct(logits: torch.Tensor, targets: torch.Tensor,
                  ks: Sequence[int]) -> torch.Tensor:
    """Counts of rows whose target is among the top ``min(k, C)`` logits, one per k (on the
    logits' device, so a loop can accumulate without a host sync per batch)."""
    if logits.dim() != 2 or targets.dim() != 1 or logits.shape[0] != targets.shape[0]:
        raise ValueError(f"expected logits (N, C) and targets (N,), got {tuple(logits.shape)} "
                         f"and {tuple(targets.shape)}")
    num_classes = logits.shape[1]
    widths = [min(_check_int("k", k, 1), num_classes) for k in ks]
    top = logits.topk(max(widths), dim=1).indices  # (N, maxk), best first
    hits = top == targets.to(top.device).unsqueeze(1)
    # a row has at most one hit, so the running sum over the ranks says "hit within top j"
    within = hits.cumsum(dim=1)
    return torch.stack([within[:, w - 1].sum() for w in widths])


def accuracy_topk(logits: torch.Tensor, targets: torch.Tensor,
                  ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Top-k accuracies in percent, keyed ``"top{k}"``.

    With fewer than k classes, top-k is computed as top-C (every row counts as a hit), so
    ``"top5"`` of a 3-class problem is 100%. Ties between logits are broken by
    ``torch.topk``, which does not promise an order among equal values.
    """
    if logits.shape[0] == 0:
        raise ValueError("accuracy_topk: empty batch")
    counts = _topk_correct(logits.detach(), targets, ks).tolist()
    return {f"top{k}": 100.0 * c / logits.shape[0] for k, c in zip(ks, counts)}


@dataclass(frozen=True)
class _Amp:
    """How to run the forward pass: autocast dtype (None: full precision) and GradScaler."""

    dtype: torch.dtype | None = None
    scaler: bool = False


_AMP_CPU_WARNED = False


def _amp_settings(amp: bool, device: torch.device) -> _Amp:
    """bf16 autocast where the GPU supports it (bf16 has float32's range, so no loss
    scaling), else fp16 with a GradScaler; nothing on the CPU (warned once per process:
    CPU autocast is slow for convolutions and would only make runs irreproducible)."""
    global _AMP_CPU_WARNED
    if not amp:
        return _Amp()
    if device.type != "cuda":
        if not _AMP_CPU_WARNED:
            _AMP_CPU_WARNED = True
            warnings.warn(f"amp=True is ignored on device {device} (mixed precision is used "
                          "on CUDA only); training in float32", RuntimeWarning, stacklevel=3)
        return _Amp()
    if torch.cuda.is_bf16_supported():
        return _Amp(dtype=torch.bfloat16)
    return _Amp(dtype=torch.float16, scaler=True)


def _autocast(settings: _Amp) -> contextlib.AbstractContextManager:
    if settings.dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=settings.dtype)


@contextlib.contextmanager
def _mode(model: nn.Module, training: bool) -> Iterator[None]:
    """Put the model in train/eval mode and give it back in the mode it had (per module, so
    a deliberately frozen submodule, e.g. BN kept in eval, stays as it was)."""
    previous = [(module, module.training) for module in model.modules()]
    model.train(training)
    try:
        yield
    finally:
        for module, was_training in previous:
            module.training = was_training


def evaluate(model: nn.Module, batches: Iterable[Any], device: str | torch.device | None = None,
             amp: bool = False, max_batches: int | None = None,
             reduce: Callable[[torch.Tensor], torch.Tensor] | None = None
             ) -> dict[str, float | int]:
    """Accuracy and loss of ``model`` over ``batches`` of ``(x, y)``.

    Returns ``{"top1": %, "top5": %, "loss": mean cross-entropy, "count": samples}``
    (top-5 is top-C when there are fewer than 5 classes, see :func:`accuracy_topk`). The
    model runs in eval mode under ``torch.no_grad`` and gets its previous mode back.
    ``device=None`` uses the device of the model's parameters; ``max_batches`` stops early
    (a quick estimate). To evaluate the network with Ising-dropped units removed, wrap the
    call in :meth:`UnitDropout.masked`.

    ``reduce``: for a data-parallel evaluation where each process scores its own shard, a
    function that sums a tensor over the processes in place (e.g.
    :meth:`ising_qubo.nets.distributed.Context.all_reduce_sum`); the correct counts, the loss
    sum and the sample count are summed before the ratios are taken, so the result is that
    of the whole set (a process with an empty shard is fine).
    """
    if max_batches is not None:
        _check_int("max_batches", max_batches, 1)
    dev = _model_device(model) if device is None else resolve_device(device)
    settings = _amp_settings(amp, dev)
    # Sums stay on the device (float64 for the loss), read once at the end: no sync per batch.
    correct = torch.zeros(2, dtype=torch.int64, device=dev)
    loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
    count = 0
    with _mode(model, False), torch.no_grad():
        for i, (x, y) in enumerate(batches):
            if max_batches is not None and i >= max_batches:
                break
            x = x.to(dev, non_blocking=True)
            y = y.to(dev, non_blocking=True)
            with _autocast(settings):
                logits = model(x)
            logits = logits.float()
            loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
            correct += _topk_correct(logits, y, (1, 5))
            count += y.shape[0]
    if reduce is not None:
        # float64 holds counts exactly up to 2**53; one collective for the four sums
        sums = torch.cat([correct.double(), loss_sum.view(1),
                          torch.tensor([float(count)], dtype=torch.float64, device=dev)])
        sums = reduce(sums)
        top1, top5, loss_total, total = sums.tolist()
        count = int(total)
        correct = torch.tensor([int(top1), int(top5)])
        loss_sum = torch.tensor(loss_total, dtype=torch.float64)
    if count == 0:
        raise ValueError("evaluate: no samples (empty batches)")
    top1, top5 = correct.tolist()
    return {"top1": 100.0 * top1 / count, "top5": 100.0 * top5 / count,
            "loss": float(loss_sum) / count, "count": count}


# --------------------------------------------------------------------------------------
# hooks
# --------------------------------------------------------------------------------------


class TrainingHook:
    """Points of the training loop where extra behaviour (e.g. Ising dropout) plugs in.

    Every method is a no-op here; subclass and override what you need. Any object with some
    of these methods also works with :func:`train_one_epoch` (missing ones are skipped).
    ``iteration`` is the loop's iteration counter (``start_iteration + index in epoch``);
    it may be ``None`` when a user calls the hook by hand without one.
    """

    def on_epoch_start(self, epoch: int) -> None:
        """Before the first batch of ``epoch``."""

    def before_forward(self, iteration: int | None = None) -> None:
        """After ``zero_grad``, before the forward pass."""

    def after_backward(self, iteration: int | None = None) -> None:
        """After ``loss.backward()``, before gradient clipping and ``optimizer.step()``."""

    def after_step(self, iteration: int | None = None, loss: float | None = None) -> None:
        """After ``optimizer.step()``, before ``scheduler.step()``; ``loss`` of the batch."""

    def on_epoch_end(self, epoch: int) -> None:
        """After the last batch of ``epoch``."""

    def on_error(self, iteration: int | None, error: BaseException) -> None:
        """An iteration raised (non-finite loss, Ctrl-C, ...); the error propagates next."""


class UnitDropout(TrainingHook):
    """Ising dropout: keeps chosen slices of parameters at zero during training steps.

    A slice is ``(tensor, dim, indices)``: the entries of ``tensor`` at ``indices`` along
    ``dim`` (e.g. ``(conv.weight, 0, idx)`` for output filters, ``(bn.weight, 0, idx)``,
    ``(bn.bias, 0, idx)``, ``(next_conv.weight, 1, idx)`` for input channels). During a step
    the forward pass sees zeros there and, when the step is over, the dropped entries hold
    exactly the values they had before it: the optimizer's update of them (weight decay,
    momentum, Adadelta's running step) is undone. Their optimizer state still evolves (with
    zero gradient a momentum buffer decays by ``momentum`` per step), so a unit that comes
    back resumes with an attenuated buffer, not the one it left with.

    Buffers may be given too: include a BatchNorm's ``running_mean``/``running_var`` to
    freeze its statistics while the unit is dropped (they are zeroed during the step, which
    train-mode BN does not read, and put back after it). Under :meth:`masked` in eval mode BN
    does read them, which is harmless when the unit's BN weight and bias are dropped as well.

    Order in a hand-written loop::

        hook.before_forward(); loss = criterion(model(x), y); loss.backward()
        hook.after_backward(); optimizer.step(); hook.after_step()

    The same tensor may appear in several slices (slices along one dim are merged, slices
    along different dims may overlap); an empty index list drops nothing. All work is
    vectorised (one ``index_select``/``index_fill_``/``index_copy_`` per tensor and dim).
    """

    def __init__(self, slices: Iterable[Slice] = ()) -> None:
        self._slices: list[Slice] = []
        self._saved: list[torch.Tensor] | None = None  # values of dropped entries mid-step
        self.set_slices(slices)

    @property
    def slices(self) -> list[Slice]:
        """The dropped slices, merged per (tensor, dim), indices sorted and unique."""
        return list(self._slices)

    @property
    def active(self) -> bool:
        """True between :meth:`before_forward` and :meth:`after_step` (values are saved)."""
        return self._saved is not None

    def set_slices(self, slices: Iterable[Slice]) -> None:
        """Replace the dropped slices (call it whenever the solver returns a new state).

        Called mid-step, it first puts back the values saved for the old slices.
        """
        merged: dict[tuple[int, int], tuple[torch.Tensor, int, list[torch.Tensor]]] = {}
        for entry in slices:
            try:
                tensor, dim, indices = entry
            except (TypeError, ValueError) as exc:
                raise ValueError("a slice is (tensor, dim, indices), got "
                                 f"{type(entry).__name__}") from exc
            if not isinstance(tensor, torch.Tensor):
                raise ValueError(f"slice tensor must be a torch.Tensor, got "
                                 f"{type(tensor).__name__}")
            if not isinstance(dim, int) or isinstance(dim, bool) or not (
                    -tensor.dim() <= dim < tensor.dim()):
                raise ValueError(f"slice dim {dim!r} out of range for a tensor of shape "
                                 f"{tuple(tensor.shape)}")
            dim %= tensor.dim()
            idx = torch.as_tensor(indices, device=tensor.device).reshape(-1)
            if idx.numel() and (idx.dtype.is_floating_point or idx.dtype.is_complex
                                or idx.dtype == torch.bool):
                raise ValueError(f"slice indices must be integers, got dtype {idx.dtype}")
            idx = idx.long()
            # one sync per new solver state (rare), worth a clear message over a CUDA assert
            if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= tensor.shape[dim]):
                raise ValueError(f"slice indices must lie in [0, {tensor.shape[dim]}) along "
                                 f"dim {dim} of a tensor of shape {tuple(tensor.shape)}, got "
                                 f"min {int(idx.min())}, max {int(idx.max())}")
            merged.setdefault((id(tensor), dim), (tensor, dim, []))[2].append(idx)
        new = []
        for tensor, dim, parts in merged.values():
            idx = torch.unique(torch.cat(parts))  # sorted; duplicates would race in index_copy_
            if idx.numel():
                new.append((tensor, dim, idx))
        self.restore()
        self._slices = new

    def before_forward(self, iteration: int | None = None) -> None:
        """Save the dropped entries' values and zero them in place."""
        with torch.no_grad():
            # Saved once per step, all before any zeroing: overlapping slices (same tensor,
            # other dim) then all hold the original values. A repeated call (a step that
            # failed before after_step) keeps the first, real values.
            if self._saved is None:
                self._saved = [t.index_select(d, i) for t, d, i in self._slices]
            for tensor, dim, idx in self._slices:
                tensor.index_fill_(dim, idx, 0)

    def after_backward(self, iteration: int | None = None) -> None:
        """Zero the gradients of the dropped entries (so clipping and logging ignore them)."""
        with torch.no_grad():
            for tensor, dim, idx in self._slices:
                if tensor.grad is not None:
                    tensor.grad.index_fill_(dim, idx, 0)

    def after_step(self, iteration: int | None = None, loss: float | None = None) -> None:
        """Put back the values saved by :meth:`before_forward`."""
        self.restore()

    def on_error(self, iteration: int | None, error: BaseException) -> None:
        """Leave the model with its real weights when a step is abandoned."""
        self.restore()

    def restore(self) -> None:
        """Put back the saved values, if a step is in progress (else nothing)."""
        if self._saved is None:
            return
        with torch.no_grad():
            for (tensor, dim, idx), values in zip(self._slices, self._saved):
                tensor.index_copy_(dim, idx, values)
        self._saved = None

    @contextlib.contextmanager
    def masked(self) -> Iterator[UnitDropout]:
        """Dropped entries read as zero inside the block and get their values back after it,
        e.g. ``with hook.masked(): evaluate(model, val)`` scores the Ising-selected subnet.
        Inside a step already in progress it changes nothing."""
        if self.active:
            yield self
            return
        self.before_forward()
        try:
            yield self
        finally:
            self.restore()

    def apply_permanently(self) -> None:
        """Zero the dropped entries for good (and their gradients) and forget the slices.

        Zeroed weights are not frozen: further training without the hook can move them
        again (the gradient of a zero filter is not zero, and momentum remembers), so do this
        right before structural pruning or a final evaluation.
        """
        self.restore()
        with torch.no_grad():
            for tensor, dim, idx in self._slices:
                tensor.index_fill_(dim, idx, 0)
                if tensor.grad is not None:
                    tensor.grad.index_fill_(dim, idx, 0)
        self._slices = []


# --------------------------------------------------------------------------------------
# training loop
# --------------------------------------------------------------------------------------

_HOOK_METHODS = ("on_epoch_start", "before_forward", "after_backward", "after_step",
                 "on_epoch_end", "on_error")


def train_one_epoch(model: nn.Module, batches: Iterable[Any], optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
                    device: str | torch.device | None = None,
                    hooks: Sequence[TrainingHook] = (), amp: bool = False,
                    grad_clip: float | None = None, progress: bool = True,
                    desc: str = "train", epoch: int = 0, *, start_iteration: int = 0,
                    scaler: torch.amp.GradScaler | None = None,
                    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None
                    ) -> dict[str, float | int]:
    """One pass over ``batches`` of ``(x, y)`` with cross-entropy loss.

    Per iteration: ``zero_grad``, hooks' ``before_forward``, forward (under autocast with
    ``amp`` on CUDA), backward, finiteness check, hooks' ``after_backward``, gradient-norm
    clipping to ``grad_clip``, ``optimizer.step()``, hooks' ``after_step``,
    ``scheduler.step()`` (schedules are per iteration, see :func:`make_scheduler`).

    ``device=None`` uses the model's device. ``amp`` on CUDA uses bf16 autocast, or fp16 with
    a GradScaler on GPUs without bf16 (pass ``scaler`` to keep its scale across epochs; it
    is unused when bf16 is chosen);
    on the CPU it is ignored with a one-time warning. The progress bar (tqdm: loss, running
    accuracy, ETA when ``len(batches)`` exists) shows only when ``progress`` is true and
    stderr is a terminal. Hooks receive ``iteration = start_iteration + index``; pass
    ``start_iteration = epoch * steps_per_epoch`` for a global counter.

    Returns ``{"loss": mean loss, "top1": running accuracy %, "count": samples,
    "iterations": steps taken, "seconds": wall time, "lr": learning rate at the end}``;
    loss and accuracy are of the (possibly masked) network as trained, per sample.
    A non-finite loss raises FloatingPointError before the optimizer step, naming the epoch
    and iteration; hooks' ``on_error`` runs first (UnitDropout puts weights back).

    ``reduce`` (data-parallel training, ``model`` a ``DistributedDataParallel`` and
    ``batches`` this process's shard): a function summing a tensor over the processes in
    place. Each iteration's loss sum, sample count and correct count are then summed over
    the processes (one small collective per iteration, in place of the host sync), so the
    loss the hooks receive, the finiteness check (every process stops together) and the
    returned metrics are those of the global batch.
    """
    if grad_clip is not None:
        grad_clip = _check_number("grad_clip", grad_clip, low=0, low_open=True)
    dev = _model_device(model) if device is None else resolve_device(device)
    settings = _amp_settings(amp, dev)
    if settings.scaler and scaler is None:
        scaler = torch.amp.GradScaler("cuda")
    use_scaler = settings.scaler and scaler is not None
    # Look the hook methods up once: duck-typed hooks may implement only some of them.
    calls: dict[str, list[Callable[..., Any]]] = {
        name: [getattr(h, name) for h in hooks if callable(getattr(h, name, None))]
        for name in _HOOK_METHODS}
    params = [p for group in optimizer.param_groups for p in group["params"]]

    try:
        total = len(batches)  # type: ignore[arg-type]
    except TypeError:
        total = None
    loss_sum = 0.0
    correct = torch.zeros((), dtype=torch.int64, device=dev)
    count = 0
    iteration = start_iteration
    start = time.perf_counter()
    for fn in calls["on_epoch_start"]:
        fn(epoch)
    with _mode(model, True), tqdm(batches, total=total, desc=desc, unit="batch",
                                  disable=None if progress else True,
                                  dynamic_ncols=True) as bar:
        for index, (x, y) in enumerate(bar):
            iteration = start_iteration + index
            try:
                x = x.to(dev, non_blocking=True)
                y = y.to(dev, non_blocking=True)
                optimizer.zero_grad(set_to_none=True)
                for fn in calls["before_forward"]:
                    fn(iteration)
                with _autocast(settings):
                    logits = model(x)
                    loss = F.cross_entropy(logits.float(), y)
                (scaler.scale(loss) if use_scaler else loss).backward()
                # The one host sync per iteration, placed after backward so the GPU has the
                # whole forward+backward queued; checked before any weight is touched.
                if reduce is None:
                    loss_value = loss.item()
                    batch = y.shape[0]
                else:
                    local = torch.stack([
                        loss.detach().double() * y.shape[0],
                        torch.tensor(float(y.shape[0]), dtype=torch.float64, device=dev),
                        (logits.detach().argmax(dim=1) == y).sum().double()])
                    loss_total, batch_total, correct_total = reduce(local).tolist()
                    loss_value = loss_total / batch_total
                    batch = int(batch_total)
                if not math.isfinite(loss_value):
                    raise FloatingPointError(
                        f"non-finite training loss {loss_value} at epoch {epoch}, iteration "
                        f"{iteration} (batch {index} of the epoch); lower the learning rate, "
                        "enable grad_clip, or check the inputs")
                for fn in calls["after_backward"]:
                    fn(iteration)
                if grad_clip is not None:
                    if use_scaler:
                        scaler.unscale_(optimizer)  # clip true gradients, not scaled ones
                    torch.nn.utils.clip_grad_norm_(params, grad_clip)
                if use_scaler:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                for fn in calls["after_step"]:
                    fn(iteration, loss_value)
                if scheduler is not None:
                    scheduler.step()
            except BaseException as exc:
                for fn in calls["on_error"]:
                    fn(iteration, exc)
                raise
            loss_sum += loss_value * batch
            if reduce is None:
                correct += (logits.detach().argmax(dim=1) == y).sum()
            else:
                correct += int(correct_total)
            count += batch
            if not bar.disable:
                bar.set_postfix(loss=f"{loss_sum / count:.4f}",
                                acc=f"{100.0 * int(correct) / count:.2f}%",
                                lr=f"{optimizer.param_groups[0]['lr']:.3g}", refresh=False)
    if count == 0:
        raise ValueError(f"train_one_epoch: no batches in epoch {epoch}")
    for fn in calls["on_epoch_end"]:
        fn(epoch)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return {"loss": loss_sum / count, "top1": 100.0 * int(correct) / count, "count": count,
            "iterations": iteration - start_iteration + 1,
            "seconds": time.perf_counter() - start, "lr": optimizer.param_groups[0]["lr"]}


# --------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------


class CheckpointError(ValueError):
    """A checkpoint that cannot be written as plain data, or cannot be read back."""


_PLAIN_SCALARS = (str, bytes, bytearray, int, float, bool, complex, type(None),
                  torch.Size, torch.device, torch.dtype)
_PLAIN_TENSORS = (torch.Tensor, nn.Parameter)
_PLAIN_MAPPINGS = (dict, OrderedDict, Counter)
_PLAIN_SEQUENCES = (list, tuple, set)


def _check_plain(obj: Any, where: str, path: tuple[int, ...] = ()) -> None:
    """Raise CheckpointError unless ``torch.load(weights_only=True)`` can read ``obj`` back.

    Checked at save time so a bad value (a numpy float in the history, a dataclass) fails
    the run that makes it, not the resume weeks later. Exact types: subclasses such as
    namedtuples or enums are pickled by class and refused by the weights-only loader.
    """
    kind = type(obj)
    if kind in _PLAIN_SCALARS or kind in _PLAIN_TENSORS:
        return
    if id(obj) in path:
        raise CheckpointError(f"{where} refers to itself (cyclic containers)")
    path = path + (id(obj),)
    if kind in _PLAIN_MAPPINGS:
        for key, value in obj.items():
            _check_plain(key, f"{where} key {key!r}", path)
            _check_plain(value, f"{where}[{key!r}]", path)
        return
    if kind in _PLAIN_SEQUENCES:
        for i, value in enumerate(obj):
            _check_plain(value, f"{where}[{i}]", path)
        return
    raise CheckpointError(
        f"{where} is a {kind.__module__}.{kind.__qualname__}, which a weights-only checkpoint "
        "cannot hold; store tensors, numbers, strings, None, and dicts/lists/tuples/sets of "
        "them (e.g. float(x), x.tolist(), obj.state_dict(), history.to_dict())")


def save_checkpoint(path: str | os.PathLike[str], **state: Any) -> Path:
    """Write ``state`` (a dict of plain data: tensors, state dicts, numbers, lists...) to
    ``path`` atomically; return the path.

    The data goes to a temporary file in the same directory, is flushed and fsynced, then
    ``os.replace``-d over ``path``: a crash or Ctrl-C mid-save leaves the previous
    checkpoint intact, and no temporary file behind (except after a hard kill). Values a
    weights-only load could not read back are refused up front (CheckpointError).
    Parent directories are created.
    """
    target = Path(path)
    for key, value in state.items():
        _check_plain(value, f"checkpoint entry {key!r}")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Not tempfile.mkstemp: its 0600 mode would end up on the checkpoint; 0666 & ~umask is
    # what a plain open() gives. O_EXCL plus a random name keeps concurrent savers apart.
    tmp_name = target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())  # the data is on disk before the name points at it
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    # Make the rename itself durable (POSIX; directories cannot be opened on Windows).
    with contextlib.suppress(OSError):
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return target


def load_checkpoint(path: str | os.PathLike[str],
                    map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``torch.load(weights_only=True)``:
    plain data only, no arbitrary unpickling, so loading an untrusted file cannot run code).

    A missing file is FileNotFoundError; a truncated, corrupt or non-plain file is
    CheckpointError; both name the file.
    """
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"checkpoint {str(source)!r} not found")
    try:
        with warnings.catch_warnings():  # torch's protocol notice on a foreign pickle
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            state = torch.load(source, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refusals are UnpicklingErrors too; nothing in the file was run
        raise CheckpointError(f"checkpoint {str(source)!r} cannot be loaded as plain data "
                              f"(not written by save_checkpoint, corrupt, or unsafe; nothing "
                              f"in it was executed): {_torch_load_reason(exc)}") from exc
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
        raise CheckpointError(f"checkpoint {str(source)!r} is unreadable (truncated or "
                              f"corrupt?): {_torch_load_reason(exc)}") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {str(source)!r} holds a {type(state).__name__}, "
                              "not the dict save_checkpoint writes")
    return state


_TORCH_BOILERPLATE = ("Weights only load failed", "Please file an issue",
                      "Check the documentation", "This is an internal miniz error")


def _torch_load_reason(exc: BaseException) -> str:
    """The informative line of a ``torch.load`` error, without torch's advice to retry with
    ``weights_only=False`` (which would run whatever the file asks for)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if not line.startswith(_TORCH_BOILERPLATE):
            line = line.removeprefix("WeightsUnpickler error:").strip()
            return line.split(". This is an internal miniz error")[0] or type(exc).__name__
    return type(exc).__name__


def read_weights(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The state dict in ``path``, read without running code: a ``.safetensors`` file, a
    ``torch.save``-d state dict, or a checkpoint of :func:`save_checkpoint` with a
    ``"model"`` entry. Every problem is a ``ValueError`` (or ``FileNotFoundError``) that
    names the file."""
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"weights file {str(source)!r} not found" +
                                (" (it is a directory)" if source.is_dir() else ""))
    if source.suffix == ".safetensors":
        import safetensors
        import safetensors.torch

        try:
            state = safetensors.torch.load_file(str(source))
        except (safetensors.SafetensorError, OSError) as exc:
            raise CheckpointError(f"weights file {str(source)!r} is not a readable "
                                  f"safetensors file: {exc}") from exc
    else:
        state = load_checkpoint(source)
        if isinstance(state.get("model"), dict):
            state = state["model"]  # one of our own run checkpoints
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"weights file {str(source)!r} is not a state dict: entry "
                                  f"{key!r} is not a tensor ({type(value).__name__})")
    return dict(state)


def load_weights(model: nn.Module, path: str | os.PathLike[str]) -> nn.Module:
    """Load the state dict in ``path`` (see :func:`read_weights`) into ``model``, strictly.

    A file from another architecture (or another number of classes) is a ValueError
    naming the file and the first key that does not fit, before any weight is copied.
    """
    state = read_weights(path)
    expected = model.state_dict()
    problems = []
    for key, tensor in expected.items():
        if key not in state:
            problems.append(f"{key!r} is missing from the file")
        elif tuple(state[key].shape) != tuple(tensor.shape):
            problems.append(f"{key!r} has shape {list(state[key].shape)} in the file but "
                            f"{list(tensor.shape)} in the model")
    problems += [f"{key!r} is in the file but not in the model"
                 for key in state if key not in expected]
    if problems:
        raise CheckpointError(f"weights file {str(path)!r} does not fit the "
                              f"{type(model).__name__} model: {problems[0]} ({len(problems)} "
                              f"mismatching key(s) in all); pass weights saved from the "
                              f"same --model and number of classes")
    model.load_state_dict(state)
    return model


# --------------------------------------------------------------------------------------
# history
# --------------------------------------------------------------------------------------


def _plain_metric(key: str, value: Any) -> Any:
    """A JSON-friendly scalar: 0-d tensors and numpy scalars become Python numbers."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"metric {key!r} must be a scalar, got a tensor of shape "
                             f"{tuple(value.shape)}")
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item"):  # numpy scalar, without importing numpy here
        return value.item()
    raise ValueError(f"metric {key!r} must be a number, string or None, got "
                     f"{type(value).__name__}")


@dataclass
class History:
    """Per-epoch metrics as a dict of equal-length lists (one row per :meth:`append`).

    A metric missing from a row (e.g. validation every 5 epochs) is ``None`` there, so all
    columns stay aligned. ``to_dict`` is plain JSON (and fits in a checkpoint).
    """

    columns: dict[str, list[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        lengths = {len(v) for v in self.columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"History columns must have equal lengths, got "
                             f"{ {k: len(v) for k, v in self.columns.items()} }")
        self.columns = {str(k): list(v) for k, v in self.columns.items()}

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def __getitem__(self, key: str) -> list[Any]:
        return self.columns[key]

    def __contains__(self, key: object) -> bool:
        return key in self.columns

    def keys(self) -> list[str]:
        return list(self.columns)

    def append(self, **metrics: Any) -> None:
        """Add one row, e.g. ``history.append(epoch=3, loss=0.41, top1=87.2)``."""
        rows = len(self)
        for key, value in metrics.items():
            if key not in self.columns:
                self.columns[key] = [None] * rows
            self.columns[key].append(_plain_metric(key, value))
        for column in self.columns.values():
            if len(column) == rows:
                column.append(None)

    def last(self, key: str, default: Any = None) -> Any:
        """The most recent non-None value of ``key``, else ``default``."""
        for value in reversed(self.columns.get(key, ())):
            if value is not None:
                return value
        return default

    def to_dict(self) -> dict[str, list[Any]]:
        return {k: list(v) for k, v in self.columns.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Sequence[Any]]) -> History:
        return cls({k: list(v) for k, v in data.items()})

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> History:
        return cls.from_dict(json.loads(text))
