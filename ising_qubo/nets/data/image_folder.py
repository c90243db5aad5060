"""Image folders: ``DIR/<split>/<class>/<image>``, decoded with Pillow.

Every image (``.png``, ``.jpg``, ...) is decoded to RGB and all must have the same size
unless ``image_size`` asks for a resize. If ``DIR`` has neither a ``train`` nor a ``test``
folder but holds class folders directly, ``DIR`` itself is the train split (the test split
then does not exist; hold data out with ``val_size``). Class indices follow the sorted
union of the class-folder names of all splits, so train and test always agree. When only a
subset is asked for, the subset of *file paths* is chosen before anything is decoded.

Normalisation: for a folder whose class names are exactly CIFAR-10's and whose images are
32x32 (the JPEG copy of CIFAR-10) the CIFAR-10 constants are used; otherwise mean and std
are measured on a fixed stratified sample of up to 1,000 images of the *train* folder (the
same numbers whichever split, subset or seed is loaded, so train and test are normalised
alike).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import torch

from ising_qubo._progress import progress_bar
from ising_qubo.nets.data.cifar import CIFAR10_CLASSES, CIFAR_STATS
from ising_qubo.nets.data.dataset import Source, Stats
from ising_qubo.nets.data.splits import stratified_indices

__all__ = ["IMAGE_EXTENSIONS", "MissingSplitError", "open_imagefolder"]

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".pbm", ".tif", ".tiff", ".webp"}
)
_STATS_SAMPLE = 1000
_CHUNK = 256  # images per piece of decoding work: the bar moves, the threads share evenly
_stats_cache: dict[tuple, Stats] = {}
_stats_lock = threading.Lock()


class MissingSplitError(FileNotFoundError):
    """An image folder without the requested split folder."""


def _subdirs(directory: Path) -> list[str]:
    with os.scandir(directory) as it:
        return sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))


def _image_files(directory: Path) -> list[str]:
    with os.scandir(directory) as it:
        return sorted(
            e.path
            for e in it
            if e.is_file()
            and not e.name.startswith(".")
            and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS
        )


def _imagefolder_layout(data_dir: Path) -> dict[str, Path]:
    """``{"train": path, "test": path}`` for the split folders that exist."""
    if not data_dir.is_dir():
        raise FileNotFoundError(
            f"image folder {data_dir.resolve()} does not exist. Pass --data-dir DIR "
            f"(data_dir=DIR in Python) pointing at a folder laid out as DIR/train/<class>/"
            f"*.png|jpg (and DIR/test/<class>/...)."
        )
    splits = {s: data_dir / s for s in ("train", "test") if (data_dir / s).is_dir()}
    if splits:
        return splits
    # Flat layout: class folders directly in data_dir (unambiguous: no split folders).
    if any(_image_files(data_dir / c) for c in _subdirs(data_dir)):
        return {"train": data_dir}
    loose = len(_image_files(data_dir))
    found = (
        f"{loose} image(s) lie directly in it, without class folders (the class of an "
        f"image is the name of its folder)"
        if loose
        else "no images found"
    )
    raise FileNotFoundError(
        f"{data_dir.resolve()}: {found}: expected DIR/train/<class>/*.png|jpg "
        f"(and DIR/test/<class>/...), or class folders directly in DIR. Pass --data-dir DIR "
        f"(data_dir=DIR in Python) pointing at such a folder."
    )


def _scan_imagefolder(root: Path, classes: list[str]) -> tuple[list[str], np.ndarray]:
    files: list[str] = []
    labels: list[int] = []
    for index, cls in enumerate(classes):
        if (root / cls).is_dir():
            found = _image_files(root / cls)
            files += found
            labels += [index] * len(found)
    if not files:
        loose = len(_image_files(root))
        detail = (
            f"it has no class folders; {loose} image(s) lie directly in it (put them in "
            f"one folder per class: {root.name}/<class>/*.png)"
            if loose and not _subdirs(root)
            else "no image files in its class folders"
        )
        raise FileNotFoundError(f"{root.resolve()}: {detail}")
    return files, np.asarray(labels, dtype=np.int64)


def _size_hw(image_size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    if h < 1 or w < 1:
        raise ValueError(f"image_size must be positive, got {image_size!r}")
    return int(h), int(w)


def _decode_one(path: str, size_hw: tuple[int, int] | None) -> np.ndarray:
    """One image as an ``(H, W, 3)`` uint8 array, decoded by Pillow.

    (``torchvision.io`` decodes small JPEGs about twice as fast, but its image decoding is
    deprecated since torchvision 0.29 and warns on every call; Pillow stays.)
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode != "RGB":
                im = im.convert("RGB")
            if size_hw is not None and im.size != (size_hw[1], size_hw[0]):
                im = im.resize((size_hw[1], size_hw[0]), Image.Resampling.BILINEAR)
            return np.asarray(im)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"{path}: cannot decode image ({type(exc).__name__}: {exc})") from exc


def _decode_images(
    files: Sequence[str],
    size_hw: tuple[int, int] | None,
    num_workers: int | None = None,
    progress: bool = False,
    desc: str = "load images",
) -> torch.Tensor:
    """Decode ``files`` into one ``(n, 3, H, W)`` uint8 tensor, with ``num_workers``
    threads (Pillow drops the GIL while decoding pixels; default: up to 4 threads for
    images of at least 128x128, else 1).
    All images must share the first one's size unless ``size_hw`` resizes them.
    ``progress``: a bar over the images (labelled ``desc``) on a terminal
    (:func:`ising_qubo._progress.progress_bar`)."""
    if not files:
        raise ValueError("no images to decode")
    with progress_bar(
        total=len(files), progress=progress, desc=desc, unit="image", leave=False
    ) as bar:
        first = _decode_one(files[0], size_hw)
        bar.update(1)
        height, width, _ = first.shape
        out = np.empty((len(files), height, width, 3), np.uint8)  # HWC: plain row copies
        out[0] = first
        failed = threading.Event()

        def work(lo: int, hi: int) -> None:
            for i in range(lo, hi):
                if failed.is_set():
                    return
                try:
                    image = _decode_one(files[i], size_hw)
                    if image.shape != first.shape:
                        raise ValueError(
                            f"{files[i]} is {image.shape[1]}x{image.shape[0]} (WxH) but "
                            f"{files[0]} is {width}x{height}: all images must have the same "
                            f"size (pass image_size=... to resize them)"
                        )
                except ValueError:
                    failed.set()
                    raise
                out[i] = image

        if num_workers is None:
            # Small images cost mostly Python-side header parsing under the GIL: threads
            # only add contention there (32x32 JPEGs decoded ~1.5x slower with 2 threads).
            big = height * width >= 128 * 128
            workers = min(4, os.cpu_count() or 1) if big else 1
        else:
            workers = num_workers
        chunks = [(lo, min(lo + _CHUNK, len(files))) for lo in range(1, len(files), _CHUNK)]
        if workers <= 1 or len(files) < _CHUNK:
            for lo, hi in chunks:
                work(lo, hi)
                bar.update(hi - lo)
        else:
            with ThreadPoolExecutor(workers) as pool:
                futures = {pool.submit(work, lo, hi): hi - lo for lo, hi in chunks}
                for done in as_completed(futures):  # the bar moves in this thread only
                    bar.update(futures[done])
            errors = [f.exception() for f in futures]  # in file order: the first bad file
            first_error = next((e for e in errors if e is not None), None)
            if first_error is not None:
                raise first_error
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def _channel_stats(images: torch.Tensor) -> Stats:
    x = images.to(torch.float64).div_(255).transpose(0, 1).reshape(images.shape[1], -1)
    return (
        tuple(float(v) for v in x.mean(1)),
        tuple(max(float(v), 1e-6) for v in x.std(1, unbiased=False)),
    )


def _imagefolder_stats(
    root: Path,
    files: list[str],
    labels: np.ndarray,
    size_hw: tuple[int, int] | None,
    num_workers: int | None,
    progress: bool,
) -> Stats:
    key = (str(root.resolve()), len(files), files[0], files[-1], size_hw)
    with _stats_lock:
        if key in _stats_cache:
            return _stats_cache[key]
    sample = stratified_indices(labels, min(_STATS_SAMPLE, len(files)), seed=0)
    sampled = [files[i] for i in sample]
    images = _decode_images(sampled, size_hw, num_workers, progress, "sample for mean/std")
    stats = _channel_stats(images)
    with _stats_lock:
        _stats_cache[key] = stats
    return stats


def open_imagefolder(
    root: Path | None,
    base: str,
    download: bool,
    image_size: int | tuple[int, int] | None,
    num_workers: int | None,
    progress: bool = True,
) -> Source:
    """The ``base`` split (``"train"`` or ``"test"``) of the image folder ``root``: its
    files and labels; images are decoded only when fetched, under a bar on a terminal when
    ``progress``. A missing split folder is a :class:`MissingSplitError`."""
    if root is None:
        raise ValueError(
            "imagefolder needs data_dir (--data-dir DIR): a folder laid out as "
            "DIR/train/<class>/*.png|jpg and DIR/test/<class>/..."
        )
    if download:
        raise ValueError("imagefolder data cannot be downloaded; pass data_dir")
    layout = _imagefolder_layout(root)
    if base not in layout:
        extra = (
            " (class folders directly in DIR form the train split only; hold out data "
            "with val_size instead)"
            if layout.get("train") == root
            else ""
        )
        raise MissingSplitError(f"no '{base}' folder in {root.resolve()}{extra}")
    classes = sorted(set().union(*(_subdirs(p) for p in layout.values())))
    files, labels = _scan_imagefolder(layout[base], classes)
    size_hw = _size_hw(image_size)

    def fetch(idx: np.ndarray) -> torch.Tensor:
        chosen = [files[i] for i in idx]
        return _decode_images(chosen, size_hw, num_workers, progress, f"load {base} images")

    def stats(images: torch.Tensor) -> Stats:
        if tuple(classes) == CIFAR10_CLASSES and tuple(images.shape[1:]) == (3, 32, 32):
            return CIFAR_STATS["cifar10"]
        stats_root = layout.get("train", layout[base])
        if stats_root == layout[base]:
            return _imagefolder_stats(stats_root, files, labels, size_hw, num_workers, progress)
        train_files, train_labels = _scan_imagefolder(stats_root, classes)
        return _imagefolder_stats(
            stats_root, train_files, train_labels, size_hw, num_workers, progress
        )

    return Source(labels, classes, fetch, stats)
