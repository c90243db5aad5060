"""Image-classification data held whole in memory; batches are augmented on the device.

Every dataset is loaded once into an :class:`ImageDataset`: a ``(N, C, H, W)`` ``uint8``
tensor of images and an ``(N,)`` ``int64`` tensor of labels, plus class names and the
per-channel mean/std used for normalisation. :class:`BatchLoader` moves that ``uint8``
tensor to the training device once, then per batch gathers the images, applies the
standard CIFAR augmentation (random crop with 4 pixels of zero padding and a random
horizontal flip) as a handful of tensor operations on the whole batch, and normalises
to ``float32``. No per-image Python code runs during training.

Supported datasets (``load_dataset(name, ...)``):

``cifar10`` / ``cifar100``
    The "python version" distributed by the authors (and by ``torchvision``):
    ``DIR/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}`` or
    ``DIR/cifar-100-python/{train,test,meta}``. ``DIR`` may also be that folder itself.
    The files are pickles; they are read with a restricted unpickler (see
    :class:`_CifarUnpickler`) rather than through ``torchvision.datasets.CIFAR10``,
    because torchvision refuses any file whose md5 differs from the official one (so it
    cannot read test fixtures) and itself calls plain ``pickle.load``, which executes
    whatever a crafted file asks for. ``download=True`` fetches the official archive with
    torchvision's md5-checked downloader (:func:`download_cifar`).
``fashion-mnist``
    The four idx files ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``, parsed
    here with numpy (:func:`read_idx` checks magic number, dims and file length). The
    default location is Debian's ``dataset-fashion-mnist`` package directory,
    ``/usr/share/datasets/fashion-mnist``; torchvision's ``FashionMNIST/raw`` layout is
    found too.
``imagefolder``
    ``DIR/<split>/<class>/<image>`` (``.png``, ``.jpg``, ...); every image is decoded
    with Pillow to RGB and all must have the same size unless ``image_size`` asks for a
    resize. If ``DIR`` has neither a ``train`` nor a ``test`` folder but holds class
    folders directly, ``DIR`` itself is the train split (the test split then does not
    exist; hold data out with ``val_size``). Class indices follow the sorted union of
    the class-folder names of all splits, so train and test always agree. When only a
    subset is asked for, the subset of *file paths* is chosen before anything is
    decoded.

Splits: ``"train"`` and ``"test"`` are the dataset's own; ``"val"`` is a class-stratified,
seeded hold-out of ``val_size`` images of the train split (the paper's 45k/5k CIFAR
protocol is ``val_size=5000``), and ``"train"`` with the same ``val_size`` and seed is
exactly the complement. ``subset=n`` then keeps a stratified, seeded ``n`` of the
requested split. :func:`load_splits` loads train/val/test in one call, reading the files
once.

Normalisation constants: the usual published values for CIFAR-10, CIFAR-100 and
Fashion-MNIST. For an image folder whose class names are exactly CIFAR-10's and whose
images are 32x32 (the JPEG copy of CIFAR-10) the CIFAR-10 constants are used; otherwise
mean and std are measured on a fixed stratified sample of up to 1,000 images of the
*train* folder (the same numbers whichever split, subset or seed is loaded, so train and
test are normalised alike).
"""

from __future__ import annotations

import gzip
import math
import os
import pickle
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "CIFAR10_CLASSES",
    "DATASETS",
    "FASHION_MNIST_CLASSES",
    "BatchLoader",
    "ImageDataset",
    "crop_flip",
    "default_data_dir",
    "download_cifar",
    "download_fashion_mnist",
    "load_dataset",
    "load_splits",
    "read_idx",
    "stratified_indices",
]

DATASETS = ("cifar10", "cifar100", "fashion-mnist", "imagefolder")
SPLITS = ("train", "val", "test")

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "fashion-mnist": ((0.2860,), (0.3530,)),
}

#: Environment variable naming the default data directory (else ``./data``).
DATA_DIR_ENV = "ISING_QUBO_DATA_DIR"
#: Where Debian's ``dataset-fashion-mnist`` package puts the idx files.
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")

_ALIASES = {"cifar10": "cifar10", "cifar100": "cifar100", "fashionmnist": "fashion-mnist",
            "fmnist": "fashion-mnist", "imagefolder": "imagefolder"}


def default_data_dir() -> Path:
    """``$ISING_QUBO_DATA_DIR`` if set, else ``./data``: where datasets are looked for and
    downloaded to when no ``data_dir`` is given."""
    return Path(os.environ.get(DATA_DIR_ENV) or "data")


def _canonical_name(name: str) -> str:
    key = name.lower().replace("-", "").replace("_", "")
    if key not in _ALIASES:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return _ALIASES[key]


# --------------------------------------------------------------------------- selection


def stratified_indices(labels: np.ndarray | torch.Tensor | Sequence[int], n: int,
                       seed: int = 0) -> np.ndarray:
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


def _split_indices(labels: np.ndarray, part: str, val_size: int, subset: int | None,
                   seed: int) -> np.ndarray:
    """Indices into a base split (the dataset's train or test) for ``part``."""
    total = labels.size
    idx = np.arange(total)
    if part in ("train", "val") and val_size:
        if not 0 < val_size < total:
            raise ValueError(f"val_size={val_size} must be between 1 and {total - 1} "
                             f"(the train split has {total} images)")
        val = stratified_indices(labels, val_size, seed)
        idx = val if part == "val" else np.setdiff1d(idx, val, assume_unique=True)
    elif part == "val":
        raise ValueError("split='val' is held out of the train split: pass val_size > 0")
    if subset is not None:
        if isinstance(subset, bool) or not isinstance(subset, (int, np.integer)) or subset < 1:
            raise ValueError(f"subset must be a positive integer, got {subset!r}")
        if subset > idx.size:
            raise ValueError(f"subset={subset} is larger than the {part} split "
                             f"({idx.size} images)")
        idx = idx[stratified_indices(labels[idx], subset, seed)]
    return idx


# --------------------------------------------------------------------------- dataset


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
        if not isinstance(self.images, torch.Tensor) or self.images.dtype != torch.uint8 \
                or self.images.dim() != 4:
            raise ValueError("images must be a (N, C, H, W) uint8 tensor")
        if not isinstance(self.labels, torch.Tensor) or self.labels.dim() != 1 \
                or self.labels.dtype.is_floating_point or self.labels.dtype == torch.bool:
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
        if self.labels.numel() and (int(self.labels.min()) < 0
                                    or int(self.labels.max()) >= len(self.classes)):
            raise ValueError(f"labels must lie in [0, {len(self.classes)})")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        return (f"ImageDataset(name={self.name!r}, n={len(self)}, "
                f"shape={tuple(self.images.shape[1:])}, classes={self.num_classes})")

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
        return ImageDataset(self.images[idx], self.labels[idx.to(self.labels.device)],
                            list(self.classes), self.name, self.mean, self.std)

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


# --------------------------------------------------------------------------- CIFAR


@dataclass(frozen=True)
class _CifarSpec:
    title: str
    folder: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str
    names_key: str
    label_key: str
    url: str
    md5: str


_CIFAR = {
    "cifar10": _CifarSpec(
        "CIFAR-10", "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)),
        ("test_batch",), "batches.meta", "label_names", "labels",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a"),
    "cifar100": _CifarSpec(
        "CIFAR-100", "cifar-100-python", ("train",), ("test",), "meta", "fine_label_names",
        "fine_labels", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "eb9058c3a382ffc7106e4002c42a8d85"),
}


def _numpy_pickle_globals() -> dict[tuple[str, str], object]:
    import codecs
    try:  # numpy >= 2
        from numpy._core import multiarray, numeric
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray, numeric
    table: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,  # how Python 3 pickles bytes at protocol 2
    }
    for package in ("numpy.core", "numpy._core"):  # files name either, whatever numpy reads
        table[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        table[(f"{package}.multiarray", "scalar")] = multiarray.scalar
        if hasattr(numeric, "_frombuffer"):
            table[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer
    return table


class _CifarUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild only numpy arrays, dtypes and plain Python values.

    A CIFAR batch is a dict of lists, strings and one ``uint8`` array; ``find_class`` is
    the only way a pickle can reach code, so allowing just the numpy array-reconstruction
    functions (and ``codecs.encode``) means a crafted file can at worst fail to load: it
    cannot call ``os.system`` or import anything.
    """

    _allowed: dict[tuple[str, str], object] | None = None

    def find_class(self, module: str, name: str) -> object:
        if _CifarUnpickler._allowed is None:
            _CifarUnpickler._allowed = _numpy_pickle_globals()
        try:
            return _CifarUnpickler._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name} (not a numpy array)") from None


def _read_cifar_pickle(path: Path) -> dict[str, object]:
    try:
        with open(path, "rb") as f:
            # latin1: the official files were written by Python 2; like torchvision.
            obj = _CifarUnpickler(f, encoding="latin1").load()
    except FileNotFoundError:
        raise
    except Exception as exc:  # any decoding failure of an untrusted file
        raise ValueError(f"{path}: not a readable CIFAR python batch "
                         f"({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a pickled dict, found {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _read_cifar_batch(path: Path, label_key: str, num_classes: int
                      ) -> tuple[np.ndarray, np.ndarray]:
    entry = _read_cifar_pickle(path)
    data, labels = entry.get("data"), entry.get(label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3 * 32 * 32:
        described = (f"{data.dtype} array of shape {data.shape}"
                     if isinstance(data, np.ndarray) else type(data).__name__)
        raise ValueError(f"{path}: 'data' must be a uint8 array of shape (N, 3072), "
                         f"found {described}")
    if labels is None:
        raise ValueError(f"{path}: no {label_key!r} entry")
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != data.shape[0] or labels.dtype.kind not in "iu":
        raise ValueError(f"{path}: {label_key!r} must be {data.shape[0]} integers")
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{path}: labels outside [0, {num_classes})")
    return data, labels


def _find_cifar_dir(spec: _CifarSpec, root: Path) -> Path | None:
    for candidate in (root / spec.folder, root):
        if (candidate / spec.meta).is_file() or (candidate / spec.test[0]).is_file():
            return candidate
    return None


def _cifar_missing_message(spec: _CifarSpec, root: Path, detail: str) -> str:
    return (f"{spec.title} not found: {detail}. Searched {root.resolve()} (and "
            f"{(root / spec.folder).resolve()}). Pass --data-dir DIR (data_dir=DIR in "
            f"Python) pointing at a folder containing '{spec.folder}' (the unpacked "
            f"{Path(spec.url).name}), or use --download (download=True) when online.")


def download_cifar(name: str, root: str | os.PathLike[str] | None = None) -> Path:
    """Download and unpack the official CIFAR-10/100 python archive into ``root``.

    Uses torchvision's downloader, which checks the archive's md5; returns the folder
    holding the batches. Nothing is fetched if the archive is already there and intact.
    Any failure (offline, checksum, disk) becomes a ``RuntimeError`` explaining how to
    provide the files by hand.
    """
    name = _canonical_name(name)
    if name not in _CIFAR:
        raise ValueError(f"download_cifar handles cifar10 and cifar100, not {name!r}")
    spec = _CIFAR[name]
    root = Path(root) if root is not None else default_data_dir()
    from torchvision.datasets import utils as tv_utils

    archive = Path(spec.url).name
    try:
        tv_utils.download_and_extract_archive(spec.url, download_root=str(root),
                                              filename=archive, md5=spec.md5)
    except Exception as exc:
        raise RuntimeError(
            f"could not download {spec.title} from {spec.url} into {root.resolve()} "
            f"({type(exc).__name__}: {exc}). If this machine is offline, fetch {archive} "
            f"elsewhere, unpack it so that DIR/{spec.folder} exists, and pass "
            f"--data-dir DIR (data_dir=DIR in Python).") from exc
    return root / spec.folder


def _cifar_arrays(name: str, data_dir: Path | None, base: str, download: bool
                  ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    spec = _CIFAR[name]
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    folder = _find_cifar_dir(spec, root)
    if folder is None and download:
        download_cifar(name, root)
        folder = _find_cifar_dir(spec, root)
    if folder is None:
        raise FileNotFoundError(_cifar_missing_message(
            spec, root, f"no '{spec.folder}' folder (with {spec.meta})"))
    meta_path = folder / spec.meta
    if not meta_path.is_file():
        raise FileNotFoundError(_cifar_missing_message(spec, root, f"{meta_path} is missing"))
    meta = _read_cifar_pickle(meta_path)
    names = meta.get(spec.names_key)
    if not isinstance(names, (list, tuple)) or not names:
        raise ValueError(f"{meta_path}: no {spec.names_key!r} list")
    classes = [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names]
    datas, labels = [], []
    for filename in spec.train if base == "train" else spec.test:
        path = folder / filename
        if not path.is_file():
            raise FileNotFoundError(_cifar_missing_message(spec, root, f"{path} is missing"))
        data, lab = _read_cifar_batch(path, spec.label_key, len(classes))
        datas.append(data)
        labels.append(lab)
    images = np.concatenate(datas).reshape(-1, 3, 32, 32)  # rows are R plane, G, B
    return images, np.concatenate(labels), classes


# --------------------------------------------------------------------------- Fashion-MNIST

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
        raise ValueError(f"{path}: bad idx magic number {found} (0x{found:08x}), "
                         f"expected {expected}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated header ({len(raw)} bytes, need {header})")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected_len = header + math.prod(dims)
    if len(raw) != expected_len:
        raise ValueError(f"{path}: {len(raw)} bytes but dims {dims} need {expected_len} "
                         f"({'truncated' if len(raw) < expected_len else 'trailing data'})")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def _fashion_candidates(data_dir: Path | None) -> list[Path]:
    roots = [Path(data_dir)] if data_dir is not None else [FASHION_MNIST_SYSTEM_DIR,
                                                          default_data_dir()]
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
                + "; ".join(errors) + "). If this machine is offline, copy the idx files "
                "into a folder DIR and pass --data-dir DIR (data_dir=DIR in Python); on "
                "Debian/Ubuntu, apt install dataset-fashion-mnist puts them in "
                f"{FASHION_MNIST_SYSTEM_DIR}.")
    return root


def _fashion_arrays(data_dir: Path | None, base: str, download: bool
                    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    prefix = "train" if base == "train" else "t10k"
    stems = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")

    def locate() -> tuple[Path, Path] | None:
        for directory in _fashion_candidates(data_dir):
            found = [_find_idx(directory, s) for s in stems]
            if all(found):
                return found[0], found[1]
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
            f"{FASHION_MNIST_SYSTEM_DIR}), or use --download (download=True) when online.")
    images = read_idx(paths[0], _IDX_MAGIC["images"])
    labels = read_idx(paths[1], _IDX_MAGIC["labels"])
    if images.ndim != 3:
        raise ValueError(f"{paths[0]}: expected (N, H, W) images, found dims {images.shape}")
    if labels.shape[0] != images.shape[0]:
        raise ValueError(f"{paths[1]}: {labels.shape[0]} labels for {images.shape[0]} "
                         f"images in {paths[0]}")
    if labels.size and labels.max() >= len(FASHION_MNIST_CLASSES):
        raise ValueError(f"{paths[1]}: labels outside [0, {len(FASHION_MNIST_CLASSES)})")
    return images[:, None], labels.astype(np.int64), list(FASHION_MNIST_CLASSES)


# --------------------------------------------------------------------------- image folder

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm",
                              ".pbm", ".tif", ".tiff", ".webp"})
_STATS_SAMPLE = 1000
_stats_cache: dict[tuple, tuple[tuple[float, ...], tuple[float, ...]]] = {}
_stats_lock = threading.Lock()


def _subdirs(directory: Path) -> list[str]:
    with os.scandir(directory) as it:
        return sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))


def _image_files(directory: Path) -> list[str]:
    with os.scandir(directory) as it:
        return sorted(e.path for e in it if e.is_file() and not e.name.startswith(".")
                      and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS)


def _imagefolder_layout(data_dir: Path) -> dict[str, Path]:
    """``{"train": path, "test": path}`` for the split folders that exist."""
    if not data_dir.is_dir():
        raise FileNotFoundError(
            f"image folder {data_dir.resolve()} does not exist. Pass --data-dir DIR "
            f"(data_dir=DIR in Python) pointing at a folder laid out as DIR/train/<class>/"
            f"*.png|jpg (and DIR/test/<class>/...).")
    splits = {s: data_dir / s for s in ("train", "test") if (data_dir / s).is_dir()}
    if splits:
        return splits
    # Flat layout: class folders directly in data_dir (unambiguous: no split folders).
    if any(_image_files(data_dir / c) for c in _subdirs(data_dir)):
        return {"train": data_dir}
    loose = len(_image_files(data_dir))
    found = (f"{loose} image(s) lie directly in it, without class folders (the class of an "
             f"image is the name of its folder)" if loose else "no images found")
    raise FileNotFoundError(
        f"{data_dir.resolve()}: {found}: expected DIR/train/<class>/*.png|jpg "
        f"(and DIR/test/<class>/...), or class folders directly in DIR. Pass --data-dir DIR "
        f"(data_dir=DIR in Python) pointing at such a folder.")


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
        detail = (f"it has no class folders; {loose} image(s) lie directly in it (put them in "
                  f"one folder per class: {root.name}/<class>/*.png)" if loose and not
                  _subdirs(root) else "no image files in its class folders")
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


def _decode_images(files: Sequence[str], size_hw: tuple[int, int] | None,
                   num_workers: int | None = None) -> torch.Tensor:
    """Decode ``files`` into one ``(n, 3, H, W)`` uint8 tensor, with ``num_workers``
    threads (Pillow drops the GIL while decoding pixels; default: up to 4 threads for
    images of at least 128x128, else 1).
    All images must share the first one's size unless ``size_hw`` resizes them."""
    if not files:
        raise ValueError("no images to decode")
    first = _decode_one(files[0], size_hw)
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
                        f"{files[0]} is {width}x{height}: all images must have the same size "
                        f"(pass image_size=... to resize them)")
            except ValueError:
                failed.set()
                raise
            out[i] = image

    if num_workers is None:
        # Small images cost mostly Python-side header parsing under the GIL: threads only
        # add contention there (32x32 JPEGs decoded ~1.5x slower with 2 threads).
        big = height * width >= 128 * 128
        workers = min(4, os.cpu_count() or 1) if big else 1
    else:
        workers = num_workers
    if workers <= 1 or len(files) < 256:
        work(1, len(files))
    else:
        step = math.ceil((len(files) - 1) / (4 * workers))
        with ThreadPoolExecutor(workers) as pool:
            futures = [pool.submit(work, lo, min(lo + step, len(files)))
                       for lo in range(1, len(files), step)]
            errors = [f.exception() for f in futures]
        first_error = next((e for e in errors if e is not None), None)
        if first_error is not None:
            raise first_error
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def _channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    x = images.to(torch.float64).div_(255).transpose(0, 1).reshape(images.shape[1], -1)
    return (tuple(float(v) for v in x.mean(1)),
            tuple(max(float(v), 1e-6) for v in x.std(1, unbiased=False)))


def _imagefolder_stats(root: Path, files: list[str], labels: np.ndarray,
                       size_hw: tuple[int, int] | None, num_workers: int | None
                       ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    key = (str(root.resolve()), len(files), files[0], files[-1], size_hw)
    with _stats_lock:
        if key in _stats_cache:
            return _stats_cache[key]
    sample = stratified_indices(labels, min(_STATS_SAMPLE, len(files)), seed=0)
    stats = _channel_stats(_decode_images([files[i] for i in sample], size_hw, num_workers))
    with _stats_lock:
        _stats_cache[key] = stats
    return stats


# --------------------------------------------------------------------------- loading


class _MissingSplitError(FileNotFoundError):
    """An image folder without the requested split folder."""


@dataclass
class _Source:
    """One of a dataset's own splits (train or test), not yet decoded/selected."""

    labels: np.ndarray
    classes: list[str]
    fetch: Callable[[np.ndarray], torch.Tensor]  # sorted indices -> (n, C, H, W) uint8
    stats: Callable[[torch.Tensor], tuple[tuple[float, ...], tuple[float, ...]]]


def _in_memory_source(images: np.ndarray, labels: np.ndarray, classes: list[str],
                      name: str) -> _Source:
    tensor = torch.from_numpy(np.ascontiguousarray(images))

    def fetch(idx: np.ndarray) -> torch.Tensor:
        if idx.size == tensor.shape[0]:  # whole split: indices are arange(N)
            return tensor
        return tensor[torch.from_numpy(idx)]

    return _Source(labels, classes, fetch, lambda _images: _STATS[name])


def _open_source(name: str, data_dir: str | os.PathLike[str] | None, base: str, download: bool,
                 image_size: int | tuple[int, int] | None, num_workers: int | None) -> _Source:
    root = Path(data_dir) if data_dir is not None else None
    if name in _CIFAR:
        images, labels, classes = _cifar_arrays(name, root, base, download)
        return _in_memory_source(images, labels, classes, name)
    if name == "fashion-mnist":
        images, labels, classes = _fashion_arrays(root, base, download)
        return _in_memory_source(images.copy(), labels, classes, name)
    # imagefolder
    if root is None:
        raise ValueError("imagefolder needs data_dir (--data-dir DIR): a folder laid out as "
                         "DIR/train/<class>/*.png|jpg and DIR/test/<class>/...")
    if download:
        raise ValueError("imagefolder data cannot be downloaded; pass data_dir")
    layout = _imagefolder_layout(root)
    if base not in layout:
        extra = (" (class folders directly in DIR form the train split only; hold out data "
                 "with val_size instead)" if layout.get("train") == root else "")
        raise _MissingSplitError(f"no '{base}' folder in {root.resolve()}{extra}")
    classes = sorted(set().union(*(_subdirs(p) for p in layout.values())))
    files, labels = _scan_imagefolder(layout[base], classes)
    size_hw = _size_hw(image_size)

    def fetch(idx: np.ndarray) -> torch.Tensor:
        return _decode_images([files[i] for i in idx], size_hw, num_workers)

    def stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
        if tuple(classes) == CIFAR10_CLASSES and tuple(images.shape[1:]) == (3, 32, 32):
            return _STATS["cifar10"]
        stats_root = layout.get("train", layout[base])
        if stats_root == layout[base]:
            return _imagefolder_stats(stats_root, files, labels, size_hw, num_workers)
        train_files, train_labels = _scan_imagefolder(stats_root, classes)
        return _imagefolder_stats(stats_root, train_files, train_labels, size_hw, num_workers)

    return _Source(labels, classes, fetch, stats)


def _make(source: _Source, name: str, part: str, val_size: int, subset: int | None,
          seed: int) -> ImageDataset:
    idx = _split_indices(source.labels, part, val_size, subset, seed)
    images = source.fetch(idx)
    mean, std = source.stats(images)
    return ImageDataset(images, torch.from_numpy(source.labels[idx]), list(source.classes),
                        name, mean, std)


def load_dataset(name: str, data_dir: str | os.PathLike[str] | None = None,
                 split: str = "train", download: bool = False, subset: int | None = None,
                 seed: int = 0, *, val_size: int = 0,
                 image_size: int | tuple[int, int] | None = None,
                 num_workers: int | None = None) -> ImageDataset:
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
    decoding threads for image folders.
    """
    name = _canonical_name(name)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if image_size is not None and name != "imagefolder":
        raise ValueError("image_size applies to imagefolder only")
    base = "test" if split == "test" else "train"
    source = _open_source(name, data_dir, base, download, image_size, num_workers)
    return _make(source, name, split, val_size, subset, seed)


def load_splits(name: str, data_dir: str | os.PathLike[str] | None = None, *,
                val_size: int = 0, subset: int | None = None, test_subset: int | None = None,
                seed: int = 0, download: bool = False,
                image_size: int | tuple[int, int] | None = None,
                num_workers: int | None = None) -> dict[str, ImageDataset]:
    """``{"train", "val", "test"}`` datasets, reading each of the dataset's files once.

    ``"val"`` is present only when ``val_size > 0`` (held out of the train split exactly
    as in :func:`load_dataset`); ``"test"`` only when the dataset has a test split (a flat
    image folder has none). ``subset`` applies to train, ``test_subset`` to test.
    Equal arguments give the same datasets as the corresponding :func:`load_dataset` calls.
    """
    name = _canonical_name(name)
    if image_size is not None and name != "imagefolder":
        raise ValueError("image_size applies to imagefolder only")
    train = _open_source(name, data_dir, "train", download, image_size, num_workers)
    out = {"train": _make(train, name, "train", val_size, subset, seed)}
    if val_size:
        out["val"] = _make(train, name, "val", val_size, None, seed)
    try:
        test = _open_source(name, data_dir, "test", download, image_size, num_workers)
    except _MissingSplitError:
        return out
    out["test"] = _make(test, name, "test", 0, test_subset, seed)
    return out


# --------------------------------------------------------------------------- batches


def crop_flip(images: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor,
              padding: int = 4) -> torch.Tensor:
    """Per-sample crop of the zero-padded batch, then optional horizontal flip.

    ``out[n, :, i, j] = padded[n, :, i + dy[n], j' + dx[n]]`` with ``j' = W-1-j`` where
    ``flip[n]`` else ``j``; ``padded`` is ``images`` with ``padding`` zero pixels on each
    side and ``dy, dx`` lie in ``[0, 2 * padding]``. One gather over the whole batch; any
    dtype, any device.
    """
    b, c, h, w = images.shape
    if padding:  # zero-filled copy; faster on CPU than F.pad for uint8
        padded = images.new_zeros((b, c, h + 2 * padding, w + 2 * padding))
        padded[:, :, padding:padding + h, padding:padding + w] = images
    else:
        padded = images
    wp = w + 2 * padding
    dev = images.device
    rows = dy.to(dev, torch.int64)[:, None] + torch.arange(h, device=dev)
    cols = torch.arange(w, device=dev)
    cols = dx.to(dev, torch.int64)[:, None] + torch.where(flip.to(dev)[:, None], w - 1 - cols,
                                                          cols)
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

    def __init__(self, dataset: ImageDataset, batch_size: int = 128, shuffle: bool = True,
                 augment: bool = False, device: str | torch.device = "cpu", seed: int = 0,
                 drop_last: bool = False, channels_last: bool = False, *, rank: int = 0,
                 world_size: int = 1, padding: int = 4, flip: bool = True,
                 even: bool = True) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, "
                             f"world_size={world_size}")
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
                x = crop_flip(x, plan["dy"][start:stop], plan["dx"][start:stop],
                              plan["flip"][start:stop], self.padding)
            yield self.normalize(x), self.labels.index_select(0, idx)
