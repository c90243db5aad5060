"""Data loading: tiny files in each real on-disk format, stratified selection, BatchLoader."""

from __future__ import annotations

import gzip
import os
import pickle
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_image_folder as write_imagefolder
from PIL import Image
from timing import cpu_timed

from ising_qubo.nets import data as D
from ising_qubo.nets.data import (
    CIFAR10_CLASSES,
    FASHION_MNIST_CLASSES,
    BatchLoader,
    ImageDataset,
    crop_flip,
    download_cifar,
    image_folder,
    load_dataset,
    load_splits,
    read_idx,
    stratified_indices,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --------------------------------------------------------------------------- writers


def _dump(path: Path, obj: object, protocol: int = 2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=protocol))


def write_cifar10(root: Path, per_batch: int = 20, n_test: int = 30, seed: int = 0) -> dict:
    """cifar-10-batches-py as the authors' files read with encoding='bytes': byte keys."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for i in range(1, 6):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch)
        arrays[f"data_batch_{i}"] = (data, labels)
        _dump(
            folder / f"data_batch_{i}",
            {
                b"batch_label": b"training batch",
                b"data": data,
                b"labels": [int(v) for v in labels],
                b"filenames": [b"x.png"] * per_batch,
            },
        )
    data = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    labels = rng.integers(0, 10, n_test)
    arrays["test_batch"] = (data, labels)
    _dump(folder / "test_batch", {b"data": data, b"labels": [int(v) for v in labels]})
    _dump(
        folder / "batches.meta",
        {
            b"label_names": [c.encode() for c in CIFAR10_CLASSES],
            b"num_cases_per_batch": per_batch,
            b"num_vis": 3072,
        },
    )
    return arrays


def write_cifar100(root: Path, n_train: int = 300, n_test: int = 100) -> dict:
    """cifar-100-python with str keys (as the files read with encoding='latin1')."""
    rng = np.random.default_rng(1)
    folder = root / "cifar-100-python"
    out = {}
    for part, n in (("train", n_train), ("test", n_test)):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine = rng.integers(0, 100, n)
        out[part] = (data, fine)
        _dump(
            folder / part,
            {
                "data": data,
                "fine_labels": [int(v) for v in fine],
                "coarse_labels": [int(v) // 5 for v in fine],
            },
            protocol=4,
        )
    _dump(
        folder / "meta",
        {
            "fine_label_names": [f"class{i:02d}" for i in range(100)],
            "coarse_label_names": [f"super{i}" for i in range(20)],
        },
    )
    return out


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    dims = np.asarray(array.shape, dtype=">u4").tobytes()
    return magic.to_bytes(4, "big") + dims + np.ascontiguousarray(array, np.uint8).tobytes()


def write_fashion(
    directory: Path, n_train: int = 40, n_test: int = 20, gz: bool = True, seed: int = 0
) -> dict:
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        out[prefix] = (images, labels)
        for kind, arr, magic in (("images-idx3", images, 2051), ("labels-idx1", labels, 2049)):
            raw = idx_bytes(arr, magic)
            name = f"{prefix}-{kind}-ubyte"
            if gz:
                (directory / (name + ".gz")).write_bytes(gzip.compress(raw))
            else:
                (directory / name).write_bytes(raw)
    return out


# --------------------------------------------------------------------------- selection


def test_stratified_indices_exact_and_proportional():
    rng = np.random.default_rng(0)
    labels = rng.choice(7, size=503, p=[0.3, 0.2, 0.2, 0.1, 0.1, 0.05, 0.05])
    counts = np.bincount(labels, minlength=7)
    for n in (0, 1, 7, 50, 250, 502, 503):
        idx = stratified_indices(labels, n, seed=3)
        assert idx.size == n and np.all(np.diff(idx) > 0)
        got = np.bincount(labels[idx], minlength=7)
        quota = counts * n / labels.size
        assert np.all(got >= np.floor(quota)) and np.all(got <= np.ceil(quota))
    assert np.array_equal(stratified_indices(labels, 100, 5), stratified_indices(labels, 100, 5))
    assert not np.array_equal(
        stratified_indices(labels, 100, 5), stratified_indices(labels, 100, 6)
    )
    with pytest.raises(ValueError):
        stratified_indices(labels, 504)


def _toy(n=60, classes=3, channels=3, size=(5, 4), seed=0) -> ImageDataset:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, channels, *size), generator=g, dtype=torch.uint8)
    labels = torch.arange(n) % classes
    return ImageDataset(
        images,
        labels,
        [f"c{i}" for i in range(classes)],
        "toy",
        (0.5,) * channels,
        (0.25,) * channels,
    )


def test_image_dataset_properties_subset_split():
    ds = _toy()
    assert (len(ds), ds.num_classes, ds.in_channels, ds.image_size) == (60, 3, 3, (5, 4))
    sub = ds.subset(30, seed=1)
    assert torch.bincount(sub.labels).tolist() == [10, 10, 10]
    assert torch.equal(sub.images, ds.subset(30, seed=1).images)
    with pytest.raises(ValueError):
        ds.subset(61)
    train, val = ds.split(12, seed=2)
    assert (len(train), len(val)) == (48, 12)
    assert torch.bincount(val.labels).tolist() == [4, 4, 4]
    # disjoint and complete: every original image appears exactly once
    rows = {tuple(x.flatten().tolist()) for x in torch.cat([train.images, val.images])}
    assert len(rows) == 60 and rows == {tuple(x.flatten().tolist()) for x in ds.images}
    with pytest.raises(ValueError):
        ImageDataset(ds.images.float(), ds.labels, ds.classes, "x", ds.mean, ds.std)
    with pytest.raises(ValueError):
        ImageDataset(ds.images, ds.labels + 3, ds.classes, "x", ds.mean, ds.std)
    with pytest.raises(ValueError):
        ImageDataset(ds.images, ds.labels, ds.classes, "x", (0.5,), (0.25,))


# --------------------------------------------------------------------------- CIFAR


def test_cifar10_round_trip(tmp_path):
    arrays = write_cifar10(tmp_path)
    train = load_dataset("cifar10", tmp_path)
    data = np.concatenate([arrays[f"data_batch_{i}"][0] for i in range(1, 6)])
    labels = np.concatenate([arrays[f"data_batch_{i}"][1] for i in range(1, 6)])
    assert train.images.shape == (100, 3, 32, 32) and train.images.dtype == torch.uint8
    assert np.array_equal(train.images.numpy(), data.reshape(-1, 3, 32, 32))
    assert np.array_equal(train.labels.numpy(), labels) and train.labels.dtype == torch.int64
    # channel 0 is the first 1024 bytes of a row (the red plane), row-major
    assert train.images[3, 0, 1, 2] == data[3, 32 + 2]
    assert train.images[3, 2, 31, 31] == data[3, 3071]
    assert train.classes == list(CIFAR10_CLASSES) and train.name == "cifar10"
    assert train.mean == (0.4914, 0.4822, 0.4465) and train.std == (0.2470, 0.2435, 0.2616)
    test = load_dataset("cifar10", str(tmp_path), split="test")
    assert np.array_equal(test.images.numpy(), arrays["test_batch"][0].reshape(-1, 3, 32, 32))
    # data_dir may name the batches folder itself
    direct = load_dataset("cifar10", tmp_path / "cifar-10-batches-py", split="test")
    assert torch.equal(direct.images, test.images)


def test_cifar_legacy_numpy_core_pickles(tmp_path):
    """The official files name numpy.core.multiarray (numpy 1); numpy 2 calls it _core."""
    write_cifar10(tmp_path, per_batch=4, n_test=6)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    raw = path.read_bytes()
    assert b"numpy._core.multiarray\n_reconstruct" in raw
    path.write_bytes(raw.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"))
    assert len(load_dataset("cifar10", tmp_path, split="test")) == 6


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar_pickle_cannot_run_code(tmp_path):
    write_cifar10(tmp_path, per_batch=4, n_test=6)
    marker = tmp_path / "pwned"
    _dump(tmp_path / "cifar-10-batches-py" / "test_batch", {b"data": _Evil(marker), b"labels": [0]})
    with pytest.raises(ValueError, match="test_batch.*refusing to load global"):
        load_dataset("cifar10", tmp_path, split="test")
    assert not marker.exists()


def test_cifar_bad_contents_name_the_file(tmp_path):
    write_cifar10(tmp_path, per_batch=4, n_test=6)
    batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    _dump(batch, {b"data": np.zeros((6, 100), np.uint8), b"labels": [0] * 6})
    with pytest.raises(ValueError, match=r"test_batch.*\(N, 3072\)"):
        load_dataset("cifar10", tmp_path, split="test")
    _dump(batch, {b"data": np.zeros((6, 3072), np.uint8), b"labels": [0] * 5})
    with pytest.raises(ValueError, match="test_batch"):
        load_dataset("cifar10", tmp_path, split="test")
    _dump(batch, {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]})
    with pytest.raises(ValueError, match="test_batch.*outside"):
        load_dataset("cifar10", tmp_path, split="test")
    batch.write_bytes(b"\x80\x02garbage")
    with pytest.raises(ValueError, match="test_batch"):
        load_dataset("cifar10", tmp_path, split="test")


def test_cifar_missing_names_directory_and_flags(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("cifar10", missing)
    message = str(info.value)
    assert str(missing.resolve()) in message and "--data-dir" in message
    assert "cifar-10-batches-py" in message and "--download" in message
    write_cifar10(tmp_path, per_batch=4, n_test=6)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3.*--data-dir"):
        load_dataset("cifar10", tmp_path)
    with pytest.raises(FileNotFoundError, match="cifar-100-python"):
        load_dataset("cifar100", tmp_path)


def test_cifar_download_offline_is_a_clear_error(tmp_path, monkeypatch):
    from torchvision.datasets import utils as tv_utils

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", offline)
    with pytest.raises(RuntimeError) as info:
        load_dataset("cifar10", tmp_path, download=True)
    message = str(info.value)
    assert "cifar-10-python.tar.gz" in message and "--data-dir" in message
    assert str(tmp_path.resolve()) in message and "URLError" in message
    assert isinstance(info.value.__cause__, urllib.error.URLError)
    monkeypatch.setattr(
        tv_utils,
        "download_and_extract_archive",
        lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")),
    )
    with pytest.raises(RuntimeError, match="CIFAR-100.*disk full"):
        download_cifar("cifar100", tmp_path)


def test_cifar_download_success_path(tmp_path, monkeypatch):
    from torchvision.datasets import utils as tv_utils

    calls = []

    def fake_download(url, download_root, filename=None, md5=None, **kwargs):
        calls.append((url, filename, md5))
        write_cifar10(Path(download_root), per_batch=4, n_test=6)

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", fake_download)
    ds = load_dataset("cifar10", tmp_path, split="test", download=True)
    assert len(ds) == 6 and calls[0][0].startswith("https://") and calls[0][2]
    load_dataset("cifar10", tmp_path, split="test", download=True)
    assert len(calls) == 1  # present now: not fetched again


def test_cifar100_round_trip(tmp_path):
    arrays = write_cifar100(tmp_path)
    ds = load_dataset("cifar100", tmp_path, split="test")
    assert np.array_equal(ds.images.numpy(), arrays["test"][0].reshape(-1, 3, 32, 32))
    assert np.array_equal(ds.labels.numpy(), arrays["test"][1])
    assert ds.num_classes == 100 and ds.classes[7] == "class07"
    assert ds.mean == (0.5071, 0.4865, 0.4409) and ds.std == (0.2673, 0.2564, 0.2762)


def test_validation_split_is_complement_and_stratified(tmp_path):
    write_cifar100(tmp_path, n_train=300)
    full = load_dataset("cifar100", tmp_path)
    train = load_dataset("cifar100", tmp_path, val_size=50, seed=4)
    val = load_dataset("cifar100", tmp_path, split="val", val_size=50, seed=4)
    assert (len(train), len(val)) == (250, 50)
    both = torch.cat([train.images, val.images]).reshape(300, -1)
    # complementary: together exactly the original train split
    original = {bytes(r.numpy()) for r in full.images.reshape(300, -1)}
    assert {bytes(r.numpy()) for r in both} == original and len(original) == 300
    # the same selection as splitting the loaded train split in memory
    mem_train, mem_val = full.split(50, seed=4)
    assert torch.equal(mem_train.images, train.images) and torch.equal(mem_val.labels, val.labels)
    again = load_dataset("cifar100", tmp_path, split="val", val_size=50, seed=4)
    assert torch.equal(again.images, val.images)
    other = load_dataset("cifar100", tmp_path, split="val", val_size=50, seed=5)
    assert not torch.equal(other.images, val.images)
    splits = load_splits("cifar100", tmp_path, val_size=50, seed=4, subset=100, test_subset=40)
    assert set(splits) == {"train", "val", "test"}
    assert torch.equal(splits["val"].images, val.images)
    sub = load_dataset("cifar100", tmp_path, val_size=50, seed=4, subset=100)
    assert torch.equal(splits["train"].images, sub.images) and len(splits["test"]) == 40
    assert set(load_splits("cifar100", tmp_path)) == {"train", "test"}
    with pytest.raises(ValueError, match="val_size"):
        load_dataset("cifar100", tmp_path, split="val")
    with pytest.raises(ValueError, match="subset"):
        load_dataset("cifar100", tmp_path, val_size=50, subset=251)


def test_subset_is_stratified(tmp_path):
    write_cifar10(tmp_path, per_batch=40, n_test=6)
    full = load_dataset("cifar10", tmp_path)
    ds = load_dataset("cifar10", tmp_path, subset=50, seed=1)
    counts = torch.bincount(full.labels, minlength=10).double()
    got = torch.bincount(ds.labels, minlength=10).double()
    assert len(ds) == 50 and torch.all((got - counts * 50 / 200).abs() < 1)
    assert torch.equal(full.subset(50, seed=1).images, ds.images)
    with pytest.raises(ValueError, match="larger"):
        load_dataset("cifar10", tmp_path, subset=201)


def test_default_data_dir_from_environment(tmp_path, monkeypatch):
    write_cifar10(tmp_path, per_batch=4, n_test=6)
    monkeypatch.setenv(D.DATA_DIR_ENV, str(tmp_path))
    assert len(load_dataset("cifar10", split="test")) == 6


# --------------------------------------------------------------------------- Fashion-MNIST


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_round_trip(tmp_path, gz):
    arrays = write_fashion(tmp_path, gz=gz)
    train = load_dataset("fashion-mnist", tmp_path)
    test = load_dataset("fashion_mnist", tmp_path, split="test")
    assert train.images.shape == (40, 1, 28, 28) and test.images.shape == (20, 1, 28, 28)
    assert np.array_equal(train.images[:, 0].numpy(), arrays["train"][0])
    assert np.array_equal(test.labels.numpy(), arrays["t10k"][1])
    assert train.classes == list(FASHION_MNIST_CLASSES) and train.in_channels == 1
    assert train.mean == (0.2860,) and train.std == (0.3530,)


def test_fashion_mnist_torchvision_layout(tmp_path):
    write_fashion(tmp_path / "FashionMNIST" / "raw")
    assert len(load_dataset("fashion-mnist", tmp_path, split="test")) == 20


def test_read_idx_rejects_corruption(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    good = idx_bytes(images, 2051)
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(good)
    assert np.array_equal(read_idx(path, 2051), images)
    cases = {
        "wrong magic": (idx_bytes(images, 2049), "magic number 2049"),
        "float type": (b"\x00\x00\x0d\x03" + good[4:], "magic"),
        "truncated data": (good[:-5], "truncated"),
        "truncated header": (good[:9], "truncated header"),
        "trailing": (good + b"\x00", "trailing"),
        "empty": (b"", "too short"),
    }
    for what, (raw, pattern) in cases.items():
        path.write_bytes(raw)
        with pytest.raises(ValueError, match=pattern) as info:
            read_idx(path, 2051)
        assert str(path) in str(info.value), what
    gz_path = tmp_path / "x-idx3-ubyte.gz"
    gz_path.write_bytes(gzip.compress(good)[:-10])
    with pytest.raises(ValueError, match="gzip") as info:
        read_idx(gz_path)
    assert str(gz_path) in str(info.value)


def test_fashion_mnist_corrupt_and_missing(tmp_path):
    write_fashion(tmp_path, gz=False)
    labels = tmp_path / "t10k-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:-3])
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.*truncated"):
        load_dataset("fashion-mnist", tmp_path, split="test")
    labels.write_bytes(idx_bytes(np.zeros(19, np.uint8), 2049))
    with pytest.raises(ValueError, match="19 labels for 20 images"):
        load_dataset("fashion-mnist", tmp_path, split="test")
    images = tmp_path / "train-images-idx3-ubyte"
    images.write_bytes(idx_bytes(np.zeros(40, np.uint8), 2049))
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.*magic"):
        load_dataset("fashion-mnist", tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("fashion-mnist", empty)
    assert str(empty.resolve()) in str(info.value) and "--data-dir" in str(info.value)


def test_fashion_mnist_download_offline(tmp_path, monkeypatch):
    from torchvision.datasets import utils as tv_utils

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(tv_utils, "download_url", offline)
    with pytest.raises(RuntimeError) as info:
        load_dataset("fashion-mnist", tmp_path, download=True)
    message = str(info.value)
    assert "--data-dir" in message and "train-images-idx3-ubyte.gz" in message
    assert "github.com/zalandoresearch" in message


# --------------------------------------------------------------------------- image folder


def test_imagefolder_png_round_trip(tmp_path):
    written = write_imagefolder(tmp_path)
    train = load_dataset("imagefolder", tmp_path)
    assert train.images.shape == (15, 3, 6, 8) and train.classes == ["ant", "bee", "cat"]
    expected = np.stack([p for _, p in written["train"]]).transpose(0, 3, 1, 2)
    assert np.array_equal(train.images.numpy(), expected)
    assert train.labels.tolist() == [0] * 4 + [1] * 5 + [2] * 6
    # statistics measured on the train images (all of them: fewer than the sample size)
    x = expected.astype(np.float64) / 255
    assert np.allclose(train.mean, x.mean(axis=(0, 2, 3)))
    assert np.allclose(train.std, x.std(axis=(0, 2, 3)))
    test = load_dataset("imagefolder", tmp_path, split="test")
    assert len(test) == 6 and test.mean == train.mean and test.std == train.std


def test_imagefolder_modes_jpeg_and_classes(tmp_path):
    write_imagefolder(tmp_path, per_class=(2, 2, 2), test_per_class=(1, 1, 0))
    grey = np.arange(48, dtype=np.uint8).reshape(6, 8)
    Image.fromarray(grey, "L").save(tmp_path / "train" / "bee" / "grey.png")
    rgba = np.random.default_rng(3).integers(0, 256, (6, 8, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "train" / "cat" / "alpha.png")
    Image.fromarray(rgba[..., :3]).save(tmp_path / "train" / "cat" / "photo.jpg", quality=90)
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    (tmp_path / "test" / "cat").rmdir()
    train = load_dataset("imagefolder", tmp_path)
    assert len(train) == 9
    names = sorted(os.listdir(tmp_path / "train" / "bee"))
    grey_at = 2 + names.index("grey.png")
    assert np.array_equal(train.images[grey_at].numpy(), np.stack([grey] * 3))
    cat = sorted(n for n in os.listdir(tmp_path / "train" / "cat") if n != "notes.txt")
    alpha_at = 5 + cat.index("alpha.png")  # after 2 ants and 3 bees
    assert np.array_equal(train.images[alpha_at].numpy(), rgba[..., :3].transpose(2, 0, 1))
    with Image.open(tmp_path / "train" / "cat" / "photo.jpg") as im:
        pil = np.asarray(im.convert("RGB")).transpose(2, 0, 1)
    assert np.array_equal(train.images[5 + cat.index("photo.jpg")].numpy(), pil)
    # the test split lacks 'cat' but class indices still follow all class folders
    test = load_dataset("imagefolder", tmp_path, split="test")
    assert test.classes == ["ant", "bee", "cat"] and test.labels.tolist() == [0, 1]


def test_imagefolder_size_mismatch_and_resize(tmp_path):
    write_imagefolder(tmp_path)
    odd = tmp_path / "train" / "bee" / "odd.png"
    Image.fromarray(np.zeros((7, 8, 3), np.uint8)).save(odd)
    with pytest.raises(ValueError, match=r"odd\.png is 8x7 \(WxH\).*image_size"):
        load_dataset("imagefolder", tmp_path, num_workers=1)
    ds = load_dataset("imagefolder", tmp_path, image_size=(4, 5))
    assert ds.image_size == (4, 5) and len(ds) == 16
    broken = tmp_path / "train" / "bee" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(ValueError, match=r"broken\.png: cannot decode"):
        load_dataset("imagefolder", tmp_path, image_size=4)


def test_imagefolder_subset_chooses_files_before_decoding(tmp_path, monkeypatch):
    write_imagefolder(tmp_path, per_class=(10, 10, 10))
    load_dataset("imagefolder", tmp_path, subset=3)  # also measures (and caches) stats
    decoded = []
    real = image_folder._decode_one
    monkeypatch.setattr(image_folder, "_decode_one", lambda p, s: decoded.append(p) or real(p, s))
    ds = load_dataset("imagefolder", tmp_path, subset=6, seed=2, num_workers=1)
    assert len(decoded) == 6 and ds.labels.tolist() == [0, 0, 1, 1, 2, 2]
    full = load_dataset("imagefolder", tmp_path)
    idx = stratified_indices(full.labels, 6, seed=2)
    assert torch.equal(ds.images, full.images[idx])


def test_imagefolder_threads_match_serial(tmp_path):
    write_imagefolder(tmp_path, per_class=(100, 100, 100), size=(4, 4))
    serial = load_dataset("imagefolder", tmp_path, num_workers=1)
    threaded = load_dataset("imagefolder", tmp_path, num_workers=3)
    assert torch.equal(serial.images, threaded.images)


def test_imagefolder_flat_layout_and_cifar_constants(tmp_path):
    write_imagefolder(
        tmp_path,
        classes=CIFAR10_CLASSES,
        per_class=(2,) * 10,
        test_per_class=(0,) * 10,
        size=(32, 32),
    )
    shutil_root = tmp_path / "train"
    ds = load_dataset("imagefolder", shutil_root, val_size=10)  # flat: classes directly
    assert len(ds) == 10 and ds.mean == (0.4914, 0.4822, 0.4465)
    with pytest.raises(FileNotFoundError, match="no 'test' folder"):
        load_dataset("imagefolder", shutil_root, split="test")
    splits = load_splits("imagefolder", shutil_root, val_size=10)
    assert set(splits) == {"train", "val"}
    with pytest.raises(FileNotFoundError, match="--data-dir"):
        load_dataset("imagefolder", tmp_path / "missing")
    with pytest.raises(ValueError, match="data_dir"):
        load_dataset("imagefolder")


def test_unknown_names_and_splits(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("mnist", tmp_path)
    with pytest.raises(ValueError, match="split"):
        load_dataset("cifar10", tmp_path, split="validation")


# --------------------------------------------------------------------------- BatchLoader


def _unnormalise(x: torch.Tensor, ds: ImageDataset) -> torch.Tensor:
    mean = torch.tensor(ds.mean).view(1, -1, 1, 1)
    std = torch.tensor(ds.std).view(1, -1, 1, 1)
    return (x.double() * std + mean).mul(255).round().to(torch.uint8)


def test_batchloader_shapes_order_and_determinism():
    ds = _toy(n=50)
    loader = BatchLoader(ds, batch_size=16, seed=3)
    assert len(loader) == 4
    batches = list(loader)
    assert [x.shape[0] for x, _ in batches] == [16, 16, 16, 2]
    x, y = batches[0]
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape[1:] == (3, 5, 4)
    # every item once per epoch, image and label kept together
    order = loader.plan(0)["order"]
    got = torch.cat([_unnormalise(x, ds) for x, _ in batches])
    assert torch.equal(got, ds.images[order])
    assert torch.equal(torch.cat([y for _, y in batches]), ds.labels[order])
    assert sorted(order.tolist()) == list(range(50))
    # epochs advance automatically; set_epoch replays; a new loader reproduces
    second = torch.cat([y for _, y in loader])
    assert loader.epoch == 2 and not torch.equal(second, ds.labels[order])
    loader.set_epoch(1)
    assert torch.equal(torch.cat([y for _, y in loader]), second)
    fresh = BatchLoader(ds, batch_size=16, seed=3)
    assert torch.equal(next(iter(fresh))[0], x)
    assert len(BatchLoader(ds, batch_size=16, drop_last=True)) == 3
    assert [x.shape[0] for x, _ in BatchLoader(ds, batch_size=16, drop_last=True)] == [16] * 3
    unshuffled = torch.cat([y for _, y in BatchLoader(ds, batch_size=7, shuffle=False)])
    assert torch.equal(unshuffled, ds.labels)


def test_batchloader_normalisation():
    ds = _toy(n=64, channels=3)
    ds = ImageDataset(ds.images, ds.labels, ds.classes, "toy", (0.1, 0.5, 0.9), (0.2, 0.3, 0.4))
    x = torch.cat([x for x, _ in BatchLoader(ds, batch_size=64, shuffle=False)])
    pixels = ds.images.double() / 255
    expected = (
        pixels.mean(dim=(0, 2, 3)) - torch.tensor(ds.mean, dtype=torch.float64)
    ) / torch.tensor(ds.std, dtype=torch.float64)
    assert torch.allclose(x.double().mean(dim=(0, 2, 3)), expected, atol=1e-5)
    assert torch.allclose(x[0, 1], ((pixels[0, 1] - 0.5) / 0.3).float(), atol=1e-5)
    cl = next(iter(BatchLoader(ds, batch_size=8, channels_last=True)))[0]
    assert cl.is_contiguous(memory_format=torch.channels_last)


def _reference_crop_flip(image: np.ndarray, dy: int, dx: int, flip: bool, pad: int):
    c, h, w = image.shape
    padded = np.zeros((c, h + 2 * pad, w + 2 * pad), image.dtype)
    padded[:, pad : pad + h, pad : pad + w] = image
    window = padded[:, dy : dy + h, dx : dx + w]
    return window[:, :, ::-1] if flip else window


def test_crop_flip_matches_per_image_reference():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 3, 6, 7), generator=g, dtype=torch.uint8)
    for pad in (0, 1, 4):
        dy = torch.randint(0, 2 * pad + 1, (40,), generator=g)
        dx = torch.randint(0, 2 * pad + 1, (40,), generator=g)
        dy[:2], dx[:2] = torch.tensor([0, 2 * pad]), torch.tensor([2 * pad, 0])  # extremes
        flip = torch.randint(0, 2, (40,), generator=g).bool()
        out = crop_flip(images, dy, dx, flip, pad)
        for n in range(40):
            ref = _reference_crop_flip(
                images[n].numpy(), int(dy[n]), int(dx[n]), bool(flip[n]), pad
            )
            assert np.array_equal(out[n].numpy(), ref), (pad, n)


def test_batchloader_augmentation_really_crops_and_flips():
    ds = _toy(n=48, size=(8, 8))
    loader = BatchLoader(ds, batch_size=48, augment=True, seed=7)
    plan = loader.plan(0)
    x, y = next(iter(loader))
    got = _unnormalise(x, ds)
    pad = 4
    shifted = flipped = 0
    for k, n in enumerate(plan["order"].tolist()):
        dy, dx, flip = int(plan["dy"][k]), int(plan["dx"][k]), bool(plan["flip"][k])
        ref = _reference_crop_flip(ds.images[n].numpy(), dy, dx, flip, pad)
        assert np.array_equal(got[k].numpy(), ref)
        # independent of the plan: the output is some window of the padded original
        candidates = [
            _reference_crop_flip(ds.images[n].numpy(), a, b, f, pad)
            for a in range(9)
            for b in range(9)
            for f in (False, True)
        ]
        assert any(np.array_equal(got[k].numpy(), c) for c in candidates)
        shifted += (dy, dx) != (pad, pad)
        flipped += flip
    assert shifted > 30 and 10 < flipped < 38  # the augmentation actually happens
    assert torch.equal(y, ds.labels[plan["order"]])
    again = next(iter(BatchLoader(ds, batch_size=48, augment=True, seed=7)))[0]
    assert torch.equal(again, x)


def test_batchloader_sharding_is_disjoint():
    ds = _toy(n=50)
    shards = [BatchLoader(ds, batch_size=5, seed=1, rank=r, world_size=3) for r in range(3)]
    assert {len(s) for s in shards} == {4} and {s.num_samples for s in shards} == {16}
    orders = [s.plan(0)["order"].tolist() for s in shards]
    flat = sum(orders, [])
    assert len(flat) == 48 and len(set(flat)) == 48
    unsharded = BatchLoader(ds, batch_size=5, seed=1).plan(0)["order"].tolist()
    assert orders[1] == unsharded[1:48:3]
    with pytest.raises(ValueError):
        BatchLoader(ds, rank=3, world_size=3)


@pytest.mark.cuda
def test_batchloader_cuda_matches_cpu():
    ds = _toy(n=300, size=(32, 32))
    cpu = list(BatchLoader(ds, batch_size=64, augment=True, seed=5))
    gpu = list(
        BatchLoader(ds, batch_size=64, augment=True, seed=5, device="cuda", channels_last=True)
    )
    for (xc, yc), (xg, yg) in zip(cpu, gpu):
        assert xg.is_cuda and torch.equal(yc, yg.cpu())
        assert torch.allclose(xc, xg.cpu(), atol=1e-5)


# --------------------------------------------------------------------------- real data


@pytest.mark.slow
def test_real_fashion_mnist_subset():
    if not D.FASHION_MNIST_SYSTEM_DIR.is_dir():
        pytest.skip(f"{D.FASHION_MNIST_SYSTEM_DIR} not installed")
    with cpu_timed() as run:
        ds = load_dataset("fashion-mnist", D.FASHION_MNIST_SYSTEM_DIR, split="test", subset=500)
    assert run.seconds < 10  # CPU time (load cannot stretch it): about 0.15 s
    assert ds.images.shape == (500, 1, 28, 28)
    assert torch.bincount(ds.labels).tolist() == [50] * 10
    assert abs(ds.images.double().mean().item() / 255 - 0.286) < 0.02


@pytest.mark.slow
def test_real_imagefolder_subset(cifar10_jpeg_train):
    root = cifar10_jpeg_train
    with cpu_timed() as run:
        ds = load_dataset("imagefolder", root, subset=500, seed=0)
    # CPU time of all threads (load cannot stretch it): about 0.2 s for 500 of 50,000 files
    assert run.seconds < 15
    assert ds.images.shape == (500, 3, 32, 32) and ds.classes == list(CIFAR10_CLASSES)
    assert torch.bincount(ds.labels).tolist() == [50] * 10
    assert ds.mean == (0.4914, 0.4822, 0.4465)
    x, _ = next(iter(BatchLoader(ds, batch_size=500, shuffle=False)))
    assert x.mean().abs() < 0.2 and 0.8 < x.std() < 1.2
