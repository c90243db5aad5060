"""Image-classification data held whole in memory; batches are augmented on the device.

Every dataset is loaded once into an :class:`ImageDataset`: a ``(N, C, H, W)`` ``uint8``
tensor of images and an ``(N,)`` ``int64`` tensor of labels, plus class names and the
per-channel mean/std used for normalisation. :class:`BatchLoader` moves the images to the
training device once and augments and normalises each batch there.

Supported datasets (``load_dataset(name, ...)``), one module each:

``cifar10`` / ``cifar100`` (:mod:`.cifar`)
    The authors' "python version", read with a restricted unpickler; ``download=True``
    fetches the md5-checked official archive.
``fashion-mnist`` (:mod:`.fashion_mnist`)
    The four idx files, by default from Debian's ``/usr/share/datasets/fashion-mnist``.
``imagefolder`` (:mod:`.image_folder`)
    ``DIR/<split>/<class>/<image>``, or class folders directly in ``DIR`` (train only).

Splits (:mod:`.splits`): ``"train"`` and ``"test"`` are the dataset's own; ``"val"`` is a
class-stratified, seeded hold-out of ``val_size`` images of the train split, and
``"train"`` with the same ``val_size`` and seed is exactly its complement; ``subset=n``
keeps a stratified, seeded ``n`` of the requested split. :func:`load_splits` loads
train/val/test in one call, reading the files once (:mod:`.loading`).

Normalisation constants: the usual published values for CIFAR-10, CIFAR-100 and
Fashion-MNIST; measured on a fixed sample of the train folder for an image folder (the
CIFAR-10 values for a 32x32 JPEG copy of CIFAR-10).
"""

from ising_qubo.nets.data.catalog import DATA_DIR_ENV, DATASETS, default_data_dir
from ising_qubo.nets.data.cifar import CIFAR10_CLASSES, download_cifar
from ising_qubo.nets.data.dataset import ImageDataset
from ising_qubo.nets.data.fashion_mnist import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_SYSTEM_DIR,
    download_fashion_mnist,
    read_idx,
)
from ising_qubo.nets.data.image_folder import IMAGE_EXTENSIONS
from ising_qubo.nets.data.loader import BatchLoader, crop_flip
from ising_qubo.nets.data.loading import load_dataset, load_splits
from ising_qubo.nets.data.splits import SPLITS, stratified_indices

__all__ = [
    "CIFAR10_CLASSES",
    "DATASETS",
    "DATA_DIR_ENV",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_SYSTEM_DIR",
    "IMAGE_EXTENSIONS",
    "SPLITS",
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
