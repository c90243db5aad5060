"""ResNet-20 and ResNet-56: the CIFAR networks of He et al. (2016), section 4.2.

A 3x3 stem with 16 channels, three stages of ``n`` BasicBlocks with 16-32-64 channels (strides
1-2-2), global average pooling and a linear classifier; ``n = 3`` gives ResNet-20 and ``n = 9``
ResNet-56. Where the shape changes the shortcut is option B of the paper, a 1x1 convolution with
BatchNorm (named ``downsample`` as in torchvision), rather than option A's zero-padded identity:
a projection is an ordinary module that channel-pruning tools such as Torch-Pruning follow.
Option B adds 2,752 parameters to option A's counts.

With 10 classes: ResNet-20 has 272,474 parameters, ResNet-56 855,770.
"""

from __future__ import annotations

from ising_qubo.nets.models.cifar_resnet import BasicBlock, CifarResNet

__all__ = ["resnet20", "resnet56"]

_WIDTHS = (16, 32, 64)
_STRIDES = (1, 2, 2)


def _he_resnet(n: int, num_classes: int, in_channels: int) -> CifarResNet:
    return CifarResNet(
        BasicBlock, [n, n, n], num_classes, in_channels, widths=_WIDTHS, strides=_STRIDES
    )


def resnet20(num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    return _he_resnet(3, num_classes, in_channels)


def resnet56(num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    return _he_resnet(9, num_classes, in_channels)
