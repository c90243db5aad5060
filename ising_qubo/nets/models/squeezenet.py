"""SqueezeNet 1.1 adapted to 32x32 inputs.

The Fire modules, their widths and the convolutional classifier are torchvision's
``squeezenet1_1`` (squeeze 1x1, then expand 1x1 and expand 3x3 concatenated). For small images
the first convolution is 3x3 with stride 1 and padding 1 instead of stride 2, and the max-pool
straight after it is dropped; the two later max-pools stay (3x3, stride 2, ceil mode), so a
32x32 image reaches the classifier at 8x8 and a 28x28 one at 7x7. The head keeps torchvision's
layout: ``classifier = Sequential(Dropout, Conv2d(512, classes, 1), ReLU, AdaptiveAvgPool2d)``,
so ``classifier.1`` is the final (class) convolution.

Initialisation: Kaiming normal (fan_out) for the convolutions, except ``classifier.1`` which is
drawn from N(0, 0.01) as in torchvision. With 10 classes: 727,626 parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from ising_qubo.nets.models.cifar_resnet import init_weights

__all__ = ["Fire", "SqueezeNet", "squeezenet1_1"]


class Fire(nn.Module):
    """torchvision's Fire module (same attribute names)."""

    def __init__(
        self, inplanes: int, squeeze_planes: int, expand1x1_planes: int, expand3x3_planes: int
    ) -> None:
        super().__init__()
        self.inplanes = inplanes
        self.squeeze = nn.Conv2d(inplanes, squeeze_planes, kernel_size=1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze_planes, expand1x1_planes, kernel_size=1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze_planes, expand3x3_planes, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat(
            [
                self.expand1x1_activation(self.expand1x1(x)),
                self.expand3x3_activation(self.expand3x3(x)),
            ],
            1,
        )


class SqueezeNet(nn.Module):
    """SqueezeNet 1.1 for small images: ``features``, then ``classifier`` (``classifier.1``)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, dropout: float = 0.5) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1),
            nn.ReLU(inplace=True),
            Fire(64, 16, 64, 64),
            Fire(128, 16, 64, 64),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(128, 32, 128, 128),
            Fire(256, 32, 128, 128),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(256, 48, 192, 192),
            Fire(384, 48, 192, 192),
            Fire(384, 64, 256, 256),
            Fire(512, 64, 256, 256),
        )
        final_conv = nn.Conv2d(512, num_classes, kernel_size=1)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            final_conv,
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d((1, 1)),
        )
        init_weights(self)
        nn.init.normal_(final_conv.weight, mean=0.0, std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)


def squeezenet1_1(num_classes: int = 10, in_channels: int = 3) -> SqueezeNet:
    return SqueezeNet(num_classes, in_channels)
