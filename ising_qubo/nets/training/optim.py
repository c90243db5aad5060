"""Optimisers (:func:`make_optimizer`) and per-iteration learning-rate schedules
(:func:`make_scheduler`)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from ising_qubo.nets.training._checks import check_int, check_number

__all__ = ["make_optimizer", "make_scheduler"]

_DEFAULT_LR = {"sgd": 0.1, "adadelta": 1.0}


def make_optimizer(
    name: str,
    params: Iterable[Any],
    lr: float | None = None,
    weight_decay: float = 5e-4,
    momentum: float = 0.9,
) -> torch.optim.Optimizer:
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
    lr = _DEFAULT_LR[key] if lr is None else check_number("lr", lr, low=0, low_open=True)
    weight_decay = check_number("weight_decay", weight_decay, low=0, low_open=False)
    if key == "sgd":
        momentum = check_number("momentum", momentum, low=0, low_open=False, high=1)
        return torch.optim.SGD(
            params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=False
        )
    return torch.optim.Adadelta(params, lr=lr, weight_decay=weight_decay)


_SCHEDULES = ("constant", "cosine", "step")


def make_scheduler(
    name: str,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    steps_per_epoch: int,
    step_size: int | None = None,
    gamma: float = 0.1,
    warmup_epochs: float = 0,
) -> torch.optim.lr_scheduler.LambdaLR:
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
    epochs = check_int("epochs", epochs, 1)
    steps_per_epoch = check_int("steps_per_epoch", steps_per_epoch, 1)
    gamma = check_number("gamma", gamma, low=0, low_open=True)
    warmup_epochs = check_number("warmup_epochs", warmup_epochs, low=0, low_open=False, high=epochs)
    step_size = max(1, epochs // 4) if step_size is None else check_int("step_size", step_size, 1)
    total = epochs * steps_per_epoch
    warmup = round(warmup_epochs * steps_per_epoch)
    if key == "cosine" and warmup >= total:
        raise ValueError(
            f"warmup_epochs={warmup_epochs!r} leaves no iterations for the "
            f"cosine decay over {epochs} epochs"
        )

    def factor(t: int) -> float:
        scale = min(1.0, (t + 1) / warmup) if warmup else 1.0
        if key == "cosine":
            progress = min(1.0, max(0.0, (t - warmup) / (total - warmup)))
            return scale * 0.5 * (1.0 + math.cos(math.pi * progress))
        if key == "step":
            return scale * gamma ** ((t // steps_per_epoch) // step_size)
        return scale

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
