"""Small networks shared by several test modules (imported as ``from tiny_nets import ...``)."""

from __future__ import annotations

import torch
from torch import nn


class TiedNet(nn.Module):
    """conv1/bn1 and conv2/bn2 tied by a residual add (one group of 6 units, two layers);
    conv3 with a bias and no BatchNorm (a group of 5); the classifier is not pruned."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(6)
        self.conv3 = nn.Conv2d(6, 5, 3, padding=1)
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        a = torch.relu(self.bn1(self.conv1(x)))
        b = torch.relu(self.bn2(self.conv2(a)) + a)
        return self.fc(torch.relu(self.conv3(b)).mean(dim=(2, 3)))
