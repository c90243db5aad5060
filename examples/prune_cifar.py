"""Prune a CIFAR ResNet with the Ising energy from Python, in your own training loop.

    python examples/prune_cifar.py --data-dir DIR [--dataset imagefolder] [--subset 2000]

DIR: the CIFAR-10 JPEG copy unpacked (train/ and test/ class folders; see
../shared/data/README.md), or a folder with cifar-10-batches-py (--dataset cifar10).
The same run from the command line is ``ising-qubo prune``; this shows the pieces:
IsingPruner as a hook in a hand-written loop (Ising-dropout), real channel removal,
fine-tuning, and a pickle-free save that ``load_pruned`` rebuilds.
"""

from __future__ import annotations

import argparse
import tempfile

import torch
import torch.nn.functional as F

import ising_qubo
from ising_qubo.nets import data, models
from ising_qubo.nets.training import evaluate


def train_epoch(model, loader, optimizer, pruner=None):
    model.train()
    for it, (x, y) in enumerate(loader):
        if pruner is not None:
            pruner.before_forward(it)  # dropped units are zero in this forward pass
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        if pruner is not None:
            pruner.after_backward(it)  # ... get no gradient ...
        optimizer.step()
        if pruner is not None:
            pruner.after_step(it, loss.item())  # ... keep their weights; re-solve every N


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--dataset", default="imagefolder")
    parser.add_argument("--subset", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--keep", type=float, default=0.5)
    args = parser.parse_args()
    torch.manual_seed(0)

    splits = data.load_splits(
        args.dataset, args.data_dir, subset=args.subset, test_subset=args.subset // 2
    )
    train, test = splits["train"], splits["test"]
    loader = data.BatchLoader(train, 64, augment=True)
    test_loader = data.BatchLoader(test, 256, shuffle=False)
    calibration = next(
        iter(data.BatchLoader(train.subset(min(128, len(train))), 128, shuffle=False))
    )

    model = models.build("resnet20", num_classes=train.num_classes, in_channels=train.in_channels)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    pruner = ising_qubo.IsingPruner(
        model,
        calibration[0][:1],
        keep=args.keep,
        energy="redundancy",
        solver="torch-sa",
        every=20,
        data=calibration,
    )
    for epoch in range(args.epochs):
        train_epoch(model, loader, optimizer, pruner)
        pruner.on_epoch_end(epoch)
    before = sum(p.numel() for p in model.parameters())
    dense = evaluate(model, test_loader)
    pruner.prune()  # the dropped channels are removed for real
    after = sum(p.numel() for p in model.parameters())
    print(
        f"Ising solves: {len(pruner.energy_history)}, last energy "
        f"{pruner.energy_history[-1]['energy']:.3f}"
    )
    print(f"parameters: {before:,} -> {after:,} ({100 * after / before:.1f}% kept)")

    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    for _ in range(args.epochs):
        train_epoch(model, loader, optimizer)
    final = evaluate(model, test_loader)
    print(f"top-1: {dense['top1']:.2f}% (dense) -> {final['top1']:.2f}% (pruned, fine-tuned)")

    with tempfile.TemporaryDirectory() as directory:
        ising_qubo.save_pruned(model, directory)
        again = ising_qubo.load_pruned(directory)
        reloaded = evaluate(again, test_loader)
    print(
        f"reloaded without pickle: top-1 {reloaded['top1']:.2f}% "
        f"({'same' if reloaded['top1'] == final['top1'] else 'DIFFERENT'})"
    )


if __name__ == "__main__":
    main()
