"""Shared fixtures: random problems with brute-force references, a tiny image folder, the
data in ../shared, and the one rule that skips ``cuda``-marked tests without a CUDA device."""

from __future__ import annotations

import tarfile
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import dimod
import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED_BENCH = REPO.parent / "shared" / "bench"
SHARED_DATA = REPO.parent / "shared" / "data"  # see its README.md


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C as Python's default, whatever the shell gave: a run started in the background
    (``cmd &`` in a script, ``nohup``) inherits SIGINT ignored, and the tests that send a
    real SIGINT to this process or to a child would then see nothing happen. Children get
    the default back from ``subprocess``'s ``restore_signals`` only for SIGPIPE and SIGXFSZ,
    so SIGINT is reset here before any child starts."""
    import signal

    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip every ``@pytest.mark.cuda`` test, with one visible reason, when CUDA is absent."""
    needs_cuda = [item for item in items if item.get_closest_marker("cuda")]
    if not needs_cuda:
        return
    import torch  # only here: a run without cuda tests should not pay for importing torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False)")
    for item in needs_cuda:
        item.add_marker(skip)


def resnet20_prune_args(data_dir: Path, *options: str) -> list[str]:
    """``ising-qubo prune`` of CIFAR ResNet-20 on an image folder (the tiny runs of the
    pipeline tests), followed by ``options``."""
    return [
        "prune",
        "--model",
        "resnet20",
        "--dataset",
        "imagefolder",
        "--data-dir",
        str(data_dir),
        *options,
    ]


def random_bqm(n: int, vartype: str, seed: int, density: float = 0.7) -> dimod.BinaryQuadraticModel:
    """Real-valued random problem with fields, couplings and an offset."""
    rng = np.random.default_rng(seed)
    upper = np.triu(rng.normal(size=(n, n)) * (rng.random((n, n)) < density), 1)
    linear = rng.normal(size=n)
    rows, cols = np.nonzero(upper)
    return dimod.BinaryQuadraticModel.from_numpy_vectors(
        linear, (rows, cols, upper[rows, cols]), float(rng.normal()), vartype
    )


def brute_force_minimum(bqm: dimod.BinaryQuadraticModel) -> float:
    return float(dimod.ExactSolver().sample(bqm).first.energy)


def assert_local_minima(bqm: dimod.BinaryQuadraticModel, sampleset: dimod.SampleSet) -> None:
    """No single flip lowers any returned state (checked by recomputing energies)."""
    labels = list(sampleset.variables)
    states = sampleset.record.sample.astype(float)
    base = bqm.energies((states, labels))
    for k in range(len(labels)):
        flipped = states.copy()
        flipped[:, k] = (-flipped[:, k]) if bqm.vartype is dimod.SPIN else 1 - flipped[:, k]
        assert np.all(bqm.energies((flipped, labels)) >= base - 1e-9), f"flip of {labels[k]}"


@pytest.fixture(scope="session")
def shared_bench() -> Path:
    if not SHARED_BENCH.is_dir():
        pytest.skip(f"benchmark instances not found at {SHARED_BENCH}")
    return SHARED_BENCH


@pytest.fixture
def one_torch_thread():
    """One intra-op thread for the network tests: tiny models gain nothing from more, and
    the suite stays off the cores other work is using."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_image_folder(
    root: Path,
    classes: Sequence[str] = ("ant", "bee", "cat"),
    per_class: Sequence[int] = (4, 5, 6),
    test_per_class: Sequence[int] = (2, 2, 2),
    size: tuple[int, int] = (6, 8),
    ext: str = ".png",
    seed: int = 0,
    tinted: bool = False,
) -> dict[str, list[tuple[str, np.ndarray]]]:
    """root/{train,test}/<class>/NNN<ext> with random RGB pixels; returns the arrays written.

    ``tinted`` makes the class learnable: pixels in [0, 60) plus a class-dependent
    brightness on one channel (class k lifts channel k % 3 by 120 + 40 * (k // 3)).
    """
    rng = np.random.default_rng(seed)
    height, width = size
    written: dict[str, list[tuple[str, np.ndarray]]] = {"train": [], "test": []}
    for split, counts in (("train", per_class), ("test", test_per_class)):
        for label, (name, count) in enumerate(zip(classes, counts)):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                if tinted:
                    pixels = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
                    pixels[..., label % 3] += np.uint8(120 + 40 * (label // 3))
                else:
                    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:03d}{ext}")
                written[split].append((name, pixels))
    return written


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    """train/ (24 per class) and test/ (8 per class): 4 classes of 32x32 PNGs whose colour
    says the class, so that a network learns something in an epoch. Shared by the whole
    session: tests read it and never write into it."""
    root = tmp_path_factory.mktemp("images")
    write_image_folder(
        root,
        classes=[f"class{k}" for k in range(4)],
        per_class=(24,) * 4,
        test_per_class=(8,) * 4,
        size=(32, 32),
        tinted=True,
    )
    return root


@pytest.fixture(scope="session")
def cifar10_jpeg_train(tmp_path_factory) -> Path:
    """The first 1,000 train images of each class of ../shared/data/cifar10-jpeg.tar.xz,
    unpacked as root/train/<class>/NNNN.jpg (10,000 real files: enough for a subset to have
    something to choose from, without writing all 50,000 for one test)."""
    archive = SHARED_DATA / "cifar10-jpeg.tar.xz"
    if not archive.is_file():
        pytest.skip(f"real CIFAR-10 JPEGs not found at {archive}")
    root = tmp_path_factory.mktemp("cifar10-jpeg")
    per_class = 1000
    taken: Counter[str] = Counter()

    def first_train_images(members: Iterator[tarfile.TarInfo]) -> Iterator[tarfile.TarInfo]:
        for member in members:
            parts = member.name.split("/")
            if parts[0] != "train":
                continue
            if member.isfile():
                if taken[parts[1]] >= per_class:
                    continue
                taken[parts[1]] += 1
            yield member

    # the "data" filter (refuse links and paths out of root) exists from Python 3.10.12 on
    safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    with tarfile.open(archive, "r|xz") as stream:
        stream.extractall(root, members=first_train_images(stream), **safe)
    return root
