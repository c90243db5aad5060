"""Loading a split of any dataset into memory: :func:`load_dataset` and :func:`load_splits`.

The dataset families (:mod:`.cifar`, :mod:`.fashion_mnist`, :mod:`.image_folder`) each
open one of the dataset's own splits as a :class:`~.dataset.Source`; the requested part
(``train``, ``val``, ``test``, a subset) is selected from its labels (:mod:`.splits`)
before its images are fetched.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ising_qubo.nets.data.catalog import canonical_name
from ising_qubo.nets.data.cifar import open_cifar
from ising_qubo.nets.data.dataset import ImageDataset, Source
from ising_qubo.nets.data.fashion_mnist import open_fashion_mnist
from ising_qubo.nets.data.image_folder import MissingSplitError, open_imagefolder
from ising_qubo.nets.data.splits import SPLITS, split_indices

__all__ = ["load_dataset", "load_splits"]


def _open_source(
    name: str,
    data_dir: str | os.PathLike[str] | None,
    base: str,
    download: bool,
    image_size: int | tuple[int, int] | None,
    num_workers: int | None,
    progress: bool,
) -> Source:
    root = Path(data_dir) if data_dir is not None else None
    if name in ("cifar10", "cifar100"):
        return open_cifar(name, root, base, download, progress)
    if name == "fashion-mnist":
        return open_fashion_mnist(root, base, download, progress)
    return open_imagefolder(root, base, download, image_size, num_workers, progress)


def _make(
    source: Source, name: str, part: str, val_size: int, subset: int | None, seed: int
) -> ImageDataset:
    idx = split_indices(source.labels, part, val_size, subset, seed)
    images = source.fetch(idx)
    mean, std = source.stats(images)
    return ImageDataset(
        images, torch.from_numpy(source.labels[idx]), list(source.classes), name, mean, std
    )


def load_dataset(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    split: str = "train",
    download: bool = False,
    subset: int | None = None,
    seed: int = 0,
    *,
    val_size: int = 0,
    image_size: int | tuple[int, int] | None = None,
    num_workers: int | None = None,
    progress: bool = True,
) -> ImageDataset:
    """Load one split of a dataset into memory.

    ``name``: ``cifar10``, ``cifar100``, ``fashion-mnist`` or ``imagefolder``.
    ``data_dir``: where to look (default: ``$ISING_QUBO_DATA_DIR`` or ``./data``; for
    Fashion-MNIST first ``/usr/share/datasets/fashion-mnist``; required for imagefolder).
    ``split``: ``train``, ``test`` or ``val`` (``val`` needs ``val_size``: that many
    stratified, seeded images held out of the train split; ``train`` with the same
    ``val_size`` and ``seed`` is the complement). ``subset``: keep a stratified, seeded
    ``subset`` images of the split (for image folders, chosen before decoding).
    ``download``: fetch CIFAR / Fashion-MNIST if missing. ``image_size`` (image folders
    only): resize every image to ``(H, W)`` (an int means square). ``num_workers``:
    decoding threads for image folders. ``progress``: a bar while the files are read or
    decoded, on stderr when it is a terminal (:mod:`ising_qubo._progress`).
    """
    name = canonical_name(name)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if image_size is not None and name != "imagefolder":
        raise ValueError("image_size applies to imagefolder only")
    base = "test" if split == "test" else "train"
    source = _open_source(name, data_dir, base, download, image_size, num_workers, progress)
    return _make(source, name, split, val_size, subset, seed)


def load_splits(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    val_size: int = 0,
    subset: int | None = None,
    test_subset: int | None = None,
    seed: int = 0,
    download: bool = False,
    image_size: int | tuple[int, int] | None = None,
    num_workers: int | None = None,
    progress: bool = True,
) -> dict[str, ImageDataset]:
    """``{"train", "val", "test"}`` datasets, reading each of the dataset's files once.

    ``"val"`` is present only when ``val_size > 0`` (held out of the train split exactly
    as in :func:`load_dataset`); ``"test"`` only when the dataset has a test split (a flat
    image folder has none). ``subset`` applies to train, ``test_subset`` to test.
    Equal arguments give the same datasets as the corresponding :func:`load_dataset` calls
    (``progress`` too: a bar while reading, on a terminal).
    """
    name = canonical_name(name)
    if image_size is not None and name != "imagefolder":
        raise ValueError("image_size applies to imagefolder only")
    train = _open_source(name, data_dir, "train", download, image_size, num_workers, progress)
    out = {"train": _make(train, name, "train", val_size, subset, seed)}
    if val_size:
        out["val"] = _make(train, name, "val", val_size, None, seed)
    try:
        test = _open_source(name, data_dir, "test", download, image_size, num_workers, progress)
    except MissingSplitError:
        return out
    out["test"] = _make(test, name, "test", 0, test_subset, seed)
    return out
