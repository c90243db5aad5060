"""Top-k accuracy (:func:`accuracy_topk`) and the evaluation of a model over batches
(:func:`evaluate`), data-parallel included."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ising_qubo._progress import progress_bar
from ising_qubo.nets.training._checks import check_int
from ising_qubo.nets.training.placement import in_mode, model_device, resolve_device
from ising_qubo.nets.training.precision import amp_settings, autocast

__all__ = ["accuracy_topk", "evaluate"]


def _topk_correct(logits: torch.Tensor, targets: torch.Tensor, ks: Sequence[int]) -> torch.Tensor:
    """Counts of rows whose target is among the top ``min(k, C)`` logits, one per k (on the
    logits' device, so a loop can accumulate without a host sync per batch)."""
    if logits.dim() != 2 or targets.dim() != 1 or logits.shape[0] != targets.shape[0]:
        raise ValueError(
            f"expected logits (N, C) and targets (N,), got {tuple(logits.shape)} "
            f"and {tuple(targets.shape)}"
        )
    num_classes = logits.shape[1]
    widths = [min(check_int("k", k, 1), num_classes) for k in ks]
    top = logits.topk(max(widths), dim=1).indices  # (N, maxk), best first
    hits = top == targets.to(top.device).unsqueeze(1)
    # a row has at most one hit, so the running sum over the ranks says "hit within top j"
    within = hits.cumsum(dim=1)
    return torch.stack([within[:, w - 1].sum() for w in widths])


def accuracy_topk(
    logits: torch.Tensor, targets: torch.Tensor, ks: Sequence[int] = (1, 5)
) -> dict[str, float]:
    """Top-k accuracies in percent, keyed ``"top{k}"``.

    With fewer than k classes, top-k is computed as top-C (every row counts as a hit), so
    ``"top5"`` of a 3-class problem is 100%. Ties between logits are broken by
    ``torch.topk``, which does not promise an order among equal values.
    """
    if logits.shape[0] == 0:
        raise ValueError("accuracy_topk: empty batch")
    counts = _topk_correct(logits.detach(), targets, ks).tolist()
    return {f"top{k}": 100.0 * c / logits.shape[0] for k, c in zip(ks, counts)}


def evaluate(
    model: nn.Module,
    batches: Iterable[Any],
    device: str | torch.device | None = None,
    amp: bool = False,
    max_batches: int | None = None,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    progress: bool = False,
    desc: str = "evaluate",
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

    ``progress``: a bar over the batches (labelled ``desc``, removed when done) on stderr,
    drawn only when stderr is a terminal and the output level allows bars
    (:mod:`ising_qubo._progress`); off by default, as a library call is often one of many.
    """
    if max_batches is not None:
        check_int("max_batches", max_batches, 1)
    dev = model_device(model) if device is None else resolve_device(device)
    settings = amp_settings(amp, dev)
    # Sums stay on the device (float64 for the loss), read once at the end: no sync per batch.
    correct = torch.zeros(2, dtype=torch.int64, device=dev)
    loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
    count = 0
    try:
        total: int | None = len(batches)  # type: ignore[arg-type]
    except TypeError:
        total = None
    if max_batches is not None and total is not None:
        total = min(total, max_batches)
    with (
        in_mode(model, False),
        torch.no_grad(),
        progress_bar(
            batches, progress=progress, desc=desc, total=total, unit="batch", leave=False
        ) as bar,
    ):
        for i, (x, y) in enumerate(bar):
            if max_batches is not None and i >= max_batches:
                break
            x = x.to(dev, non_blocking=True)
            y = y.to(dev, non_blocking=True)
            with autocast(settings):
                logits = model(x)
            logits = logits.float()
            loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
            correct += _topk_correct(logits, y, (1, 5))
            count += y.shape[0]
    if reduce is not None:
        # float64 holds counts exactly up to 2**53; one collective for the four sums
        sums = torch.cat(
            [
                correct.double(),
                loss_sum.view(1),
                torch.tensor([float(count)], dtype=torch.float64, device=dev),
            ]
        )
        sums = reduce(sums)
        top1, top5, loss_total, total = sums.tolist()
        count = int(total)
        correct = torch.tensor([int(top1), int(top5)])
        loss_sum = torch.tensor(loss_total, dtype=torch.float64)
    if count == 0:
        raise ValueError("evaluate: no samples (empty batches)")
    top1, top5 = correct.tolist()
    return {
        "top1": 100.0 * top1 / count,
        "top5": 100.0 * top5 / count,
        "loss": float(loss_sum) / count,
        "count": count,
    }
