"""Points where extra behaviour plugs into the training loop (:class:`TrainingHook`), and
the one the pruning uses: :class:`UnitDropout`, which keeps chosen units at zero during
training steps without letting the optimizer move their stored weights.

Whoever drives the dropout (the pruning pipeline, whenever its solver returns a new
state) calls :meth:`UnitDropout.set_slices` with the (parameter, dim, indices) of the
dropped units; nothing here knows why they were chosen.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch

__all__ = ["Slice", "TrainingHook", "UnitDropout"]

#: ``(tensor, dim, indices)``: the entries of ``tensor`` at ``indices`` along ``dim``.
Slice = tuple[torch.Tensor, int, torch.Tensor]


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
                raise ValueError(
                    f"a slice is (tensor, dim, indices), got {type(entry).__name__}"
                ) from exc
            if not isinstance(tensor, torch.Tensor):
                raise ValueError(
                    f"slice tensor must be a torch.Tensor, got {type(tensor).__name__}"
                )
            if (
                not isinstance(dim, int)
                or isinstance(dim, bool)
                or not (-tensor.dim() <= dim < tensor.dim())
            ):
                raise ValueError(
                    f"slice dim {dim!r} out of range for a tensor of shape {tuple(tensor.shape)}"
                )
            dim %= tensor.dim()
            idx = torch.as_tensor(indices, device=tensor.device).reshape(-1)
            if idx.numel() and (
                idx.dtype.is_floating_point or idx.dtype.is_complex or idx.dtype == torch.bool
            ):
                raise ValueError(f"slice indices must be integers, got dtype {idx.dtype}")
            idx = idx.long()
            # one sync per new solver state (rare), worth a clear message over a CUDA assert
            if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= tensor.shape[dim]):
                raise ValueError(
                    f"slice indices must lie in [0, {tensor.shape[dim]}) along "
                    f"dim {dim} of a tensor of shape {tuple(tensor.shape)}, got "
                    f"min {int(idx.min())}, max {int(idx.max())}"
                )
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
