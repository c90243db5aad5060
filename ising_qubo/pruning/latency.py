"""Measured latency as a whole-network budget cost: a quadratic model of the kept counts,
fitted to timings of the network's own layers on its own device and inputs.

The cost has the form of :mod:`ising_qubo.pruning.budget`'s (so
:class:`~ising_qubo.pruning.budget.GlobalBudget` takes it unchanged)::

    latency(k) = c0 + sum_g a_g k_g + sum_(g <= h) b_gh k_g k_h,    all >= 0 (seconds)

How it is built (:func:`latency_model`):

* Every conv/linear weight of :meth:`~ising_qubo.pruning.groups.ModelGroups.cost_table`
  whose output or input dimension a group shrinks is timed alone, with the input shape the
  forward pass on the example inputs gives it (a forward hook records it), at kept
  (out, in) channels in {full, half} x {full, half}: the layer's own weight cut to that
  size, run through ``torch.nn.functional`` with its stride, padding, dilation and groups.
  (Functional calls, not fresh ``nn.Conv2d`` modules, so that no weight initialisation
  consumes the global random stream; the inputs are a fixed ramp: nothing is random.)
  The four timings determine t = t0 + a_out k_out + a_in k_in + c k_out k_in exactly;
  a layer shrunk on one side only (the first conv, the classifier) or a depthwise conv
  (its channels are one group, on both sides) is linear in its group's count: two timings.
  Where noise makes the exact fit's coefficient negative, the least-squares fit with all
  coefficients >= 0 replaces it (the budget needs a cost that grows with every count).
  k counts the layer's channels; a group's count scales by the layer's channels per unit
  of the group (a linear after a flatten sees several inputs per channel).
* Everything not modelled per layer (normalisations, activations, additions, pooling,
  layers no group shrinks, Python overhead) is the whole model's measured latency minus the
  fitted layers' at dense, and enters as a **constant**. Part of it does shrink with the
  channels (norms, activations); a constant ignores that, so the model is conservative:
  a pruned network is at least as fast as it predicts, up to noise. (Splitting it like
  :func:`~ising_qubo.pruning.budget.other_macs` would assume the Python overhead of a
  call shrinks with its channels, which on a CPU at batch 1 it does not.)

Timings are medians of ``repeats`` runs after a warm-up, the points of one layer
interleaved so that a slow spell of the machine hits all of them alike; ``repeats=None``
chooses them so that the whole measurement takes about ``max_seconds`` (a few seconds for
a CIFAR ResNet-56 on a CPU, about 75 repeats). Torch's current thread count is used as
it is (on a machine busy with other work, one thread times far more steadily than
several); on CUDA every timing synchronises the device. A ``timer`` can replace the clock
(tests pass one with known answers). :func:`measured_latency_fraction` times a pruned
model against its dense original, to check a budget against reality.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ising_qubo.pruning.groups import PRUNABLE_TYPES, ModelGroups, _forward, modes_kept

#: whole-measurement target when ``repeats`` is None (seconds), and the repeats it may pick
MAX_SECONDS = 3.0
REPEATS_RANGE = (5, 100)
_WARMUP = 2
# one round of the default measurement times every layer at up to four sizes and the
# model once: about this many whole-model passes (what repeats=None divides by)
_PASSES_PER_ROUND = 5.0


@dataclass(frozen=True)
class Probe:
    """One thing to time: a layer cut to ``kept_out`` x ``kept_in`` channels, or the whole
    model (``name`` "", kept counts None). ``run()`` executes it once."""

    name: str
    module: nn.Module
    kept_out: int | None
    kept_in: int | None
    run: Callable[[], Any] = field(repr=False, compare=False)


#: measures one probe, in seconds (the default: a median of interleaved repeats)
Timer = Callable[[Probe], float]


@dataclass
class LayerFit:
    """t = constant + per_out k_out + per_in k_in + per_pair k_out k_in (seconds, in the
    layer's own channels) of one call of a layer; groups -1 where none shrinks a side."""

    name: str
    out_group: int
    in_group: int
    out_channels: int
    in_channels: int
    constant: float
    per_out: float
    per_in: float
    per_pair: float
    clipped: bool  # the exact fit had a negative coefficient (the nonnegative one is kept)

    def seconds(self, kept_out: float, kept_in: float) -> float:
        return (
            self.constant
            + self.per_out * kept_out
            + self.per_in * kept_in
            + self.per_pair * kept_out * kept_in
        )

    @property
    def dense_seconds(self) -> float:
        return self.seconds(self.out_channels, self.in_channels)


@dataclass
class LatencyModel:
    """The fitted cost (c0, a, b as in the module docstring, in seconds) and how it was
    measured: the whole dense model's latency, the fitted layers' share of it, and the
    rest (a constant of the cost, 0 when the layers alone timed slower than the model)."""

    constant: float
    linear: np.ndarray
    quadratic: np.ndarray
    measured_seconds: float
    modelled_seconds: float
    remainder_seconds: float
    repeats: int | None
    layers: list[LayerFit]

    def terms(self) -> tuple[float, np.ndarray, np.ndarray]:
        return self.constant, self.linear.copy(), self.quadratic.copy()


@dataclass
class _Call:
    """One recorded call of a layer: what its input looked like."""

    name: str
    module: nn.Module
    shape: tuple[int, ...]
    dtype: torch.dtype
    device: torch.device
    channels_last: bool


def latency_model(
    groups: ModelGroups,
    repeats: int | None = None,
    max_seconds: float = MAX_SECONDS,
    timer: Timer | None = None,
) -> LatencyModel:
    """Measure and fit the latency cost of ``groups.model`` on ``groups.example_inputs``
    (module docstring). ``repeats``: timings per point (None: chosen to fit
    ``max_seconds``); ``timer``: replaces the clock (called once per probe)."""
    repeats = _check_repeats(repeats)
    if not max_seconds > 0:
        raise ValueError(f"max_seconds must be positive, got {max_seconds!r}")
    model = groups.model
    count = len(groups.groups)
    sizes = np.array([g.size for g in groups.groups], dtype=float)
    shrunk = _shrunk_layers(groups)
    calls = _record_calls(model, groups.example_inputs, shrunk)

    layers: list[LayerFit] = []
    with modes_kept(model), torch.no_grad():
        model.eval()
        whole = Probe("", model, None, None, lambda: _forward(model, groups.example_inputs))
        if timer is None:
            sync = _synchronizer(_device_of(model))
            estimate = _estimate_seconds(whole.run, sync)
            if repeats is None:
                per_round = max(estimate, 1e-6) * _PASSES_PER_ROUND
                repeats = int(np.clip(max_seconds / per_round, *REPEATS_RANGE))
            measured = _medians([whole.run], repeats, sync)[0]
        else:
            measured = float(timer(whole))
        _check_times("the whole model", [measured])
        for call in calls:
            out_group, in_group = shrunk[call.module]
            layers.append(_fit_layer(call, out_group, in_group, repeats, timer))

    constant, linear = 0.0, np.zeros(count)
    quadratic = np.zeros((count, count))
    for layer in layers:
        constant += layer.constant
        # the layer's channels per unit of its groups (a linear after a flatten sees
        # several inputs per channel of the group before it)
        out_scale = layer.out_channels / sizes[layer.out_group] if layer.out_group >= 0 else 0.0
        in_scale = layer.in_channels / sizes[layer.in_group] if layer.in_group >= 0 else 0.0
        if layer.out_group >= 0:
            linear[layer.out_group] += layer.per_out * out_scale
        if layer.in_group >= 0:
            linear[layer.in_group] += layer.per_in * in_scale
        if layer.out_group >= 0 and layer.in_group >= 0:
            low, high = sorted((layer.out_group, layer.in_group))
            quadratic[low, high] += layer.per_pair * out_scale * in_scale
    modelled = float(sum(layer.dense_seconds for layer in layers))
    # isolated layers can time slower than inside the model (cold caches, noise): the rest
    # is then 0, and the cost at dense exceeds the measured latency a little
    remainder = max(measured - modelled, 0.0)
    return LatencyModel(
        constant + remainder, linear, quadratic, measured, modelled, remainder, repeats, layers
    )


def measured_latency_fraction(
    model_dense: nn.Module,
    model_pruned: nn.Module,
    example_inputs: Any,
    repeats: int | None = None,
    max_seconds: float = MAX_SECONDS,
) -> float:
    """Latency of ``model_pruned`` over that of ``model_dense`` on ``example_inputs``
    (each on its own device, eval mode, no grad): medians of ``repeats`` runs of each,
    alternating, after a warm-up (None: as many as fit ``max_seconds``, within
    ``REPEATS_RANGE``)."""
    repeats = _check_repeats(repeats)
    with modes_kept(model_dense), modes_kept(model_pruned), torch.no_grad():
        model_dense.eval()
        model_pruned.eval()
        sync_dense = _synchronizer(_device_of(model_dense))
        sync_pruned = _synchronizer(_device_of(model_pruned))

        def sync() -> None:
            sync_dense()
            sync_pruned()

        runs = [
            lambda: _forward(model_dense, example_inputs),
            lambda: _forward(model_pruned, example_inputs),
        ]
        if repeats is None:
            per_round = sum(_estimate_seconds(run, sync) for run in runs)
            repeats = int(np.clip(max_seconds / max(per_round, 1e-6), *REPEATS_RANGE))
        dense, pruned = _medians(runs, repeats, sync)
    if dense <= 0:
        raise RuntimeError("the dense model timed at 0 s: the clock cannot resolve it")
    return pruned / dense


# ----- what to time ------------------------------------------------------------------------
def _shrunk_layers(groups: ModelGroups) -> dict[nn.Module, tuple[int, int]]:
    """{conv/linear module: (group shrinking its output, group shrinking its input)} for
    every layer whose weight a group shrinks, read off the cost table (-1: none)."""
    _costs, table = groups.cost_table("params")
    # the table has one row per parameter, in the order named_modules / named_parameters
    # give them (ModelGroups builds it so)
    rows = [
        (module, name)
        for _, module in groups.model.named_modules()
        for name, _param in module.named_parameters(recurse=False)
    ]
    if len(rows) != len(table):
        raise RuntimeError(
            f"the cost table has {len(table)} rows for {len(rows)} parameters: the model "
            f"changed since its groups were found"
        )
    shrunk: dict[nn.Module, tuple[int, int]] = {}
    for (module, name), (out_group, in_group) in zip(rows, table):
        if name == "weight" and isinstance(module, PRUNABLE_TYPES):
            if out_group >= 0 or in_group >= 0:
                shrunk[module] = (int(out_group), int(in_group))
    return shrunk


def _record_calls(
    model: nn.Module, example_inputs: Any, layers: dict[nn.Module, tuple[int, int]]
) -> list[_Call]:
    """Each call of the shrunk layers in one pass over the example inputs (a layer called
    twice is timed twice). A layer whose forward is never called (an attention block's
    out_proj, used through its weight) is not modelled: it falls into the constant rest."""
    names = {module: name for name, module in model.named_modules()}
    calls: list[_Call] = []

    def hook(module: nn.Module, args: tuple, _output: Any) -> None:
        if not args or not torch.is_tensor(args[0]):
            return
        x = args[0]
        channels_last = (
            x.dim() == 4
            and not x.is_contiguous()
            and x.is_contiguous(memory_format=torch.channels_last)
        )
        calls.append(_Call(names[module], module, tuple(x.shape), x.dtype, x.device, channels_last))

    handles = [module.register_forward_hook(hook) for module in layers]
    try:
        with modes_kept(model), torch.no_grad():
            model.eval()
            _forward(model, example_inputs)
    finally:
        for handle in handles:
            handle.remove()
    return calls


def _fit_layer(
    call: _Call, out_group: int, in_group: int, repeats: int | None, timer: Timer | None
) -> LayerFit:
    module = call.module
    out_channels, in_channels = _channels(module)
    groups = int(getattr(module, "groups", 1))
    depthwise = groups > 1 and groups == in_channels == out_channels
    step = 1 if depthwise else groups  # a grouped conv keeps whole groups on each side
    half_out = _half(out_channels, step)
    half_in = _half(in_channels, step)
    # a side is varied when a group shrinks it and it can be halved; a depthwise conv's
    # two sides are one group, varied together
    vary_out = out_group >= 0 and half_out < out_channels
    vary_in = (in_group >= 0 and half_in < in_channels) and not depthwise
    outs = [out_channels, half_out] if vary_out else [out_channels]
    ins = [in_channels, half_in] if vary_in else [in_channels]
    points = [(o, i) for o in outs for i in ins]
    probes = [_layer_probe(call, o, o if depthwise else i, depthwise) for o, i in points]
    if timer is not None:
        times = [float(timer(probe)) for probe in probes]
    else:
        times = _medians([p.run for p in probes], repeats or REPEATS_RANGE[0], _sync_of(call))
    _check_times(f"layer {call.name!r}", times)
    # the points determine the fit exactly: columns 1, k_out, k_in, k_out k_in (where
    # varied). Timing noise can make a small coefficient negative (e.g. t0 when the
    # k_out k_in term dominates), but the budget needs a cost that never drops when a
    # count grows (its search and CP-SAT's bound rely on it): the fit is the least-squares
    # one with every coefficient >= 0, which is the exact one whenever that is >= 0
    names = ["constant"]
    names += ["per_out"] if vary_out else []
    names += ["per_in"] if vary_in else []
    names += ["per_pair"] if vary_out and vary_in else []
    columns = {
        "constant": [1.0] * len(points),
        "per_out": [float(o) for o, _ in points],
        "per_in": [float(i) for _, i in points],
        "per_pair": [float(o * i) for o, i in points],
    }
    matrix = np.array([columns[name] for name in names]).T
    solved, exact = _nonnegative_fit(matrix, np.array(times))
    fitted = dict.fromkeys(("constant", "per_out", "per_in", "per_pair"), 0.0)
    fitted.update(zip(names, solved.tolist()))
    return LayerFit(
        call.name,
        out_group if vary_out else -1,
        in_group if vary_in else -1,
        out_channels,
        in_channels,
        fitted["constant"],
        fitted["per_out"],
        fitted["per_in"],
        fitted["per_pair"],
        not exact,
    )


def _nonnegative_fit(matrix: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, bool]:
    """argmin |matrix c - times| over c >= 0 (at most 4 unknowns: every set of nonzero
    coefficients is tried), and whether the unconstrained exact fit was already >= 0."""
    count = matrix.shape[1]
    exact = np.linalg.lstsq(matrix, times, rcond=None)[0]
    if np.all(exact >= 0):
        return exact, True
    best, best_residual = np.zeros(count), float(np.sum(times**2))
    for chosen in itertools.chain.from_iterable(
        itertools.combinations(range(count), size) for size in range(1, count)
    ):
        columns = list(chosen)
        values = np.linalg.lstsq(matrix[:, columns], times, rcond=None)[0]
        if np.any(values < 0):
            continue
        residual = float(np.sum((matrix[:, columns] @ values - times) ** 2))
        if residual < best_residual:
            best = np.zeros(count)
            best[columns] = values
            best_residual = residual
    return best, False


def _channels(module: nn.Module) -> tuple[int, int]:
    """(out, in) channels of a conv or linear layer."""
    if isinstance(module, nn.Linear):
        return module.out_features, module.in_features
    layer = cast(nn.modules.conv._ConvNd, module)
    return layer.out_channels, layer.in_channels


def _half(channels: int, step: int) -> int:
    """About half of ``channels``, a multiple of ``step`` and at least ``step``."""
    return max(step, (channels // 2) // step * step)


def _layer_probe(call: _Call, kept_out: int, kept_in: int, depthwise: bool) -> Probe:
    """The layer cut to kept_out x kept_in channels on an input of its recorded shape (a
    fixed ramp of values: timing must not depend on a random stream)."""
    module = call.module
    if isinstance(module, nn.Linear):
        shape = call.shape[:-1] + (kept_in,)
        x = _ramp(shape, call)
        w = module.weight.detach()[:kept_out, :kept_in].contiguous()
        b = None if module.bias is None else module.bias.detach()[:kept_out]

        def run_linear() -> Any:
            return F.linear(x, w, b)

        return Probe(call.name, module, kept_out, kept_in, run_linear)
    layer = cast(nn.modules.conv._ConvNd, module)
    weight = layer.weight.detach()
    bias = None if layer.bias is None else layer.bias.detach()[:kept_out]
    spatial = weight.dim() - 2
    channel_dim = len(call.shape) - spatial - 1  # 0 for an unbatched input
    shape = call.shape[:channel_dim] + (kept_in,) + call.shape[channel_dim + 1 :]
    x = _ramp(shape, call)
    groups = kept_out if depthwise else int(layer.groups)
    w = weight[:kept_out, : kept_in // groups]
    w = w.contiguous(memory_format=torch.channels_last) if call.channels_last else w.contiguous()
    conv: Callable[..., torch.Tensor] = (F.conv1d, F.conv2d, F.conv3d)[spatial - 1]
    stride, dilation = layer.stride, layer.dilation
    if layer.padding_mode != "zeros":  # as nn.Conv*d does: pad first, then no padding
        pad, mode = layer._reversed_padding_repeated_twice, layer.padding_mode

        def run_padded() -> Any:
            return conv(F.pad(x, pad, mode=mode), w, bias, stride, 0, dilation, groups)

        return Probe(call.name, module, kept_out, kept_in, run_padded)
    padding = layer.padding

    def run_conv() -> Any:
        return conv(x, w, bias, stride, padding, dilation, groups)

    return Probe(call.name, module, kept_out, kept_in, run_conv)


def _ramp(shape: Sequence[int], call: _Call) -> torch.Tensor:
    numel = int(np.prod(shape)) if shape else 1
    x = torch.linspace(-1.0, 1.0, numel, device=call.device).to(call.dtype).reshape(shape)
    return x.contiguous(memory_format=torch.channels_last) if call.channels_last else x


# ----- the clock ---------------------------------------------------------------------------
def _check_repeats(repeats: Any) -> int | None:
    if repeats is None:
        return None
    if isinstance(repeats, bool) or not isinstance(repeats, (int, np.integer)) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer or None, got {repeats!r}")
    return int(repeats)


def _check_times(what: str, times: Sequence[float]) -> None:
    if not all(np.isfinite(t) and t >= 0 for t in times):
        raise ValueError(f"{what}: timings must be finite seconds >= 0, got {list(times)}")


def _device_of(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def _synchronizer(device: torch.device) -> Callable[[], None]:
    """What to call before reading the clock: a CUDA device runs asynchronously."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def _sync_of(call: _Call) -> Callable[[], None]:
    return _synchronizer(call.device)


def _estimate_seconds(run: Callable[[], Any], sync: Callable[[], None]) -> float:
    """Warm up (first calls allocate and pick kernels), then the fastest of a few runs (one
    slow spell of a busy machine must not cut the repeats to the minimum)."""
    for _ in range(_WARMUP):
        run()
    return min(_medians([run], 1, sync, warmup=0)[0] for _ in range(3))


def _medians(
    runs: Sequence[Callable[[], Any]],
    repeats: int,
    sync: Callable[[], None],
    warmup: int = _WARMUP,
) -> list[float]:
    """Median seconds of each run over ``repeats`` rounds, after ``warmup`` calls of each;
    the runs are interleaved so that a slow spell of the machine affects them all alike."""
    for run in runs:
        for _ in range(warmup):
            run()
    samples: list[list[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for run, times in zip(runs, samples):
            sync()
            start = time.perf_counter()
            run()
            sync()
            times.append(time.perf_counter() - start)
    return [statistics.median(times) for times in samples]


__all__ = [
    "MAX_SECONDS",
    "REPEATS_RANGE",
    "LatencyModel",
    "LayerFit",
    "Probe",
    "Timer",
    "latency_model",
    "measured_latency_fraction",
]
