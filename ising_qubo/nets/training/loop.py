"""One training epoch: :func:`train_one_epoch`, with hooks, AMP, clipping, schedules and
data-parallel metrics.

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

import math
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ising_qubo._progress import bars_allowed
from ising_qubo.nets.training._checks import check_number
from ising_qubo.nets.training.hooks import TrainingHook
from ising_qubo.nets.training.placement import in_mode, model_device, resolve_device
from ising_qubo.nets.training.precision import amp_settings, autocast

__all__ = ["train_one_epoch"]

_HOOK_METHODS = (
    "on_epoch_start",
    "before_forward",
    "after_backward",
    "after_step",
    "on_epoch_end",
    "on_error",
)


def train_one_epoch(
    model: nn.Module,
    batches: Iterable[Any],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    device: str | torch.device | None = None,
    hooks: Sequence[TrainingHook] = (),
    amp: bool = False,
    grad_clip: float | None = None,
    progress: bool = True,
    desc: str = "train",
    epoch: int = 0,
    *,
    start_iteration: int = 0,
    scaler: torch.amp.GradScaler | None = None,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
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
    accuracy, ETA when ``len(batches)`` exists) shows on stderr only when ``progress`` is
    true, stderr is a terminal and the output level allows bars
    (:mod:`ising_qubo._progress`). Hooks receive ``iteration = start_iteration + index``; pass
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
        grad_clip = check_number("grad_clip", grad_clip, low=0, low_open=True)
    dev = model_device(model) if device is None else resolve_device(device)
    settings = amp_settings(amp, dev)
    if settings.scaler and scaler is None:
        scaler = torch.amp.GradScaler("cuda")
    active_scaler = scaler if settings.scaler else None  # None: no loss scaling
    # Look the hook methods up once: duck-typed hooks may implement only some of them.
    calls: dict[str, list[Callable[..., Any]]] = {
        name: [getattr(h, name) for h in hooks if callable(getattr(h, name, None))]
        for name in _HOOK_METHODS
    }
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
    with (
        in_mode(model, True),
        tqdm(
            batches,
            total=total,
            desc=desc,
            unit="batch",
            # tqdm's None: drawn only when stderr is a terminal; never under --no-progress
            # or --quiet (the command's output level)
            disable=None if progress and bars_allowed() else True,
            dynamic_ncols=True,
            file=sys.stderr,
        ) as bar,
    ):
        for index, (x, y) in enumerate(bar):
            iteration = start_iteration + index
            try:
                x = x.to(dev, non_blocking=True)
                y = y.to(dev, non_blocking=True)
                optimizer.zero_grad(set_to_none=True)
                for fn in calls["before_forward"]:
                    fn(iteration)
                with autocast(settings):
                    logits = model(x)
                    loss = F.cross_entropy(logits.float(), y)
                (active_scaler.scale(loss) if active_scaler is not None else loss).backward()
                # The one host sync per iteration, placed after backward so the GPU has the
                # whole forward+backward queued; checked before any weight is touched.
                if reduce is None:
                    loss_value = loss.item()
                    batch = y.shape[0]
                else:
                    local = torch.stack(
                        [
                            loss.detach().double() * y.shape[0],
                            torch.tensor(float(y.shape[0]), dtype=torch.float64, device=dev),
                            (logits.detach().argmax(dim=1) == y).sum().double(),
                        ]
                    )
                    loss_total, batch_total, correct_total = reduce(local).tolist()
                    loss_value = loss_total / batch_total
                    batch = int(batch_total)
                if not math.isfinite(loss_value):
                    raise FloatingPointError(
                        f"non-finite training loss {loss_value} at epoch {epoch}, iteration "
                        f"{iteration} (batch {index} of the epoch); lower the learning rate, "
                        "enable grad_clip, or check the inputs"
                    )
                for fn in calls["after_backward"]:
                    fn(iteration)
                if grad_clip is not None:
                    if active_scaler is not None:
                        active_scaler.unscale_(optimizer)  # clip true gradients, not scaled ones
                    torch.nn.utils.clip_grad_norm_(params, grad_clip)
                if active_scaler is not None:
                    active_scaler.step(optimizer)
                    active_scaler.update()
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
                bar.set_postfix(
                    loss=f"{loss_sum / count:.4f}",
                    acc=f"{100.0 * int(correct) / count:.2f}%",
                    lr=f"{optimizer.param_groups[0]['lr']:.3g}",
                    refresh=False,
                )
    if count == 0:
        raise ValueError(f"train_one_epoch: no batches in epoch {epoch}")
    for fn in calls["on_epoch_end"]:
        fn(epoch)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return {
        "loss": loss_sum / count,
        "top1": 100.0 * int(correct) / count,
        "count": count,
        "iterations": iteration - start_iteration + 1,
        "seconds": time.perf_counter() - start,
        "lr": optimizer.param_groups[0]["lr"],
    }
