"""Seeded, class-stratified selections: subsets of a split and the train/val hold-out.

``"train"`` and ``"test"`` are a dataset's own splits; ``"val"`` is a class-stratified,
seeded hold-out of ``val_size`` images of the train split (the paper's 45k/5k CIFAR
protocol is ``val_size=5000``), and ``"train"`` with the same ``val_size`` and seed is
exactly the complement. ``subset=n`` then keeps a stratified, seeded ``n`` of the
requested split.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["SPLITS", "split_indices", "stratified_indices"]

SPLITS = ("train", "val", "test")


def stratified_indices(
    labels: np.ndarray | torch.Tensor | Sequence[int], n: int, seed: int = 0
) -> np.ndarray:
    """Sorted indices of a class-stratified random selection of ``n`` items.

    Each class gets ``n * count / total`` items, rounded by largest remainder (ties to the
    lower class index) so that exactly ``n`` are chosen. Within a class the items are the
    first ones of one seeded permutation of all items, so the result depends only on
    ``(labels, n, seed)``, and for a fixed seed a larger ``n`` mostly extends a smaller one.
    """
    labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    labels = labels.astype(np.int64, copy=False).reshape(-1)
    total = labels.size
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"n must be an integer, got {n!r}")
    if not 0 <= n <= total:
        raise ValueError(f"cannot select {n} items out of {total}")
    if n == total:
        return np.arange(total)
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * n // total
    remainder = counts * n - quota * total
    short = n - int(quota.sum())
    quota[np.lexsort((classes, -remainder))[:short]] += 1
    perm = np.random.default_rng(seed).permutation(total)
    perm_labels = labels[perm]
    chosen = [perm[perm_labels == c][:k] for c, k in zip(classes, quota)]
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)


def split_indices(
    labels: np.ndarray, part: str, val_size: int, subset: int | None, seed: int
) -> np.ndarray:
    """Indices into a base split (the dataset's train or test) for ``part``."""
    total = labels.size
    idx = np.arange(total)
    if part in ("train", "val") and val_size:
        if not 0 < val_size < total:
            raise ValueError(
                f"val_size={val_size} must be between 1 and {total - 1} "
                f"(the train split has {total} images)"
            )
        val = stratified_indices(labels, val_size, seed)
        idx = val if part == "val" else np.setdiff1d(idx, val, assume_unique=True)
    elif part == "val":
        raise ValueError("split='val' is held out of the train split: pass val_size > 0")
    if subset is not None:
        if isinstance(subset, bool) or not isinstance(subset, (int, np.integer)) or subset < 1:
            raise ValueError(f"subset must be a positive integer, got {subset!r}")
        if subset > idx.size:
            raise ValueError(f"subset={subset} is larger than the {part} split ({idx.size} images)")
        idx = idx[stratified_indices(labels[idx], subset, seed)]
    return idx
