"""Which datasets exist, under which names, and where they are looked for by default."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DATASETS", "DATA_DIR_ENV", "canonical_name", "default_data_dir"]

DATASETS = ("cifar10", "cifar100", "fashion-mnist", "imagefolder")

#: Environment variable naming the default data directory (else ``./data``).
DATA_DIR_ENV = "ISING_QUBO_DATA_DIR"

_ALIASES = {
    "cifar10": "cifar10",
    "cifar100": "cifar100",
    "fashionmnist": "fashion-mnist",
    "fmnist": "fashion-mnist",
    "imagefolder": "imagefolder",
}


def default_data_dir() -> Path:
    """``$ISING_QUBO_DATA_DIR`` if set, else ``./data``: where datasets are looked for and
    downloaded to when no ``data_dir`` is given."""
    return Path(os.environ.get(DATA_DIR_ENV) or "data")


def canonical_name(name: str) -> str:
    """The dataset's name in :data:`DATASETS` (case, ``-`` and ``_`` ignored; ``fmnist`` is
    Fashion-MNIST), else a ValueError listing them."""
    key = name.lower().replace("-", "").replace("_", "")
    if key not in _ALIASES:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return _ALIASES[key]
