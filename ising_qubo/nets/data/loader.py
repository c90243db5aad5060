"""Batches of an in-memory dataset on the training device, augmented there.

:class:`BatchLoader` moves the ``uint8`` images to the device once, then per batch gathers
the images, applies the standard CIFAR augmentation (random crop with 4 pixels of zero
padding and a random horizontal flip, :func:`crop_flip`) as a handful of tensor operations
on the whole batch, and normalises to ``float32``. No per-image Python code runs during
training.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from ising_qubo.nets.data.dataset import ImageDataset

__all__ = ["BatchLoader", "crop_flip"]


def crop_flip(
    images: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor, padding: int = 4
) -> torch.Tensor:
    """Per-sample crop of the zero-padded batch, then optional horizontal flip.

    ``out[n, :, i, j] = padded[n, :, i + dy[n], j' + dx[n]]`` with ``j' = W-1-j`` where
    ``flip[n]`` else ``j``; ``padded`` is ``images`` with ``padding`` zero pixels on each
    side and ``dy, dx`` lie in ``[0, 2 * padding]``. One gather over the whole batch; any
    dtype, any device.
    """
    b, c, h, w = images.shape
    if padding:  # zero-filled copy; faster on CPU than F.pad for uint8
        padded = images.new_zeros((b, c, h + 2 * padding, w + 2 * padding))
        padded[:, :, padding : padding + h, padding : padding + w] = images
    else:
        padded = images
    wp = w + 2 * padding
    dev = images.device
    rows = dy.to(dev, torch.int64)[:, None] + torch.arange(h, device=dev)
    cols = torch.arange(w, device=dev)
    cols = dx.to(dev, torch.int64)[:, None] + torch.where(flip.to(dev)[:, None], w - 1 - cols, cols)
    index = (rows[:, :, None] * wp + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
    return padded.reshape(b, c, -1).gather(2, index).view(b, c, h, w)


class BatchLoader:
    """Batches of a whole in-memory dataset, on ``device``, augmented there.

    The ``uint8`` images move to ``device`` once. Each pass draws its order (and, with
    ``augment``, the crop offsets and flips) from a CPU ``torch.Generator`` seeded with
    ``seed + epoch``, so a pass is reproducible on any device. ``epoch`` starts at 0;
    every ``iter()`` (one pass) uses the current epoch and then advances it, and
    ``set_epoch(e)`` makes the next pass epoch ``e`` (as with ``DistributedSampler``).
    Yields ``(x, y)``: ``x`` ``float32`` ``(B, C, H, W)`` normalised with the dataset's
    mean/std (``channels_last`` memory format if asked), ``y`` ``int64``.

    ``rank``/``world_size`` shard each pass: rank ``r`` gets positions ``r, r+W, ...`` of
    the pass's permutation, truncated to ``len(dataset) // world_size`` items so every
    rank has the same number of batches and the shards are disjoint (up to
    ``world_size - 1`` items, different ones each epoch, are skipped per pass). The
    permutation and the augmentation draws are those of the whole dataset, so with a
    per-rank batch of ``B / W`` the ranks' ``i``-th batches together are exactly the
    ``i``-th batch of size ``B`` of a single process (data-parallel training follows the
    single-process trajectory). ``even=False`` (for evaluation) skips nothing: rank ``r``
    gets every position ``r, r+W, ...`` and the shards differ by at most one item.
    """

    def __init__(
        self,
        dataset: ImageDataset,
        batch_size: int = 128,
        shuffle: bool = True,
        augment: bool = False,
        device: str | torch.device = "cpu",
        seed: int = 0,
        drop_last: bool = False,
        channels_last: bool = False,
        *,
        rank: int = 0,
        world_size: int = 1,
        padding: int = 4,
        flip: bool = True,
        even: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(
                f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}"
            )
        if padding < 0:
            raise ValueError(f"padding must be >= 0, got {padding}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.augment = bool(augment)
        self.device = torch.device(device)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.channels_last = bool(channels_last)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.padding = int(padding)
        self.flip = bool(flip)
        self.even = bool(even)
        self.epoch = 0
        self.images = dataset.images.to(self.device).contiguous()
        self.labels = dataset.labels.to(self.device)
        shape = (1, dataset.in_channels, 1, 1)
        std = torch.tensor(dataset.std, dtype=torch.float32)
        mean = torch.tensor(dataset.mean, dtype=torch.float32)
        self._scale = (1.0 / (255.0 * std)).view(shape).to(self.device)
        self._shift = (mean / std).view(shape).to(self.device)

    @property
    def num_samples(self) -> int:
        """Items per pass for this rank."""
        n = len(self.dataset)
        if self.world_size == 1:
            return n
        if self.even:
            return n // self.world_size
        return len(range(self.rank, n, self.world_size))

    def __len__(self) -> int:
        n = self.num_samples
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """``uint8`` ``(B, C, H, W)`` on the loader's device -> normalised ``float32``."""
        x = images.to(torch.float32).mul_(self._scale).sub_(self._shift)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def plan(self, epoch: int) -> dict[str, torch.Tensor]:
        """This rank's order and augmentation draws for ``epoch`` (CPU tensors)."""
        n = len(self.dataset)
        g = torch.Generator().manual_seed(self.seed + int(epoch))
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        plan = {"order": order}
        if self.augment:
            plan["dy"] = torch.randint(0, 2 * self.padding + 1, (n,), generator=g)
            plan["dx"] = torch.randint(0, 2 * self.padding + 1, (n,), generator=g)
            flips = torch.randint(0, 2, (n,), generator=g).bool()
            plan["flip"] = flips if self.flip else torch.zeros_like(flips)
        if self.world_size > 1:
            stop = self.num_samples * self.world_size if self.even else n
            # (a rank past the end of a small set gets an empty shard)
            keep = torch.arange(self.rank, max(stop, self.rank), self.world_size)
            plan = {k: v[keep] for k, v in plan.items()}
        return plan

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self.epoch
        self.epoch += 1
        return self._batches(epoch)

    def _batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        plan = {k: v.to(self.device) for k, v in self.plan(epoch).items()}
        order = plan["order"]
        for start in range(0, self.num_samples, self.batch_size):
            stop = min(start + self.batch_size, self.num_samples)
            if self.drop_last and stop - start < self.batch_size:
                break
            idx = order[start:stop]
            x = self.images.index_select(0, idx)
            if self.augment:
                x = crop_flip(
                    x,
                    plan["dy"][start:stop],
                    plan["dx"][start:stop],
                    plan["flip"][start:stop],
                    self.padding,
                )
            yield self.normalize(x), self.labels.index_select(0, idx)
