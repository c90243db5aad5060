"""A network's pruning problem written as QUBO files, one per unit group, without training
(``ising-qubo export``): for solving elsewhere, or for inspecting the energies."""

from __future__ import annotations

import os
from typing import Any

import torch

from ising_qubo.nets import data as data_module
from ising_qubo.pruning.problem import PruningProblem
from ising_qubo.pruning.starting_point import calibration_batch, starting_model


def export_problem(
    out: str | os.PathLike[str],
    *,
    model: str = "resnet20",
    checkpoint: str | os.PathLike[str] | None = None,
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: int = 32,
    dataset: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    calibration_size: int = 128,
    seed: int = 0,
    format: str = "coo",
    budget: bool = True,
    energy: str = "redundancy",
    keep: float | None = 0.5,
    keep_by: str = "params",
    budget_mode: str = "uniform",
    **options: Any,
) -> PruningProblem:
    """Build the pruning problem of a network and save it to ``out``
    (:meth:`PruningProblem.save`: one ``format`` file per group and ``manifest.json``).

    The network is :func:`~ising_qubo.pruning.starting_point.starting_model` of ``model`` and
    ``checkpoint``. The calibration batch (feature maps, Taylor importance) is
    ``calibration_size`` training images of ``dataset`` (which then also sets the number
    of classes, channels and the image size), else that many seeded random images of
    ``in_channels x image_size x image_size``, without labels. ``budget=False`` leaves the
    budget penalty out of the files. ``energy``, ``keep``, ``keep_by``, ``budget_mode``
    (its ``budget``: "uniform" or "global") and ``options`` (``min_keep``, ``importance``,
    ``similarity``, ...) go to :meth:`PruningProblem.from_model`.
    Returns the problem.
    """
    batch: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None = None  # None: random
    size = image_size
    if dataset:
        # only the calibration images are read (an image folder decodes no others)
        train = data_module.load_dataset(
            dataset, data_dir, "train", subset=calibration_size, seed=seed
        )
        batch = calibration_batch(train, calibration_size, seed)
        num_classes, in_channels = train.num_classes, train.in_channels
        size = train.image_size[0]
    network, _ = starting_model(model, checkpoint, num_classes=num_classes, in_channels=in_channels)
    network.eval()
    generator = torch.Generator().manual_seed(seed)
    example = torch.randn(1, in_channels, size, size, generator=generator)
    if batch is None:
        batch = torch.randn(calibration_size, in_channels, size, size, generator=generator)
    problem = PruningProblem.from_model(
        network,
        example,
        energy=energy,
        keep=keep,
        keep_by=keep_by,
        data=batch,
        budget=budget_mode,
        **options,
    )
    problem.save(out, format=format, budget=budget)
    return problem


__all__ = ["export_problem"]
