"""AlexNet adapted to 32x32 inputs.

This is the common CIFAR-10 variant (as in, e.g., the ``pytorch-cifar10`` model zoos): the five
convolutions of Krizhevsky et al. with their 64-192-384-256-256 channels, but 3x3 kernels, a
stride-2 first convolution and 2x2 max-pools, so a 32x32 image ends at 256x2x2; then
Dropout-Linear(1024, 4096)-ReLU-Dropout-Linear(4096, 4096)-ReLU-Linear(4096, classes). There is
no BatchNorm by default (train from scratch with a learning rate around 0.01);
``AlexNet(batch_norm=True)`` puts one after every convolution.

An adaptive average pool to 2x2 sits between ``features`` and ``classifier`` so other input
sizes work too: a 28x28 Fashion-MNIST image reaches it at 1x1 and is replicated to 2x2, which
keeps the classifier's shape (and the parameter count) independent of the input size.

With 10 classes: 23,272,266 parameters (2,469,696 in the convolutions).
"""

from __future__ import annotations

import torch
from torch import nn

from ising_qubo.nets.models.cifar_resnet import init_weights

__all__ = ["AlexNet", "alexnet"]

_CONVS = [  # (out_channels, stride, max-pool after)
    (64, 2, True),
    (192, 1, True),
    (384, 1, False),
    (256, 1, False),
    (256, 1, True),
]


class AlexNet(nn.Module):
    """``features`` (convolutions), ``avgpool``, ``classifier`` (the last Linear is the head)."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        hidden: int = 4096,
        dropout: float = 0.5,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for out_channels, stride, pool in _CONVS:
            layers.append(nn.Conv2d(channels, out_channels, 3, stride=stride, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU(inplace=True))
            if pool:
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            channels = out_channels
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((2, 2))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(channels * 2 * 2, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def alexnet(num_classes: int = 10, in_channels: int = 3) -> AlexNet:
    return AlexNet(num_classes, in_channels)
