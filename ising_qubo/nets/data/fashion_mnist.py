"""Fashion-MNIST: reading the idx files with numpy, and downloading them.

The four files are ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``
(:func:`read_idx` checks magic number, dims and file length). The default location is
Debian's ``dataset-fashion-mnist`` package directory, ``/usr/share/datasets/fashion-mnist``;
torchvision's ``FashionMNIST/raw`` layout is found too.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

from ising_qubo._progress import progress_bar
from ising_qubo.nets.data.catalog import default_data_dir
from ising_qubo.nets.data.dataset import Source, Stats, in_memory_source

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_STATS",
    "FASHION_MNIST_SYSTEM_DIR",
    "download_fashion_mnist",
    "open_fashion_mnist",
    "read_idx",
]

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

#: The usual published ``(mean, std)``.
FASHION_MNIST_STATS: Stats = ((0.2860,), (0.3530,))

#: Where Debian's ``dataset-fashion-mnist`` package puts the idx files.
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")

_IDX_MAGIC = {"images": 2051, "labels": 2049}
_FASHION_MIRRORS = (
    "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
)
_FASHION_FILES = {  # md5 of the .gz files, as published (and used by torchvision)
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}


def read_idx(path: str | os.PathLike[str], magic: int | None = None) -> np.ndarray:
    """Read an unsigned-byte idx file (gzipped or not) into a numpy ``uint8`` array.

    Checks the magic number (``0x0000 08 ndim``; exactly ``magic`` if given, e.g. 2051
    for images, 2049 for labels), that the big-endian dimensions are complete, and that
    the file holds exactly ``prod(dims)`` bytes of data; otherwise ``ValueError`` naming
    the file.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"{path}: corrupted gzip data ({exc})") from exc
    if len(raw) < 4:
        raise ValueError(f"{path}: {len(raw)} bytes, too short for an idx file")
    found = int.from_bytes(raw[:4], "big")
    ndim = raw[3]
    if raw[:3] != b"\x00\x00\x08" or ndim == 0 or (magic is not None and found != magic):
        expected = f"{magic} (0x{magic:08x})" if magic is not None else "0x000008NN"
        raise ValueError(
            f"{path}: bad idx magic number {found} (0x{found:08x}), expected {expected}"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated header ({len(raw)} bytes, need {header})")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected_len = header + math.prod(dims)
    if len(raw) != expected_len:
        raise ValueError(
            f"{path}: {len(raw)} bytes but dims {dims} need {expected_len} "
            f"({'truncated' if len(raw) < expected_len else 'trailing data'})"
        )
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def _fashion_candidates(data_dir: Path | None) -> list[Path]:
    roots = (
        [Path(data_dir)] if data_dir is not None else [FASHION_MNIST_SYSTEM_DIR, default_data_dir()]
    )
    return [r / sub for r in roots for sub in ("", "fashion-mnist", "FashionMNIST/raw")]


def _find_idx(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def download_fashion_mnist(root: str | os.PathLike[str] | None = None) -> Path:
    """Download the four Fashion-MNIST ``.gz`` idx files (md5-checked) into ``root``."""
    root = Path(root) if root is not None else default_data_dir() / "fashion-mnist"
    from torchvision.datasets import utils as tv_utils

    for filename, md5 in _FASHION_FILES.items():
        errors = []
        for mirror in _FASHION_MIRRORS:
            try:
                tv_utils.download_url(mirror + filename, str(root), filename=filename, md5=md5)
                break
            except Exception as exc:
                errors.append(f"{mirror}{filename}: {type(exc).__name__}: {exc}")
        else:
            raise RuntimeError(
                f"could not download Fashion-MNIST into {root.resolve()} ("
                + "; ".join(errors)
                + "). If this machine is offline, copy the idx files "
                "into a folder DIR and pass --data-dir DIR (data_dir=DIR in Python); on "
                "Debian/Ubuntu, apt install dataset-fashion-mnist puts them in "
                f"{FASHION_MNIST_SYSTEM_DIR}."
            )
    return root


def _fashion_arrays(
    data_dir: Path | None, base: str, download: bool, progress: bool = False
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    prefix = "train" if base == "train" else "t10k"
    stems = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")

    def locate() -> tuple[Path, Path] | None:
        for directory in _fashion_candidates(data_dir):
            images, labels = (_find_idx(directory, s) for s in stems)
            if images is not None and labels is not None:
                return images, labels
        return None

    paths = locate()
    if paths is None and download:
        target = Path(data_dir) if data_dir is not None else default_data_dir() / "fashion-mnist"
        download_fashion_mnist(target)
        paths = locate()
    if paths is None:
        searched = ", ".join(str(d.resolve()) for d in _fashion_candidates(data_dir))
        raise FileNotFoundError(
            f"Fashion-MNIST not found: no {stems[0]}[.gz] and {stems[1]}[.gz] in any of "
            f"{searched}. Pass --data-dir DIR (data_dir=DIR in Python) pointing at a folder "
            f"containing them (apt install dataset-fashion-mnist puts them in "
            f"{FASHION_MNIST_SYSTEM_DIR}), or use --download (download=True) when online."
        )
    with progress_bar(
        total=2, progress=progress, desc=f"read Fashion-MNIST {base}", unit="file", leave=False
    ) as bar:
        images = read_idx(paths[0], _IDX_MAGIC["images"])
        bar.update(1)
        labels = read_idx(paths[1], _IDX_MAGIC["labels"])
        bar.update(1)
    if images.ndim != 3:
        raise ValueError(f"{paths[0]}: expected (N, H, W) images, found dims {images.shape}")
    if labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"{paths[1]}: {labels.shape[0]} labels for {images.shape[0]} images in {paths[0]}"
        )
    if labels.size and labels.max() >= len(FASHION_MNIST_CLASSES):
        raise ValueError(f"{paths[1]}: labels outside [0, {len(FASHION_MNIST_CLASSES)})")
    return images[:, None], labels.astype(np.int64), list(FASHION_MNIST_CLASSES)


def open_fashion_mnist(
    data_dir: Path | None, base: str, download: bool, progress: bool = True
) -> Source:
    """The ``base`` split (``"train"`` or ``"test"``) of Fashion-MNIST, read whole (from
    ``data_dir``, else the system and default folders; under a bar on a terminal when
    ``progress``); ``download`` fetches missing files."""
    images, labels, classes = _fashion_arrays(data_dir, base, download, progress)
    return in_memory_source(images.copy(), labels, classes, FASHION_MNIST_STATS)
