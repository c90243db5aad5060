"""Saving physically pruned networks without pickle, and rebuilding them bit-identically."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from torch import nn

import ising_qubo.nets.persist as persist
from ising_qubo.nets.models import build, spec_of
from ising_qubo.nets.persist import (
    ARCHITECTURE_FILE,
    FORMAT,
    WEIGHTS_FILE,
    MissingModelFileError,
    load_pruned,
    read_architecture,
    save_pruned,
)
from ising_qubo.pruning.groups import ModelGroups

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def random_masks(groups: ModelGroups, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    masks = {}
    for group in groups.groups:
        keep = rng.random(group.size) < 0.5
        if not keep.any():
            keep[rng.integers(group.size)] = True
        masks[group.name] = keep
    return masks


def prune_randomly(model: nn.Module, seed: int = 0) -> list:
    groups = ModelGroups(model, torch.randn(1, 3, 32, 32))
    return groups.prune(random_masks(groups, seed))


def update_running_stats(model: nn.Module, steps: int = 3) -> None:
    generator = torch.Generator().manual_seed(1)
    model.train()
    with torch.no_grad():
        for _ in range(steps):
            model(torch.randn(4, 3, 32, 32, generator=generator) * 2 + 0.5)
    model.eval()


def outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(x)


def fixed_input(shape=(2, 3, 32, 32)) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(7))


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def pruned_resnet20(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = build("resnet20")
    prune_randomly(model, seed)
    update_running_stats(model)
    return model


@pytest.mark.parametrize(
    "name", ["resnet20", "squeezenet1_1", "alexnet", "torchvision.mobilenet_v2"]
)
def test_round_trip_is_bit_identical(tmp_path, name):
    torch.manual_seed(0)
    model = build(name)
    unpruned = count(model)
    history = prune_randomly(model, seed=3)
    assert count(model) < unpruned
    update_running_stats(model)
    x = fixed_input()
    expected = outputs(model, x)

    assert (
        save_pruned(model, tmp_path / "saved", metadata={"history": history}) == tmp_path / "saved"
    )
    assert sorted(p.name for p in (tmp_path / "saved").iterdir()) == sorted(
        [ARCHITECTURE_FILE, WEIGHTS_FILE]
    )
    loaded = load_pruned(tmp_path / "saved")

    assert loaded is not model and not loaded.training
    assert torch.equal(outputs(loaded, x), expected)
    assert count(loaded) == count(model)
    saved_state, loaded_state = model.state_dict(), loaded.state_dict()
    assert list(loaded_state) == list(saved_state)
    for key, value in saved_state.items():
        assert loaded_state[key].dtype == value.dtype, key
        assert torch.equal(loaded_state[key], value), key
    for (path, a), (_, b) in zip(model.named_modules(), loaded.named_modules()):
        for attr in (
            "in_channels",
            "out_channels",
            "groups",
            "in_features",
            "out_features",
            "num_features",
        ):
            assert getattr(a, attr, None) == getattr(b, attr, None), (path, attr)

    arch = read_architecture(tmp_path / "saved")
    assert arch["format"] == FORMAT
    assert arch["spec"] == spec_of(model)
    assert arch["num_parameters"] == count(model)
    assert arch["metadata"] == {"history": [[g, list(idx)] for g, idx in history]}
    assert arch["torch"] == str(torch.__version__)
    conv = next(p for p, m in model.named_modules() if isinstance(m, nn.Conv2d))
    assert set(arch["modules"][conv]) == {"type", "in_channels", "out_channels", "groups"}


def test_batchnorm_running_stats_survive(tmp_path):
    model = pruned_resnet20()
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert int(bn.num_batches_tracked) == 3
    assert not torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
    save_pruned(model, tmp_path)
    loaded = load_pruned(tmp_path)
    for (name, a), (_, b) in zip(model.named_buffers(), loaded.named_buffers()):
        assert torch.equal(a, b), name
    loaded_bn = next(m for m in loaded.modules() if isinstance(m, nn.BatchNorm2d))
    assert int(loaded_bn.num_batches_tracked) == 3
    assert torch.equal(loaded_bn.running_var, bn.running_var)


def small_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 5),
    )


def test_user_supplied_skeleton(tmp_path):
    torch.manual_seed(0)
    model = small_net()
    prune_randomly(model, seed=1)
    update_running_stats(model)
    x = fixed_input()
    expected = outputs(model, x)
    save_pruned(model, tmp_path)
    assert read_architecture(tmp_path)["spec"] is None

    with pytest.raises(ValueError, match="model="):
        load_pruned(tmp_path)
    skeleton = small_net()
    loaded = load_pruned(tmp_path, model=skeleton)
    assert loaded is skeleton
    assert torch.equal(outputs(loaded, x), expected)
    assert count(loaded) == count(model) < count(small_net())
    assert loaded[6].groups == loaded[6].in_channels == model[6].in_channels
    assert all(p.requires_grad for p in loaded.parameters())


class Tied(nn.Module):
    """A weight tied across two modules, and one module used at two places."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.inp = nn.Linear(4, hidden)
        self.a = nn.Linear(hidden, hidden)
        self.b = nn.Linear(hidden, hidden)
        self.b.weight = self.a.weight
        self.body = nn.Sequential(self.a, nn.ReLU(), self.a)
        self.out = nn.Linear(hidden, 3)

    def forward(self, x):
        return self.out(self.b(self.body(self.inp(x))))


def test_tied_weights_stay_tied(tmp_path):
    torch.manual_seed(0)
    model = Tied(6)  # stands for a pruned Tied(8)
    x = torch.randn(5, 4)
    save_pruned(model, tmp_path)
    arch = read_architecture(tmp_path)
    assert ["a.weight", "b.weight", "body.0.weight", "body.2.weight"] in [
        sorted(group) for group in arch["shared_tensors"]
    ]
    loaded = load_pruned(tmp_path, model=Tied(8))
    assert loaded.b.weight is loaded.a.weight
    assert loaded.body[0] is loaded.body[2] is loaded.a
    assert loaded.a.in_features == loaded.a.out_features == 6
    assert count(loaded) == count(model)
    assert torch.equal(outputs(loaded, x), outputs(model, x))


# --------------------------------------------------------------------------------------------
# errors


@pytest.fixture
def saved(tmp_path) -> Path:
    save_pruned(pruned_resnet20(), tmp_path / "model")
    return tmp_path / "model"


def edit_architecture(directory: Path, change) -> None:
    path = directory / ARCHITECTURE_FILE
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_wrong_format_is_refused(saved):
    edit_architecture(saved, lambda d: d.update(format="ising-qubo-pruned/99"))
    with pytest.raises(ValueError, match="format"):
        load_pruned(saved)
    with pytest.raises(ValueError, match="format"):
        read_architecture(saved)


def test_unknown_module_is_refused(saved):
    edit_architecture(
        saved, lambda d: d["modules"].update({"layer9.conv": {"type": "Conv2d", "in_channels": 1}})
    )
    with pytest.raises(
        ValueError,
        match=r"layer9\.conv.*architecture\.json|architecture\.json"
        r".*layer9\.conv",
    ):
        load_pruned(saved)


def test_type_mismatch_is_refused(saved):
    conv = next(k for k, v in read_architecture(saved)["modules"].items() if v["type"] == "Conv2d")
    edit_architecture(saved, lambda d: d["modules"][conv].update(type="Linear"))
    with pytest.raises(ValueError, match=f"{conv}.*Linear.*Conv2d"):
        load_pruned(saved)


@pytest.mark.parametrize(
    "entry",
    [
        {"type": "Conv2d", "forward": 1},
        {"type": "Conv2d", "out_channels": "many"},
        {"type": "Conv2d", "out_channels": -1},
        {"type": 3},
    ],
)
def test_malformed_module_entries_are_refused(saved, entry):
    conv = next(k for k, v in read_architecture(saved)["modules"].items() if v["type"] == "Conv2d")
    edit_architecture(saved, lambda d: d["modules"].update({conv: entry}))
    with pytest.raises(ValueError, match=conv):
        load_pruned(saved)


def test_not_json_is_refused(saved):
    (saved / ARCHITECTURE_FILE).write_text('{"format": NaN')
    with pytest.raises(ValueError, match="JSON"):
        load_pruned(saved)


def test_inconsistent_attribute_is_refused(saved):
    # The recorded attribute disagrees with the stored tensor.
    conv = next(k for k, v in read_architecture(saved)["modules"].items() if v["type"] == "Conv2d")
    edit_architecture(
        saved,
        lambda d: d["modules"][conv].update(out_channels=d["modules"][conv]["out_channels"] + 1),
    )
    with pytest.raises(ValueError, match=f"{conv}.weight"):
        load_pruned(saved)


def test_map_location(saved):
    loaded = load_pruned(saved, map_location=torch.device("cpu"))
    assert all(t.device.type == "cpu" for t in loaded.state_dict().values())
    with pytest.raises(ValueError, match="map_location"):
        load_pruned(saved, map_location=1.5)


def test_read_architecture_needs_only_the_json(saved):
    (saved / WEIGHTS_FILE).unlink()
    assert read_architecture(saved)["format"] == FORMAT


@pytest.mark.parametrize("missing", [WEIGHTS_FILE, ARCHITECTURE_FILE])
def test_missing_file(saved, missing):
    (saved / missing).unlink()
    with pytest.raises(MissingModelFileError, match=missing) as info:
        load_pruned(saved)
    assert isinstance(info.value, ValueError) and isinstance(info.value, FileNotFoundError)


def test_missing_directory(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_pruned(tmp_path / "nowhere")


def make_run_directory(run: Path, model: nn.Module) -> Path:
    """What `ising-qubo prune --out RUN` leaves: the model in RUN/model, files beside it."""
    save_pruned(model, run / "model", metadata={"method": "ising"})
    (run / "config.json").write_text("{}\n")
    (run / "report.json").write_text("{}\n")
    torch.save({"epoch": 0}, run / "checkpoint.pt")
    return run


def test_load_pruned_accepts_a_run_directory(tmp_path):
    model = pruned_resnet20(seed=2)
    run = make_run_directory(tmp_path / "run", model)
    x = fixed_input()
    assert torch.equal(outputs(load_pruned(run), x), outputs(model, x))
    assert read_architecture(run) == read_architecture(run / "model")
    assert read_architecture(run)["metadata"] == {"method": "ising"}


def test_a_saved_model_in_the_directory_itself_wins_over_its_model_folder(tmp_path):
    outer, inner = pruned_resnet20(seed=3), pruned_resnet20(seed=4)
    save_pruned(outer, tmp_path)
    save_pruned(inner, tmp_path / "model")
    x = fixed_input()
    assert torch.equal(outputs(load_pruned(tmp_path), x), outputs(outer, x))


def test_directory_without_a_model_names_both_places(tmp_path):
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "report.json").write_text("{}\n")
    for call in (load_pruned, read_architecture):
        with pytest.raises(MissingModelFileError) as info:
            call(run)
        message = str(info.value)
        assert message == (
            f"no saved model at {run}: neither {run / ARCHITECTURE_FILE} nor "
            f"{run / 'model' / ARCHITECTURE_FILE} (where a run directory of 'ising-qubo prune "
            f"--out' keeps it) exists; pass the directory that save_pruned wrote, or a run "
            f"directory"
        )


def test_run_directory_with_an_incomplete_model(tmp_path):
    run = make_run_directory(tmp_path / "run", pruned_resnet20())
    (run / "model" / WEIGHTS_FILE).unlink()
    with pytest.raises(
        MissingModelFileError,
        match=f"saved model {run / 'model'} is incomplete: {WEIGHTS_FILE} is missing",
    ):
        load_pruned(run)


def rewrite_weights(directory: Path, change) -> None:
    path = directory / WEIGHTS_FILE
    with safetensors.safe_open(str(path), framework="pt") as handle:
        header = handle.metadata()
    tensors = safetensors.torch.load_file(str(path))
    change(tensors)
    safetensors.torch.save_file(tensors, str(path), metadata=header)


def test_wrong_shape_in_weights_is_refused(saved):
    key = "layer1.0.conv1.weight"

    def shrink(tensors):
        tensors[key] = tensors[key][:, :-1].contiguous()

    rewrite_weights(saved, shrink)
    with pytest.raises(ValueError, match=rf"{key}.*model\.safetensors|model\.safetensors.*{key}"):
        load_pruned(saved)


def test_missing_and_unexpected_tensors_are_refused(saved):
    def edit(tensors):
        tensors["extra.weight"] = tensors.pop("fc.bias")

    rewrite_weights(saved, edit)
    with pytest.raises(ValueError, match=r"fc\.bias.*extra\.weight"):
        load_pruned(saved)


def test_corrupt_weights_are_refused(saved):
    (saved / WEIGHTS_FILE).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}")
    with pytest.raises(ValueError, match="safetensors"):
        load_pruned(saved)


def test_files_from_different_saves_are_refused(saved, tmp_path):
    save_pruned(pruned_resnet20(seed=1), tmp_path / "other")
    (tmp_path / "other" / ARCHITECTURE_FILE).replace(saved / ARCHITECTURE_FILE)
    with pytest.raises(ValueError, match="different saves"):
        load_pruned(saved)


def test_unserialisable_metadata_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match="JSON"):
        save_pruned(small_net(), tmp_path / "m", metadata={"x": object()})
    assert not (tmp_path / "m").exists()


# --------------------------------------------------------------------------------------------
# atomicity


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_failed_save_keeps_previous_model(tmp_path, monkeypatch, error):
    good = pruned_resnet20(seed=0)
    x = fixed_input()
    expected = outputs(good, x)
    save_pruned(good, tmp_path, metadata={"which": "good"})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def failing_save_file(tensors, filename, metadata=None):
        with open(filename, "wb") as handle:  # half a file, then the failure
            handle.write(b"\x00" * 1000)
        raise error

    monkeypatch.setattr(safetensors.torch, "save_file", failing_save_file)
    with pytest.raises(type(error)):
        save_pruned(pruned_resnet20(seed=1), tmp_path, metadata={"which": "new"})
    monkeypatch.undo()

    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temp files
    assert read_architecture(tmp_path)["metadata"] == {"which": "good"}
    assert torch.equal(outputs(load_pruned(tmp_path), x), expected)


def test_interrupted_architecture_write_keeps_previous_model(tmp_path, monkeypatch):
    good = pruned_resnet20(seed=0)
    save_pruned(good, tmp_path, metadata={"which": "good"})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real_write_text = Path.write_text

    def interrupted(self, text, *args, **kwargs):
        real_write_text(self, text[: len(text) // 2], *args, **kwargs)  # half, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_text", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_pruned(pruned_resnet20(seed=1), tmp_path, metadata={"which": "new"})
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    x = fixed_input()
    assert torch.equal(outputs(load_pruned(tmp_path), x), outputs(good, x))


def test_both_new_files_are_complete_before_either_replaces(tmp_path, monkeypatch):
    save_pruned(pruned_resnet20(seed=0), tmp_path)
    real_replace = os.replace
    renamed = []

    def checking_replace(src, dst):
        if not renamed:  # the first rename: both new files must be whole already
            new = {
                name: p
                for p in tmp_path.iterdir()
                if p.suffix == ".tmp"
                for name in (ARCHITECTURE_FILE, WEIGHTS_FILE)
                if p.name.startswith(f".{name}.")
            }
            arch = json.loads(new[ARCHITECTURE_FILE].read_text())
            with safetensors.safe_open(str(new[WEIGHTS_FILE]), framework="pt") as handle:
                assert handle.metadata()[persist._SAVE_ID_KEY] == arch["save_id"]
                assert len(handle.keys()) == len(second.state_dict())
        renamed.append(Path(dst).name)
        real_replace(src, dst)

    second = pruned_resnet20(seed=1)
    monkeypatch.setattr(os, "replace", checking_replace)
    save_pruned(second, tmp_path)
    monkeypatch.undo()
    assert renamed == [ARCHITECTURE_FILE, WEIGHTS_FILE]
    x = fixed_input()
    assert torch.equal(outputs(load_pruned(tmp_path), x), outputs(second, x))


def test_saved_files_get_the_mode_of_a_plain_open(tmp_path):
    # tempfile.mkstemp would give 0o600; a saved model must be as readable as its neighbours
    old_umask = os.umask(0o022)
    try:
        save_pruned(small_net(), tmp_path / "m")
        (tmp_path / "plain.txt").write_text("made by open()")
    finally:
        os.umask(old_umask)
    expected = (tmp_path / "plain.txt").stat().st_mode & 0o777
    assert expected == 0o644
    for name in (ARCHITECTURE_FILE, WEIGHTS_FILE):
        assert (tmp_path / "m" / name).stat().st_mode & 0o777 == expected, name
    # overwriting keeps the mode a user gave the old files (as writing into them would)
    for name in (ARCHITECTURE_FILE, WEIGHTS_FILE):
        os.chmod(tmp_path / "m" / name, 0o640)
    save_pruned(small_net(), tmp_path / "m")
    for name in (ARCHITECTURE_FILE, WEIGHTS_FILE):
        assert (tmp_path / "m" / name).stat().st_mode & 0o777 == 0o640, name


def test_overwrite_replaces_both_files(tmp_path):
    save_pruned(pruned_resnet20(seed=0), tmp_path)
    second = pruned_resnet20(seed=1)
    save_pruned(second, tmp_path, metadata={"n": 2})
    x = fixed_input()
    assert torch.equal(outputs(load_pruned(tmp_path), x), outputs(second, x))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([ARCHITECTURE_FILE, WEIGHTS_FILE])
