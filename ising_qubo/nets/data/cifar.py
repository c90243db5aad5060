"""CIFAR-10 and CIFAR-100: reading the authors' "python version" safely, and downloading it.

The files are ``DIR/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}`` or
``DIR/cifar-100-python/{train,test,meta}``; ``DIR`` may also be that folder itself.
They are pickles, read with a restricted unpickler (see :class:`_CifarUnpickler`) rather
than through ``torchvision.datasets.CIFAR10``, because torchvision refuses any file whose
md5 differs from the official one (so it cannot read test fixtures) and itself calls plain
``pickle.load``, which executes whatever a crafted file asks for. ``download=True`` fetches
the official archive with torchvision's md5-checked downloader (:func:`download_cifar`).
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ising_qubo._progress import progress_bar
from ising_qubo.nets.data.catalog import canonical_name, default_data_dir
from ising_qubo.nets.data.dataset import Source, Stats, in_memory_source

__all__ = ["CIFAR10_CLASSES", "CIFAR_STATS", "download_cifar", "open_cifar"]

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

#: The usual published per-channel ``(mean, std)``.
CIFAR_STATS: dict[str, Stats] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


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
        "CIFAR-10",
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        ("test_batch",),
        "batches.meta",
        "label_names",
        "labels",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a",
    ),
    "cifar100": _CifarSpec(
        "CIFAR-100",
        "cifar-100-python",
        ("train",),
        ("test",),
        "meta",
        "fine_label_names",
        "fine_labels",
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "eb9058c3a382ffc7106e4002c42a8d85",
    ),
}


def _numpy_pickle_globals() -> dict[tuple[str, str], object]:
    import codecs
    import importlib

    # by module name: mypy takes two `from ... import` of one name for a redefinition
    try:  # numpy >= 2
        multiarray = importlib.import_module("numpy._core.multiarray")
        numeric = importlib.import_module("numpy._core.numeric")
    except ImportError:  # pragma: no cover - numpy 1.x
        multiarray = importlib.import_module("numpy.core.multiarray")
        numeric = importlib.import_module("numpy.core.numeric")
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
                f"refusing to load global {module}.{name} (not a numpy array)"
            ) from None


def _read_cifar_pickle(path: Path) -> dict[str, object]:
    try:
        with open(path, "rb") as f:
            # latin1: the official files were written by Python 2; like torchvision.
            obj = _CifarUnpickler(f, encoding="latin1").load()
    except FileNotFoundError:
        raise
    except Exception as exc:  # any decoding failure of an untrusted file
        raise ValueError(
            f"{path}: not a readable CIFAR python batch ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a pickled dict, found {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _read_cifar_batch(
    path: Path, label_key: str, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    entry = _read_cifar_pickle(path)
    data, labels = entry.get("data"), entry.get(label_key)
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != 3 * 32 * 32
    ):
        described = (
            f"{data.dtype} array of shape {data.shape}"
            if isinstance(data, np.ndarray)
            else type(data).__name__
        )
        raise ValueError(
            f"{path}: 'data' must be a uint8 array of shape (N, 3072), found {described}"
        )
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
    return (
        f"{spec.title} not found: {detail}. Searched {root.resolve()} (and "
        f"{(root / spec.folder).resolve()}). Pass --data-dir DIR (data_dir=DIR in "
        f"Python) pointing at a folder containing '{spec.folder}' (the unpacked "
        f"{Path(spec.url).name}), or use --download (download=True) when online."
    )


def download_cifar(name: str, root: str | os.PathLike[str] | None = None) -> Path:
    """Download and unpack the official CIFAR-10/100 python archive into ``root``.

    Uses torchvision's downloader, which checks the archive's md5; returns the folder
    holding the batches. Nothing is fetched if the archive is already there and intact.
    Any failure (offline, checksum, disk) becomes a ``RuntimeError`` explaining how to
    provide the files by hand.
    """
    name = canonical_name(name)
    if name not in _CIFAR:
        raise ValueError(f"download_cifar handles cifar10 and cifar100, not {name!r}")
    spec = _CIFAR[name]
    root = Path(root) if root is not None else default_data_dir()
    from torchvision.datasets import utils as tv_utils

    archive = Path(spec.url).name
    try:
        tv_utils.download_and_extract_archive(
            spec.url, download_root=str(root), filename=archive, md5=spec.md5
        )
    except Exception as exc:
        raise RuntimeError(
            f"could not download {spec.title} from {spec.url} into {root.resolve()} "
            f"({type(exc).__name__}: {exc}). If this machine is offline, fetch {archive} "
            f"elsewhere, unpack it so that DIR/{spec.folder} exists, and pass "
            f"--data-dir DIR (data_dir=DIR in Python)."
        ) from exc
    return root / spec.folder


def _cifar_arrays(
    name: str, data_dir: Path | None, base: str, download: bool, progress: bool = False
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    spec = _CIFAR[name]
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    folder = _find_cifar_dir(spec, root)
    if folder is None and download:
        download_cifar(name, root)
        folder = _find_cifar_dir(spec, root)
    if folder is None:
        raise FileNotFoundError(
            _cifar_missing_message(spec, root, f"no '{spec.folder}' folder (with {spec.meta})")
        )
    meta_path = folder / spec.meta
    if not meta_path.is_file():
        raise FileNotFoundError(_cifar_missing_message(spec, root, f"{meta_path} is missing"))
    meta = _read_cifar_pickle(meta_path)
    names = meta.get(spec.names_key)
    if not isinstance(names, (list, tuple)) or not names:
        raise ValueError(f"{meta_path}: no {spec.names_key!r} list")
    classes = [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names]
    datas, labels = [], []
    filenames = spec.train if base == "train" else spec.test
    for filename in progress_bar(
        filenames, progress=progress, desc=f"read {spec.title} {base}", unit="file", leave=False
    ):
        path = folder / filename
        if not path.is_file():
            raise FileNotFoundError(_cifar_missing_message(spec, root, f"{path} is missing"))
        data, lab = _read_cifar_batch(path, spec.label_key, len(classes))
        datas.append(data)
        labels.append(lab)
    images = np.concatenate(datas).reshape(-1, 3, 32, 32)  # rows are R plane, G, B
    return images, np.concatenate(labels), classes


def open_cifar(
    name: str, data_dir: Path | None, base: str, download: bool, progress: bool = True
) -> Source:
    """The ``base`` split (``"train"`` or ``"test"``) of ``cifar10``/``cifar100``, read whole
    (under a bar over its batch files on a terminal when ``progress``); ``download`` fetches
    the archive when the files are missing."""
    images, labels, classes = _cifar_arrays(name, data_dir, base, download, progress)
    return in_memory_source(images, labels, classes, CIFAR_STATS[name])
