"""What a pruning starts from: the network (built by name, with the weights of a file, or a
model directory this tool saved) and the calibration batch its energies are measured on.

One place for both, so a run (:mod:`ising_qubo.pruning.pipeline`) and an export of the
pruning QUBOs (:mod:`ising_qubo.pruning.export`) start from the same model for the same
options, and word a bad ``--checkpoint`` the same way.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from ising_qubo.nets import data as data_module
from ising_qubo.nets import models
from ising_qubo.nets.persist import ARCHITECTURE_FILE, load_pruned
from ising_qubo.nets.training import load_weights


def starting_model(
    name: str, checkpoint: str | os.PathLike[str] | None, *, num_classes: int, in_channels: int
) -> tuple[nn.Module, dict | None]:
    """The network to prune, on the CPU, and the spec that rebuilds its architecture.

    ``checkpoint`` a directory: the model this tool saved there, pruned or not (``name``,
    ``num_classes`` and ``in_channels`` are then not used). Otherwise
    ``models.build(name, num_classes=..., in_channels=...)``, with the weights of the file
    ``checkpoint`` when given (see :func:`load_checkpoint_weights`).
    """
    if checkpoint and Path(checkpoint).is_dir():
        model = load_pruned(checkpoint)
        spec = models.spec_of(model) or json.loads(
            (Path(checkpoint) / ARCHITECTURE_FILE).read_text()
        ).get("spec")
        return model, spec
    model = models.build(name, num_classes=num_classes, in_channels=in_channels)
    if checkpoint:
        load_checkpoint_weights(model, checkpoint)
    return model, models.spec_of(model)


def load_checkpoint_weights(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """``--checkpoint FILE``: weights only, never code (see :func:`training.load_weights`);
    a file that does not fit is a one-line ValueError starting ``--checkpoint:``."""
    try:
        load_weights(model, path)
    except ValueError as error:
        raise ValueError(f"--checkpoint: {error}") from None


def calibration_batch(
    train: data_module.ImageDataset, size: int, seed: int, device: str | torch.device = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs, targets)``: a class-stratified, seeded selection of ``size`` images of
    ``train`` (all of them when it has fewer), as one batch on ``device``."""
    calibration = train.subset(min(size, len(train)), seed=seed)
    loader = data_module.BatchLoader(calibration, len(calibration), shuffle=False, device=device)
    return next(iter(loader))


__all__ = ["calibration_batch", "load_checkpoint_weights", "starting_model"]
