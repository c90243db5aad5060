"""End-to-end runs on a tiny image folder: prune/train, report, saved model, resume."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import resnet20_prune_args

from ising_qubo.cli import main
from ising_qubo.nets.persist import load_pruned
from ising_qubo.pruning import pipeline
from ising_qubo.pruning.pipeline import RunConfig, run

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


def _config(out, data_dir, **overrides):
    options = dict(
        out=str(out),
        model="resnet20",
        dataset="imagefolder",
        data_dir=str(data_dir),
        epochs=1,
        finetune_epochs=1,
        batch_size=16,
        keep=0.5,
        resolve_every=2,
        calibration_size=32,
        progress=False,
        solver_params={"num_reads": 4, "num_sweeps": 100, "seed": 0},
    )
    options.update(overrides)
    return RunConfig(**options)


def test_prune_run_writes_a_smaller_model_that_reloads_with_the_same_accuracy(
    tmp_path, image_folder
):
    out = tmp_path / "run"
    report = run(_config(out, image_folder))
    for name in (
        "report.json",
        "config.json",
        "checkpoint.pt",
        "kept_channels.png",
        "energy.png",
        "accuracy.png",
        "model/model.safetensors",
        "model/architecture.json",
    ):
        assert (out / name).exists(), name
    saved = json.loads((out / "report.json").read_text())
    assert saved["params"]["after"] == report["params"]["after"]
    assert saved["params"]["after"] <= 0.55 * saved["params"]["before"]
    assert saved["params"]["before"] == 272474 - 6 * 65  # resnet20 with 4 classes, not 10
    kept = saved["pruning"]["kept"]
    assert all(0 < k <= n for k, n in kept.values())
    assert saved["pruning"]["energy_history"], "the Ising state was never solved"
    assert (
        0
        < saved["paper_comparison"]["filter_pruning_rate"]
        < saved["paper_comparison"]["parameter_pruning_rate"]
    )

    model = load_pruned(out / "model")
    assert sum(p.numel() for p in model.parameters()) == saved["params"]["after"]
    from ising_qubo.nets import data
    from ising_qubo.nets.training import evaluate

    test = data.load_dataset("imagefolder", image_folder, "test")
    result = evaluate(model, data.BatchLoader(test, 256, shuffle=False))
    assert result["top1"] == pytest.approx(saved["accuracy"]["after"]["top1"])
    assert result["top5"] == pytest.approx(saved["accuracy"]["after"]["top5"])


def test_existing_run_is_never_overwritten_and_resume_needs_same_options(tmp_path, image_folder):
    out = tmp_path / "run"
    run(_config(out, image_folder, method="random", epochs=0))
    before = (out / "report.json").read_bytes()
    with pytest.raises(FileExistsError, match="--resume"):
        run(_config(out, image_folder, method="random", epochs=0))
    with pytest.raises(ValueError, match="keep"):
        run(_config(out, image_folder, method="random", epochs=0, keep=0.7), resume=True)
    assert (out / "report.json").read_bytes() == before


def test_interrupted_run_resumes_from_its_checkpoint(tmp_path, image_folder, monkeypatch):
    out = tmp_path / "run"
    config = _config(out, image_folder, epochs=2, finetune_epochs=2)
    real = pipeline.train_one_epoch
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # the first fine-tuning epoch, after pruning
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "train_one_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(config)
    assert not (out / "report.json").exists()
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    assert (checkpoint["phase"], checkpoint["epoch"]) == ("train", 1)
    monkeypatch.setattr(pipeline, "train_one_epoch", real)
    report = run(config, resume=True)
    phases = report["history"]["phase"]
    assert phases == ["train", "train", "finetune", "finetune"]
    assert report["params"]["after"] <= 0.55 * report["params"]["before"]


def test_resume_inside_finetuning_rebuilds_the_pruned_model(tmp_path, image_folder, monkeypatch):
    out = tmp_path / "run"
    config = _config(out, image_folder, method="l1", epochs=1, finetune_epochs=2)
    real = pipeline.train_one_epoch
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "train_one_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(config)
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    assert (checkpoint["phase"], checkpoint["epoch"]) == ("finetune", 0)
    monkeypatch.setattr(pipeline, "train_one_epoch", real)
    report = run(config, resume=True)
    assert report["history"]["phase"] == ["train", "finetune", "finetune"]
    assert report["params"]["after"] == report["stages"]["after_pruning"]["params"]


@pytest.mark.parametrize("method", ["l1", "tp-magnitude", "tp-taylor"])
def test_baselines_prune_to_the_same_budget(tmp_path, image_folder, method):
    report = run(
        _config(tmp_path / method, image_folder, method=method, epochs=0, finetune_epochs=0)
    )
    ising = run(_config(tmp_path / "ising", image_folder, epochs=0, finetune_epochs=0))
    assert report["params"]["after"] == ising["params"]["after"]
    assert report["pruning"]["kept"] == {k: v for k, v in ising["pruning"]["kept"].items()}


def test_cli_prune_and_export(tmp_path, image_folder, capsys):
    out = tmp_path / "cli"
    code = main(
        [
            *resnet20_prune_args(image_folder),
            "--epochs",
            "0",
            "--finetune-epochs",
            "0",
            "--batch-size",
            "16",
            "--out",
            str(out),
            "--no-progress",
            "--solver-param",
            "num_reads=2",
            "--solver-param",
            "num_sweeps=50",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "kept" in printed
    # each accuracy with the training behind it: the fine-tuning's gain is not pruning's
    report = json.loads((out / "report.json").read_text())
    accuracy, stages = report["accuracy"], report["stages"]
    assert accuracy["epochs"] == {"train": 0, "finetune": 0}
    assert accuracy["after_surgery"] == {k: stages["after_pruning"][k] for k in ("top1", "top5")}
    assert (
        f"top-1 {accuracy['before']['top1']:.2f}% after 0 training epochs (before pruning) -> "
        f"{accuracy['after_surgery']['top1']:.2f}% right after pruning -> "
        f"{accuracy['after']['top1']:.2f}% after 0 fine-tuning epochs"
    ) in printed.splitlines()
    code = main(
        [
            "export",
            "--model",
            "resnet20",
            "--out",
            str(tmp_path / "qubos"),
            "--keep",
            "0.5",
            "--energy",
            "ipruning",
            "--calibration-size",
            "4",
        ]
    )
    assert code == 0
    manifest = json.loads((tmp_path / "qubos" / "manifest.json").read_text())
    assert manifest["energy"] == "ipruning"
    files = [g["file"] for g in manifest["groups"]]
    assert all((tmp_path / "qubos" / f).exists() for f in files)
    assert manifest["groups"][0]["variables"][0]["label"] == "conv1:0"


def test_cli_missing_data_is_one_clear_line(tmp_path, capsys):
    code = main(
        [
            "prune",
            "--dataset",
            "cifar10",
            "--data-dir",
            str(tmp_path / "nothing"),
            "--out",
            str(tmp_path / "run"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "--data-dir" in err and "\n" not in err and "Traceback" not in err


def test_export_takes_its_calibration_batch_from_the_dataset(tmp_path, image_folder):
    """``export --dataset``: the network sized by the dataset (4 classes) and a labelled
    calibration batch (Taylor importance needs the labels) of the stratified, seeded
    images; the files hold the energy of exactly that network and batch."""
    from ising_qubo import io
    from ising_qubo.nets import data
    from ising_qubo.nets.models import build
    from ising_qubo.pruning.problem import PruningProblem

    out = tmp_path / "qubos"
    torch.manual_seed(7)  # the network's initial weights
    code = main(
        [
            "export",
            "--dataset",
            "imagefolder",
            "--data-dir",
            str(image_folder),
            "--calibration-size",
            "8",
            "--importance",
            "taylor",
            "--seed",
            "3",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    torch.manual_seed(7)
    model = build("resnet20", num_classes=4).eval()
    train = data.load_dataset("imagefolder", image_folder, "train")
    chosen = train.take(data.stratified_indices(train.labels, 8, 3))
    assert sorted(chosen.labels.tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]
    batch = next(iter(data.BatchLoader(chosen, 8, shuffle=False)))
    expected = PruningProblem.from_model(
        model, batch[0][:1], keep=0.5, data=batch, importance="taylor"
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert [g["name"] for g in manifest["groups"]] == [g.name for g in expected.groups]
    for entry, group in zip(manifest["groups"], expected.groups):
        saved = io.load(out / entry["file"])
        reference = expected.to_bqm(group.name)
        assert saved.num_variables == group.size
        assert saved.energy({v: 1 for v in saved.variables}) == pytest.approx(
            reference.energy({v: 1 for v in reference.variables}), rel=1e-9
        )


@pytest.mark.parametrize(("setting", "shown"), [(None, True), (True, True), (False, False)])
def test_training_bar_follows_the_progress_option(tmp_path, monkeypatch, setting, shown):
    # progress=None is what `prune` passes without --no-progress: the bar must show (on a
    # terminal), as tqdm's default does; it once reached train_one_epoch as a falsy None
    asked = []

    class Stop(Exception):
        pass

    def train_one_epoch(*args, progress, **kwargs):
        asked.append(progress)
        raise Stop

    class Loader:
        def set_epoch(self, epoch):
            pass

    job = pipeline.Run(_config(tmp_path / "run", tmp_path, device="cpu", progress=setting))
    job.train_loader = Loader()
    monkeypatch.setattr(pipeline, "train_one_epoch", train_one_epoch)
    with pytest.raises(Stop):
        job._epoch("train", 0, None, None, None, None, [])
    assert asked == [shown]
