"""Training machinery: Ising-dropout masking, loop, schedules, metrics, checkpoints."""

from __future__ import annotations

import io
import json
import math
import os
from collections import OrderedDict

import pytest
import torch
from torch import nn

from ising_qubo.nets.training import (
    CheckpointError,
    History,
    TrainingHook,
    UnitDropout,
    accuracy_topk,
    evaluate,
    load_checkpoint,
    loop,
    make_optimizer,
    make_scheduler,
    precision,
    prepare_model,
    resolve_device,
    save_checkpoint,
    train_one_epoch,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class TinyNet(nn.Module):
    """conv-BN-ReLU x2, global pool, linear: the shape of the CIFAR ResNets, in miniature."""

    def __init__(self, classes: int = 3, width: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.fc = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean(dim=(2, 3)))


def synthetic(n: int = 192, batch: int = 32, seed: int = 0) -> list[tuple[torch.Tensor, ...]]:
    """Class = channel with the largest mean: learnable in a few epochs by TinyNet."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=gen)
    x = torch.randn(n, 3, 8, 8, generator=gen)
    x[torch.arange(n), y] += 1.0
    return [(x[i : i + batch], y[i : i + batch]) for i in range(0, n, batch)]


def dropped_slices(net: TinyNet, out_idx: list[int], in_idx: list[int]):
    """conv1 filters + their BN scale/shift; conv2 input channels AND output filters (the same
    tensor in two slices, overlapping at [out_idx, in_idx])."""
    idx = torch.tensor(out_idx)
    return [
        (net.conv1.weight, 0, idx),
        (net.bn1.weight, 0, idx),
        (net.bn1.bias, 0, idx),
        (net.conv2.weight, 1, torch.tensor(in_idx)),
        (net.conv2.weight, 0, [1]),
        (net.bn2.weight, 0, []),
    ]


def masks_for(net: TinyNet, out_idx: list[int], in_idx: list[int]) -> dict[str, torch.Tensor]:
    """Boolean masks of the dropped entries, per parameter name (the reference)."""
    masks = {name: torch.zeros_like(p, dtype=torch.bool) for name, p in net.named_parameters()}
    for name in ("conv1.weight", "bn1.weight", "bn1.bias"):
        masks[name][out_idx] = True
    masks["conv2.weight"][:, in_idx] = True
    masks["conv2.weight"][1] = True
    return masks


# ---------------------------------------------------------------- Ising dropout (key property)


@pytest.mark.parametrize("opt_name", ["sgd", "adadelta"])
def test_dropped_entries_bit_identical_across_steps(opt_name):
    torch.manual_seed(0)
    net = TinyNet()
    opt = make_optimizer(
        opt_name,
        net.parameters(),
        lr=0.05 if opt_name == "sgd" else 1.0,
        weight_decay=5e-3,
        momentum=0.9,
    )
    data = synthetic(n=96)
    loss_fn = nn.CrossEntropyLoss()
    # unmasked warm-up: momentum / Adadelta buffers become non-zero for every entry, so an
    # un-undone step WOULD move the dropped weights below
    for x, y in data[:2]:
        opt.zero_grad()
        loss_fn(net(x), y).backward()
        opt.step()

    out_idx, in_idx = [0, 3, 5], [2, 3]
    hook = UnitDropout(dropped_slices(net, out_idx, in_idx))
    masks = masks_for(net, out_idx, in_idx)
    params = dict(net.named_parameters())
    seen = {}
    handle = net.bn1.register_forward_hook(lambda m, i, o: seen.__setitem__("bn1", o.detach()))
    try:
        for it, (x, y) in enumerate(data):
            before = {n: p.detach().clone() for n, p in params.items()}
            opt.zero_grad()
            hook.before_forward(it)
            for name, p in params.items():  # the forward pass sees zeros
                assert torch.all(p[masks[name]] == 0), name
            loss = loss_fn(net(x), y)
            loss.backward()
            hook.after_backward(it)
            for name, p in params.items():
                assert torch.all(p.grad[masks[name]] == 0), name
                assert p.grad[~masks[name]].abs().sum() > 0, name
            opt.step()
            hook.after_step(it, loss.item())
            for name, p in params.items():
                m = masks[name]
                assert torch.equal(p.detach()[m], before[name][m]), f"{name} moved at {it}"
                if (~m).any():
                    assert not torch.equal(p.detach()[~m], before[name][~m]), name
            # conv filter and BN scale/shift dropped: the BN output channel is exactly zero
            assert torch.all(seen["bn1"][:, out_idx] == 0)
            assert seen["bn1"][:, [1, 2]].abs().sum() > 0
    finally:
        handle.remove()
    assert not hook.active


def test_without_restore_the_step_would_move_dropped_weights():
    """Control for the test above: momentum and weight decay do move zeroed entries."""
    torch.manual_seed(0)
    net = TinyNet()
    opt = make_optimizer("sgd", net.parameters(), lr=0.05, weight_decay=5e-3)
    x, y = synthetic(n=32)[0]
    for _ in range(2):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    hook = UnitDropout([(net.conv1.weight, 0, [0])])
    before = net.conv1.weight.detach()[0].clone()
    hook.before_forward()
    nn.functional.cross_entropy(net(x), y).backward()
    hook.after_backward()
    opt.step()
    assert not torch.equal(net.conv1.weight.detach()[0], before)  # momentum moved it
    hook.after_step()
    assert torch.equal(net.conv1.weight.detach()[0], before)


def test_train_one_epoch_calls_hooks_in_order_and_dropout_holds():
    torch.manual_seed(1)
    net = TinyNet()
    opt = make_optimizer("sgd", net.parameters(), lr=0.05)
    calls = []

    class Recorder(TrainingHook):
        def on_epoch_start(self, epoch):
            calls.append(("start", epoch))

        def before_forward(self, iteration=None):
            calls.append(("fwd", iteration))

        def after_backward(self, iteration=None):
            calls.append(("bwd", iteration))

        def after_step(self, iteration=None, loss=None):
            assert isinstance(loss, float)
            calls.append(("step", iteration))

        def on_epoch_end(self, epoch):
            calls.append(("end", epoch))

    class OnlyStep:  # duck-typed hook with one method
        def after_step(self, iteration, loss):
            calls.append(("duck", iteration))

    dropout = UnitDropout([(net.conv1.weight, 0, [1, 4]), (net.bn1.weight, 0, [1, 4])])
    frozen = net.conv1.weight.detach()[[1, 4]].clone()
    data = synthetic(n=64)
    stats = train_one_epoch(
        net,
        data,
        opt,
        hooks=[dropout, Recorder(), OnlyStep()],
        progress=False,
        epoch=2,
        start_iteration=10,
    )
    assert calls[0] == ("start", 2) and calls[-1] == ("end", 2)
    assert calls[1:-1] == [(k, it) for it in (10, 11) for k in ("fwd", "bwd", "step", "duck")]
    assert torch.equal(net.conv1.weight.detach()[[1, 4]], frozen)
    assert stats["count"] == 64 and stats["iterations"] == 2 and stats["seconds"] > 0
    assert net.training


def test_unit_dropout_edge_cases():
    w = nn.Parameter(torch.arange(12.0).reshape(3, 4))
    hook = UnitDropout([(w, 0, [2, 0, 2]), (w, 0, torch.tensor([0])), (w, 1, []), (w, -1, [3])])
    # merged per (tensor, dim), unique and sorted; the empty slice is dropped
    assert [(d, i.tolist()) for _, d, i in hook.slices] == [(0, [0, 2]), (1, [3])]
    original = w.detach().clone()
    with hook.masked():
        expect = original.clone()
        expect[[0, 2]] = 0
        expect[:, 3] = 0
        assert torch.equal(w.detach(), expect)
    assert torch.equal(w.detach(), original)

    hook.before_forward()
    hook.before_forward()  # repeated (a failed step): the real values are kept
    hook.set_slices([(w, 1, [0])])  # mid-step: old values go back first
    assert torch.equal(w.detach(), original)
    hook.apply_permanently()
    assert torch.all(w.detach()[:, 0] == 0) and torch.equal(w.detach()[:, 1:], original[:, 1:])
    assert hook.slices == [] and not hook.active

    for bad, match in [
        ((w, 2, [0]), "dim"),
        ((w, 0, [3]), r"\[0, 3\)"),
        ((w, 0, [-1]), r"\[0, 3\)"),
        ((w, 0, [0.5]), "integers"),
        (([1.0], 0, [0]), "torch.Tensor"),
    ]:
        with pytest.raises(ValueError, match=match):
            UnitDropout([bad])


def test_unit_dropout_can_freeze_bn_running_stats():
    torch.manual_seed(2)
    net = TinyNet()
    opt = make_optimizer("sgd", net.parameters(), lr=0.05)
    idx = [2, 6]
    hook = UnitDropout(
        [
            (net.conv1.weight, 0, idx),
            (net.bn1.weight, 0, idx),
            (net.bn1.bias, 0, idx),
            (net.bn1.running_mean, 0, idx),
            (net.bn1.running_var, 0, idx),
        ]
    )
    mean, var = net.bn1.running_mean.clone(), net.bn1.running_var.clone()
    train_one_epoch(net, synthetic(n=64), opt, hooks=[hook], progress=False)
    assert torch.equal(net.bn1.running_mean[idx], mean[idx])
    assert torch.equal(net.bn1.running_var[idx], var[idx])
    assert not torch.equal(net.bn1.running_var, var)


# ------------------------------------------------------------------------- training loop


def test_loss_decreases_with_sgd_and_cosine():
    torch.manual_seed(0)
    net = prepare_model(TinyNet(), "cpu", channels_last=True)  # channels_last: CUDA only
    data = synthetic()
    opt = make_optimizer("sgd", net.parameters(), lr=0.1)
    sched = make_scheduler("cosine", opt, epochs=6, steps_per_epoch=len(data))
    losses = [
        train_one_epoch(net, data, opt, sched, progress=False, epoch=e)["loss"] for e in range(6)
    ]
    assert losses[-1] < 0.6 * losses[0], losses
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert evaluate(net, data)["top1"] > 80


def test_adadelta_trains():
    torch.manual_seed(0)
    net = TinyNet()
    data = synthetic()
    opt = make_optimizer("adadelta", net.parameters(), weight_decay=1e-5)
    assert isinstance(opt, torch.optim.Adadelta) and opt.param_groups[0]["lr"] == 1.0
    losses = [
        train_one_epoch(net, data, opt, progress=False, grad_clip=5.0)["loss"] for _ in range(5)
    ]
    assert losses[-1] < 0.8 * losses[0], losses


def test_non_finite_loss_raises_and_hooks_restore_weights():
    torch.manual_seed(0)
    net = TinyNet()
    opt = make_optimizer("sgd", net.parameters())
    data = synthetic(n=96)
    bad = data[1][0].clone()
    bad[0, 0, 0, 0] = float("nan")
    data[1] = (bad, data[1][1])
    hook = UnitDropout([(net.conv1.weight, 0, [0, 1])])
    weights = net.conv1.weight.detach().clone()
    with pytest.raises(FloatingPointError, match=r"epoch 4, iteration 1\b"):
        train_one_epoch(net, data, opt, hooks=[hook], progress=False, epoch=4)
    assert not hook.active
    assert torch.equal(net.conv1.weight.detach()[:2], weights[:2])  # not left zeroed


def test_amp_on_cpu_is_ignored_with_one_warning(monkeypatch):
    monkeypatch.setattr(precision, "_AMP_CPU_WARNED", False)
    net = TinyNet()
    data = synthetic(n=32)
    opt = make_optimizer("sgd", net.parameters())
    with pytest.warns(RuntimeWarning, match="amp=True is ignored"):
        train_one_epoch(net, data, opt, amp=True, progress=False)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evaluate(net, data, amp=True)


def test_progress_bar_and_generator_batches(monkeypatch):
    net = TinyNet()
    opt = make_optimizer("sgd", net.parameters())
    # under pytest stderr is no TTY, so progress=True shows nothing (tqdm's disable=None) ...
    stats = train_one_epoch(net, iter(synthetic(n=64)), opt, progress=True)
    assert stats["count"] == 64
    # ... force a visible bar into a buffer to check what it shows
    sink = io.StringIO()
    real_tqdm = loop.tqdm
    monkeypatch.setattr(
        loop,
        "tqdm",
        lambda *a, **k: real_tqdm(
            *a, **{**k, "disable": k["disable"] is True, "file": sink, "mininterval": 0}
        ),
    )
    train_one_epoch(net, synthetic(n=64), opt, desc="epoch 3")
    text = sink.getvalue()
    assert "epoch 3" in text and "2/2" in text and "loss=" in text and "acc=" in text
    sink.truncate(0)
    train_one_epoch(net, synthetic(n=64), opt, progress=False)
    assert sink.getvalue() == ""
    with pytest.raises(ValueError, match="no batches"):
        train_one_epoch(net, [], opt, progress=False)


@pytest.mark.cuda
def test_cuda_amp_channels_last_and_dropout():
    torch.manual_seed(0)
    net = prepare_model(TinyNet(), "cuda", channels_last=True)
    assert net.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    data = synthetic()
    opt = make_optimizer("sgd", net.parameters(), lr=0.1)
    hook = UnitDropout(
        [
            (net.conv1.weight, 0, torch.tensor([0, 2])),
            (net.bn1.weight, 0, [0, 2]),
            (net.bn1.bias, 0, [0, 2]),
        ]
    )
    frozen = net.conv1.weight.detach()[[0, 2]].clone()
    losses = [
        train_one_epoch(net, data, opt, hooks=[hook], amp=True, grad_clip=5.0, progress=False)[
            "loss"
        ]
        for _ in range(6)
    ]
    assert losses[-1] < 0.8 * losses[0], losses
    assert torch.equal(net.conv1.weight.detach()[[0, 2]], frozen)
    # a GradScaler passed in is used on fp16-only GPUs and ignored under bf16
    stats = train_one_epoch(
        net, data, opt, hooks=[hook], amp=True, progress=False, scaler=torch.amp.GradScaler("cuda")
    )
    assert math.isfinite(stats["loss"])
    result = evaluate(net, data, amp=True)
    assert result["count"] == 192 and result["top1"] > 50


# ------------------------------------------------------------------------------ schedules


def _lrs(sched, opt, steps):
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def _opt(lr=0.1):
    return torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)


def test_cosine_schedule_reaches_zero():
    opt = _opt()
    sched = make_scheduler("cosine", opt, epochs=3, steps_per_epoch=5)
    lrs = _lrs(sched, opt, 15)
    assert lrs[0] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert lrs[-1] < 0.01 * 0.1 * 2
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-15)
    _lrs(sched, opt, 3)  # past the end it stays at zero
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-15)


def test_step_schedule_and_warmup():
    opt = _opt()
    sched = make_scheduler("step", opt, epochs=8, steps_per_epoch=3, step_size=2, gamma=0.1)
    lrs = _lrs(sched, opt, 24)
    for t, lr in enumerate(lrs):
        assert lr == pytest.approx(0.1 * 0.1 ** ((t // 3) // 2)), t
    opt = _opt()
    sched = make_scheduler("step", opt, epochs=200, steps_per_epoch=1)  # paper: /10 every 50
    lrs = _lrs(sched, opt, 200)
    assert [lrs[e] / 0.1 for e in (0, 49, 50, 100, 150, 199)] == pytest.approx(
        [1, 1, 0.1, 0.01, 1e-3, 1e-3]
    )
    opt = _opt()
    sched = make_scheduler("constant", opt, epochs=4, steps_per_epoch=2, warmup_epochs=1)
    assert _lrs(sched, opt, 5) == pytest.approx([0.05, 0.1, 0.1, 0.1, 0.1])
    opt = _opt()
    sched = make_scheduler("cosine", opt, epochs=3, steps_per_epoch=2, warmup_epochs=1)
    lrs = _lrs(sched, opt, 6)
    assert lrs[:3] == pytest.approx([0.05, 0.1, 0.1]) and lrs[3] < 0.1


def test_scheduler_state_dict_round_trip(tmp_path):
    def build():
        net = nn.Linear(2, 2)
        opt = make_optimizer("sgd", net.parameters(), lr=0.2)
        return opt, make_scheduler("cosine", opt, epochs=4, steps_per_epoch=5)

    opt, sched = build()
    _lrs(sched, opt, 7)
    save_checkpoint(tmp_path / "s.pt", scheduler=sched.state_dict(), optimizer=opt.state_dict())
    state = load_checkpoint(tmp_path / "s.pt")
    opt2, sched2 = build()
    opt2.load_state_dict(state["optimizer"])
    sched2.load_state_dict(state["scheduler"])
    assert _lrs(sched2, opt2, 13) == _lrs(sched, opt, 13)


def test_factory_errors_name_value_and_choices():
    params = [nn.Parameter(torch.zeros(1))]
    with pytest.raises(ValueError, match=r"'adam'.*\['adadelta', 'sgd'\]"):
        make_optimizer("adam", params)
    for kwargs, match in [
        ({"lr": 0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"momentum": 1.0}, "momentum"),
        ({"weight_decay": -1}, "weight"),
    ]:
        with pytest.raises(ValueError, match=match):
            make_optimizer("sgd", params, **kwargs)
    assert make_optimizer("SGD", params).param_groups[0]["lr"] == 0.1
    assert make_optimizer("sgd", params).param_groups[0]["nesterov"] is False
    opt = _opt()
    with pytest.raises(ValueError, match=r"'linear'.*cosine"):
        make_scheduler("linear", opt, 10, 5)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        make_scheduler("step", opt, 10, 0)
    with pytest.raises(ValueError, match="warmup"):
        make_scheduler("cosine", opt, 2, 5, warmup_epochs=3)


# ----------------------------------------------------------------------- metrics, evaluation


def test_accuracy_and_evaluate_against_direct_computation():
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(50, 10, generator=gen)
    targets = torch.randint(0, 10, (50,), generator=gen)
    ranks = (logits > logits[torch.arange(50), targets].unsqueeze(1)).sum(1)  # 0 = best
    top1 = 100.0 * (ranks < 1).float().mean().item()
    top5 = 100.0 * (ranks < 5).float().mean().item()
    assert accuracy_topk(logits, targets) == pytest.approx({"top1": top1, "top5": top5})
    assert 0 < top1 < top5 < 100

    hand = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.05], [0.2, 0.3, 0.5]])
    assert accuracy_topk(hand, torch.tensor([1, 1, 0]), ks=(1, 2, 5)) == pytest.approx(
        {"top1": 100 / 3, "top2": 200 / 3, "top5": 100.0}
    )  # top5 of 3 classes = top3

    model = nn.Identity()  # the "batches" are the logits themselves
    batches = [(logits[:20], targets[:20]), (logits[20:], targets[20:])]
    result = evaluate(model, batches)
    ce = nn.functional.cross_entropy(logits, targets).item()
    assert result == pytest.approx({"top1": top1, "top5": top5, "loss": ce, "count": 50})
    assert evaluate(model, batches, max_batches=1)["count"] == 20
    with pytest.raises(ValueError, match="no samples"):
        evaluate(model, [])


def test_evaluate_restores_mode_and_uses_eval():
    net = TinyNet()
    net.train()
    net.bn2.eval()  # a deliberately frozen submodule keeps its mode
    modes = []
    net.bn1.register_forward_hook(lambda m, i, o: modes.append(m.training))
    evaluate(net, synthetic(n=32))
    assert modes == [False] and net.training and not net.bn2.training
    net.eval()
    evaluate(net, synthetic(n=32))
    assert not net.training


# ---------------------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip(tmp_path):
    net = TinyNet()
    opt = make_optimizer("sgd", net.parameters())
    train_one_epoch(net, synthetic(n=32), opt, progress=False)
    history = History()
    history.append(epoch=0, loss=torch.tensor(1.5), top1=33.0)
    path = save_checkpoint(
        tmp_path / "sub" / "ck.pt",
        model=net.state_dict(),
        optimizer=opt.state_dict(),
        epoch=7,
        lrs=[0.1, 0.01],
        masks={"conv1": [True, False]},
        history=history.to_dict(),
        extra=OrderedDict(a=(1, 2.5, None)),
        dtype=torch.float32,
    )
    state = load_checkpoint(path)
    assert state["epoch"] == 7 and state["masks"] == {"conv1": [True, False]}
    assert History.from_dict(state["history"]) == history
    assert state["extra"]["a"] == (1, 2.5, None) and state["dtype"] is torch.float32
    fresh = TinyNet()
    fresh.load_state_dict(state["model"])
    for a, b in zip(fresh.state_dict().values(), net.state_dict().values()):
        assert torch.equal(a, b)
    assert os.listdir(tmp_path / "sub") == ["ck.pt"]
    umask = os.umask(0)
    os.umask(umask)
    assert (path.stat().st_mode & 0o777) == 0o666 & ~umask  # as a plain open() would make it


def test_checkpoint_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ck.pt"
    save_checkpoint(path, epoch=1, w=torch.ones(3))

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a zip")  # a partial write, then the "crash"
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, epoch=2, w=torch.zeros(3))
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["ck.pt"]  # no temp file left behind
    state = load_checkpoint(path)
    assert state["epoch"] == 1 and torch.equal(state["w"], torch.ones(3))


class Custom:
    def __init__(self):
        self.x = 1


def test_checkpoint_refuses_non_plain_data(tmp_path):
    import numpy as np

    for value, match in [
        (Custom(), "Custom"),
        ({"h": [1.0, np.float64(2.0)]}, r"\['h'\]\[1\]"),
        (lambda: 0, "function"),
    ]:
        with pytest.raises(CheckpointError, match=match):
            save_checkpoint(tmp_path / "x.pt", value=value)
    assert not list(tmp_path.iterdir())

    # written behind save_checkpoint's back: the weights-only loader refuses to unpickle it
    torch.save({"value": Custom()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match=r"evil\.pt.*plain data"):
        load_checkpoint(tmp_path / "evil.pt")


def test_load_checkpoint_missing_or_corrupt(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.pt"):
        load_checkpoint(tmp_path / "nope.pt")
    good = save_checkpoint(tmp_path / "good.pt", w=torch.arange(1000))
    truncated = tmp_path / "trunc.pt"
    truncated.write_bytes(good.read_bytes()[:300])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    for path in (truncated, garbage):
        with pytest.raises(CheckpointError, match=path.name):
            load_checkpoint(path)
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="not the dict"):
        load_checkpoint(tmp_path / "list.pt")


# --------------------------------------------------------------------------- history, misc


def test_history_aligns_columns_and_round_trips_json():
    h = History()
    h.append(epoch=0, loss=2.0)
    h.append(epoch=1, loss=1.0, val_top1=torch.tensor(55.5))
    h.append(epoch=2, loss=0.5)
    assert len(h) == 3 and h["val_top1"] == [None, 55.5, None]
    assert h.last("val_top1") == 55.5 and h.last("missing", 0) == 0 and "loss" in h
    again = History.from_json(json.dumps(h.to_dict()))
    assert again == h and again.to_dict() == h.to_dict()
    with pytest.raises(ValueError, match="equal lengths"):
        History.from_dict({"a": [1], "b": []})
    with pytest.raises(ValueError, match="scalar"):
        h.append(loss=torch.ones(2))


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device(None).type == expected and resolve_device("auto").type == expected
    with pytest.raises(ValueError, match="device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
