"""What a loaded dataset is (:class:`ImageDataset`), and what a dataset family hands to the
loader before anything is selected or decoded (:class:`Source`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ising_qubo.nets.data.splits import stratified_indices

__all__ = ["ImageDataset", "Source", "Stats", "in_memory_source"]

#: Per-channel ``(mean, std)`` on the ``[0, 1]`` scale.
Stats = tuple[tuple[float, ...], tuple[float, ...]]


@dataclass
class ImageDataset:
    """A whole labelled image dataset in memory.

    ``images`` is ``(N, C, H, W)`` ``uint8``, ``labels`` is ``(N,)`` ``int64`` in
    ``[0, len(classes))``; ``mean``/``std`` are per-channel normalisation constants on the
    ``[0, 1]`` scale.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    name: str
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        if (
            not isinstance(self.images, torch.Tensor)
            or self.images.dtype != torch.uint8
            or self.images.dim() != 4
        ):
            raise ValueError("images must be a (N, C, H, W) uint8 tensor")
        if (
            not isinstance(self.labels, torch.Tensor)
            or self.labels.dim() != 1
            or self.labels.dtype.is_floating_point
            or self.labels.dtype == torch.bool
        ):
            raise ValueError("labels must be a 1-D integer tensor")
        self.labels = self.labels.to(torch.int64)
        if self.labels.numel() != self.images.shape[0]:
            raise ValueError(f"{self.images.shape[0]} images but {self.labels.numel()} labels")
        self.classes = [str(c) for c in self.classes]
        self.mean = tuple(float(m) for m in self.mean)
        self.std = tuple(float(s) for s in self.std)
        channels = self.images.shape[1]
        if len(self.mean) != channels or len(self.std) != channels:
            raise ValueError(f"mean/std need {channels} entries (one per channel)")
        if any(not s > 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std}")
        if self.labels.numel() and (
            int(self.labels.min()) < 0 or int(self.labels.max()) >= len(self.classes)
        ):
            raise ValueError(f"labels must lie in [0, {len(self.classes)})")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        return (
            f"ImageDataset(name={self.name!r}, n={len(self)}, "
            f"shape={tuple(self.images.shape[1:])}, classes={self.num_classes})"
        )

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        """``(height, width)``."""
        return int(self.images.shape[2]), int(self.images.shape[3])

    def take(self, indices: np.ndarray | torch.Tensor | Sequence[int]) -> ImageDataset:
        """The items at ``indices`` (a copy), in that order."""
        if isinstance(indices, torch.Tensor):
            idx = indices.to(self.images.device, torch.int64)
        else:
            idx = torch.as_tensor(np.asarray(indices, dtype=np.int64), device=self.images.device)
        return ImageDataset(
            self.images[idx],
            self.labels[idx.to(self.labels.device)],
            list(self.classes),
            self.name,
            self.mean,
            self.std,
        )

    def subset(self, n: int, seed: int = 0) -> ImageDataset:
        """A class-stratified, seeded selection of ``n`` items (original order kept)."""
        if n > len(self):
            raise ValueError(f"subset of {n} asked of a dataset of {len(self)}")
        return self.take(stratified_indices(self.labels, n, seed))

    def split(self, n_val: int, seed: int = 0) -> tuple[ImageDataset, ImageDataset]:
        """``(train, val)``: a stratified, seeded ``n_val`` held out, and the rest."""
        if not 0 <= n_val <= len(self):
            raise ValueError(f"cannot hold out {n_val} of {len(self)} items")
        val = stratified_indices(self.labels, n_val, seed)
        train = np.setdiff1d(np.arange(len(self)), val, assume_unique=True)
        return self.take(train), self.take(val)


@dataclass
class Source:
    """One of a dataset's own splits (train or test), not yet decoded/selected."""

    labels: np.ndarray
    classes: list[str]
    fetch: Callable[[np.ndarray], torch.Tensor]  # sorted indices -> (n, C, H, W) uint8
    stats: Callable[[torch.Tensor], Stats]  # the split's images -> (mean, std)


def in_memory_source(
    images: np.ndarray, labels: np.ndarray, classes: list[str], stats: Stats
) -> Source:
    """A split already read whole into memory; ``stats`` are its published constants."""
    tensor = torch.from_numpy(np.ascontiguousarray(images))

    def fetch(idx: np.ndarray) -> torch.Tensor:
        if idx.size == tensor.shape[0]:  # whole split: indices are arange(N)
            return tensor
        return tensor[torch.from_numpy(idx)]

    return Source(labels, classes, fetch, lambda _images: stats)
