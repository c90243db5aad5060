"""Data-parallel runs under ``torchrun``: the process-group plumbing, nothing else.

(Long because the plumbing has two transports that must behave alike: NCCL on GPUs and
gloo on CPUs, where synchronised BatchNorm is written by hand.)

``torchrun --nproc-per-node N -m ising_qubo prune ...`` starts N processes with the
environment variables ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``. :func:`setup` reads them and joins the process group (NCCL when the run
is on CUDA, each process on GPU ``LOCAL_RANK``; gloo on CPUs); without them, or with
``WORLD_SIZE=1``, it returns a single-process :class:`Context` and starts nothing.
:func:`session` does the same as a context manager that always destroys the group it
created, also on error.

The rest of the package only sees the :class:`Context`: ``rank``, ``world_size``,
``is_main``, the device, and a few collectives that are the identity in a single
process (:meth:`Context.broadcast_object`, :meth:`Context.all_reduce_sum`,
:meth:`Context.run_on_main`, :meth:`Context.together`, :meth:`Context.barrier`), plus
:meth:`Context.wrap_model`, which synchronises BatchNorm and wraps the model in
``DistributedDataParallel`` for training and gives the plain model back afterwards.

BatchNorm: per-process batch statistics would make an N-process run differ from the
single-process run with the same global batch. On CUDA ``torch.nn.SyncBatchNorm`` is
used; torch's SyncBatchNorm refuses CPU tensors, so on CPUs (gloo)
:class:`CPUSyncBatchNorm2d` (below, hand-written for that reason) does the same with
differentiable all-reduces.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "CPUSyncBatchNorm2d",
    "Context",
    "convert_sync_batchnorm",
    "launched_by_torchrun",
    "launched_rank",
    "restore_batchnorm",
    "session",
    "setup",
    "teardown",
]

T = TypeVar("T")

#: Seconds a collective may wait for the other processes before failing (a dead peer
#: must not hang a run forever). Generous because the other processes wait while the
#: main process solves the Ising problem, which a time-limited solver may take minutes
#: over; override with this environment variable.
TIMEOUT_ENV = "ISING_QUBO_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 1800.0

_TORCHRUN_VARS = ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def launched_by_torchrun() -> bool:
    """True when the environment says this is one of several processes (``WORLD_SIZE`` > 1)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def launched_rank() -> int:
    """This process's global rank according to the environment (0 without ``torchrun``);
    valid before :func:`setup` and after :func:`teardown`."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


@dataclass
class Context:
    """Where this process stands in the run: rank, number of processes, device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None  # "nccl" or "gloo" when a process group is up
    owns_group: bool = False  # created by setup(), so teardown() destroys it

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that solves, prints and writes files."""
        return self.rank == 0

    # ----- batch size -------------------------------------------------------------------
    def local_batch_size(self, batch_size: int) -> int:
        """The per-process share of the GLOBAL batch ``batch_size`` (an error naming both
        numbers when it does not divide evenly)."""
        if batch_size % self.world_size:
            raise ValueError(
                f"--batch-size {batch_size} is the global batch and must be "
                f"divisible by the number of processes ({self.world_size}); "
                f"each process takes batch-size / {self.world_size} samples per "
                f"step: use e.g. --batch-size "
                f"{max(1, round(batch_size / self.world_size)) * self.world_size}"
            )
        return batch_size // self.world_size

    # ----- collectives (the identity in a single process) ---------------------------------
    def broadcast_object(self, obj: T, src: int = 0) -> T:
        """``obj`` of rank ``src`` on every rank (pickled; only between this job's own
        processes)."""
        if not self.distributed:
            return obj
        box: list[Any] = [obj if self.rank == src else None]  # rank src's obj, on every rank
        dist.broadcast_object_list(box, src=src, device=self._object_device())
        return box[0]

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over the ranks, in place; returns it."""
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def barrier(self) -> None:
        if self.distributed:
            if self.backend == "nccl":
                dist.barrier(device_ids=[self.local_rank])
            else:
                dist.barrier()

    def run_on_main(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0 only and return its result on every rank.

        An exception on rank 0 is raised on every rank (the same type and message, when it
        can be pickled), so the others fail with the same clear error instead of waiting
        for a collective that never comes. Doubles as a synchronisation point.
        """
        if not self.distributed:
            return fn()
        result, error = None, None
        if self.is_main:
            try:
                result = fn()
            except Exception as exc:  # noqa: BLE001 - re-raised below, on every rank
                error = exc
        result, shipped = self.broadcast_object((result, _portable(error)))
        if error is not None:
            raise error
        if shipped is not None:
            raise shipped
        return cast(T, result)  # what fn() returned on rank 0 (None only if fn gave None)

    def together(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on every rank; if it fails on any, raise on every rank (the failing
        rank its own error, the others the first failure's type and message, with its
        rank), instead of leaving the others blocked in the next collective."""
        if not self.distributed:
            return fn()
        result, error = None, None
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 - re-raised below, on every rank
            error = exc
        errors: list[Any] = [None] * self.world_size
        dist.all_gather_object(errors, _portable(error))
        if error is not None:
            raise error
        for rank, shipped in enumerate(errors):
            if shipped is not None:
                message = f"(rank {rank}) {shipped}"
                try:
                    raised = type(shipped)(message)
                except Exception:  # noqa: BLE001 - a constructor with other arguments
                    raised = RuntimeError(f"{type(shipped).__name__}: {message}")
                raise raised from shipped
        return cast(T, result)  # no rank failed: what fn() returned (None only if fn gave None)

    def _object_device(self) -> torch.device | None:
        return self.device if self.backend == "nccl" else None

    # ----- the model ---------------------------------------------------------------------
    @contextlib.contextmanager
    def wrap_model(self, model: nn.Module) -> Iterator[nn.Module]:
        """``with ctx.wrap_model(model) as train_model:``: in a run of several processes,
        ``model``'s BatchNorm layers synchronised across ranks and the whole wrapped in
        ``DistributedDataParallel``; afterwards the original BatchNorm modules are back in
        ``model`` (the same parameter and buffer tensors throughout, so optimizers, hooks
        and pruning groups that hold them stay valid). A single process gets ``model``.

        Train through ``train_model``; evaluate, prune, save and checkpoint ``model``.
        """
        if not self.distributed:
            yield model
            return
        from torch.nn.parallel import DistributedDataParallel

        swapped = convert_sync_batchnorm(model, cuda=self.device.type == "cuda")
        try:
            wrapped = DistributedDataParallel(
                model,
                device_ids=[self.local_rank] if self.device.type == "cuda" else None,
                **_no_buffer_sync(),
            )
            try:
                yield wrapped
            finally:
                del wrapped  # its reducer's autograd hooks go with it
        finally:
            restore_batchnorm(swapped)


def _no_buffer_sync() -> dict[str, Any]:
    """DDP's option not to broadcast buffers before every forward pass: synchronised
    BatchNorm keeps the running statistics equal on every rank already (newer torch
    renamed ``broadcast_buffers`` to ``forward_sync_buffers``)."""
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    params = inspect.signature(DistributedDataParallel.__init__).parameters
    if "forward_sync_buffers" in params:
        return {"forward_sync_buffers": False}
    return {"broadcast_buffers": False}


def _portable(error: BaseException | None) -> BaseException | None:
    """A copy of ``error`` that can be sent to the other ranks (the same type and message;
    the original keeps its traceback), else a RuntimeError with its type and message."""
    if error is None:
        return None
    try:
        return pickle.loads(pickle.dumps(error))
    except Exception:  # noqa: BLE001 - anything unpicklable
        return RuntimeError(f"{type(error).__name__}: {error}")


# ----- set-up and tear-down -------------------------------------------------------------


def _timeout() -> datetime.timedelta:
    text = os.environ.get(TIMEOUT_ENV)
    seconds = DEFAULT_TIMEOUT_S
    if text:
        try:
            seconds = float(text)
        except ValueError:
            raise ValueError(f"{TIMEOUT_ENV}={text!r} must be a number of seconds") from None
        if not seconds > 0:
            raise ValueError(f"{TIMEOUT_ENV}={text!r} must be positive")
    return datetime.timedelta(seconds=seconds)


def _env_int(name: str) -> int:
    text = os.environ.get(name)
    try:
        return int(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(
            f"WORLD_SIZE={os.environ.get('WORLD_SIZE')} says this is one of "
            f"several processes, but {name}={text!r} is not an integer; start "
            f"the run with torchrun"
        ) from None


def setup(device_option: str | torch.device | None = "auto") -> Context:
    """A :class:`Context` for this process; joins the process group under ``torchrun``.

    ``device_option`` is the ``--device`` value. In a single process it is resolved as
    usual (:func:`ising_qubo.nets.training.resolve_device`). Under ``torchrun`` (``WORLD_SIZE``
    > 1): ``auto`` or ``cuda`` put each process on GPU ``LOCAL_RANK`` and use NCCL (a
    ``ValueError`` if this node has fewer GPUs than processes, or if ``cuda:K`` names one
    GPU for all of them); ``cpu`` (or ``auto`` without CUDA) uses gloo. A process group
    that is already initialised (a user's own launcher) is used as it is and left alone
    by :func:`teardown`.
    """
    from ising_qubo.nets.training import resolve_device

    if not launched_by_torchrun() and not (dist.is_available() and dist.is_initialized()):
        return Context(device=resolve_device(device_option))
    if not dist.is_available():
        raise ValueError(
            "WORLD_SIZE > 1 asks for a distributed run, but this torch build "
            "has no torch.distributed"
        )
    already = dist.is_initialized()
    if already:
        rank, world_size = dist.get_rank(), dist.get_world_size()
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    else:
        missing = [name for name in _TORCHRUN_VARS if name not in os.environ]
        if missing:
            raise ValueError(
                f"WORLD_SIZE={os.environ['WORLD_SIZE']} asks for a distributed "
                f"run, but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'}"
                f" not set; start it with torchrun (or unset WORLD_SIZE)"
            )
        rank, world_size = _env_int("RANK"), _env_int("WORLD_SIZE")
        local_rank = _env_int("LOCAL_RANK")
    device = _rank_device(device_option, local_rank)
    if already:
        backend = dist.get_backend()
    else:
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend, timeout=_timeout())
    return Context(
        rank=rank,
        world_size=world_size,
        local_rank=local_rank,
        device=device,
        backend=backend,
        owns_group=not already,
    )


def _rank_device(device_option: Any, local_rank: int) -> torch.device:
    """The device of process ``local_rank`` of this node for ``--device device_option``."""
    text = "auto" if device_option is None else str(device_option)
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(text)
    except (RuntimeError, TypeError):
        raise ValueError(f"--device must be 'auto', 'cpu' or 'cuda', got {text!r}") from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type != "cuda":
        raise ValueError(f"--device must be 'auto', 'cpu' or 'cuda', got {text!r}")
    if device.index is not None:
        raise ValueError(
            f"--device {text} names one GPU, but torchrun starts several "
            f"processes per node and each takes GPU LOCAL_RANK: pass --device "
            f"cuda (choose the GPUs with CUDA_VISIBLE_DEVICES)"
        )
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise ValueError(
            f"--device cuda: process LOCAL_RANK={local_rank} needs a GPU, but "
            f"torch sees 0 GPUs on this node; use --device cpu (gloo)"
        )
    if local_rank >= count:
        raise ValueError(
            f"--device cuda: process LOCAL_RANK={local_rank} needs GPU "
            f"{local_rank}, but torch sees {count} GPU(s) on this node; start "
            f"at most {count} process(es) per node (--nproc-per-node) or use "
            f"--device cpu"
        )
    return torch.device("cuda", local_rank)


def teardown(context: Context | None = None) -> None:
    """Destroy the process group that :func:`setup` created (nothing otherwise)."""
    if context is not None and not context.owns_group:
        return
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def session(device_option: str | torch.device | None = "auto") -> Iterator[Context]:
    """``with session(args.device) as ctx:`` :func:`setup`, then :func:`teardown` whatever
    happens (so an error never leaves a process group, or a test, hanging)."""
    context = setup(device_option)
    try:
        yield context
    finally:
        teardown(context)


# ----- synchronised BatchNorm -------------------------------------------------------------


class CPUSyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training-mode statistics are those of the whole global batch.

    Hand-written because ``torch.nn.SyncBatchNorm`` refuses CPU tensors (gloo runs). In
    training mode the per-channel sum and the count, then the sum of squared deviations
    from the global mean, are summed over the ranks with the differentiable
    ``torch.distributed.nn.functional.all_reduce`` (two passes, in float64: as accurate as
    ``nn.BatchNorm2d`` on the concatenated batch); the output is normalised with the
    global mean and biased variance, and ``running_mean``/``running_var`` are updated in
    place with the unbiased global variance and ``momentum`` exactly as ``nn.BatchNorm2d``
    does. Gradients flow through the all-reduces, so they are those of the concatenated
    batch too. Eval mode (and a run of one process) is plain BatchNorm2d.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (
            self.training
            and dist.is_available()
            and dist.is_initialized()
            and dist.get_world_size() > 1
        ):
            return super().forward(x)
        self._check_input_dim(x)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked)
        dims = [0] + list(range(2, x.dim()))
        wide = x.to(torch.float64)
        count = torch.tensor([x.numel() // x.shape[1]], dtype=torch.float64, device=x.device)
        sums = _all_reduce_sum(torch.cat([wide.sum(dims), count]))
        total = sums[-1].detach()
        if float(total) <= 1:  # the same total on every rank: all raise together
            raise ValueError(
                f"expected more than 1 value per channel when training, got "
                f"input size {list(x.shape)} in all processes together"
            )
        mean = sums[:-1] / total
        shape = [1, -1] + [1] * (x.dim() - 2)
        centred = wide - mean.view(shape)
        var = _all_reduce_sum(centred.square().sum(dims)) / total  # biased, for normalising
        y = (centred * torch.rsqrt(var + self.eps).view(shape)).to(x.dtype)
        if self.weight is not None:
            y = y * self.weight.view(shape)
        if self.bias is not None:
            y = y + self.bias.view(shape)
        if (
            self.track_running_stats
            and self.running_mean is not None
            and self.running_var is not None  # tracked together: both or neither
        ):
            with torch.no_grad():
                unbiased = var.detach() * (total / (total - 1))
                self.running_mean.mul_(1 - factor).add_(
                    mean.detach().to(self.running_mean.dtype), alpha=factor
                )
                self.running_var.mul_(1 - factor).add_(
                    unbiased.to(self.running_var.dtype), alpha=factor
                )
        return y


class _AllReduceSum(torch.autograd.Function):
    """Differentiable sum over the ranks: the gradient of every rank's input is the sum of
    the gradients of every rank's output (what ``torch.distributed.nn.functional.all_reduce``
    does; written out because that function is deprecated and its replacement in
    ``torch.distributed._functional_collectives`` is private)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # noqa: D102
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return _AllReduceSum.apply(grad)


def _all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    return _AllReduceSum.apply(tensor)


Swapped = list[tuple[nn.Module, str, nn.Module]]


def convert_sync_batchnorm(model: nn.Module, cuda: bool) -> Swapped:
    """Replace every ``nn.BatchNorm2d`` of ``model`` (in place) by a synchronised one that
    shares its parameters and buffers: ``torch.nn.SyncBatchNorm`` when ``cuda``, else
    :class:`CPUSyncBatchNorm2d`. Returns what :func:`restore_batchnorm` needs to put the
    original modules back (state_dict keys are the same either way). Only BatchNorm2d
    (the only normalisation with batch statistics in this package's models): another
    kind, e.g. a BatchNorm1d, keeps per-process statistics."""
    swapped: Swapped = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is not nn.BatchNorm2d:
                continue
            if cuda:
                replacement = torch.nn.SyncBatchNorm.convert_sync_batchnorm(child)
            else:
                replacement = CPUSyncBatchNorm2d(
                    child.num_features,
                    child.eps,
                    child.momentum,
                    child.affine,
                    child.track_running_stats,
                )
                # the very same tensors, not copies
                replacement.weight, replacement.bias = child.weight, child.bias
                replacement.running_mean = child.running_mean
                replacement.running_var = child.running_var
                replacement.num_batches_tracked = child.num_batches_tracked
            replacement.train(child.training)
            setattr(parent, name, replacement)
            swapped.append((parent, name, child))
    return swapped


def restore_batchnorm(swapped: Swapped) -> None:
    """Undo :func:`convert_sync_batchnorm`: the original BatchNorm2d modules go back."""
    for parent, name, original in reversed(swapped):
        current = getattr(parent, name)
        original.train(current.training)
        setattr(parent, name, original)
