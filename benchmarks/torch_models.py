"""PyTorch references for `bench_cpu.py`: the CIFAR ResNets of He et al. (Sec. 4.2).

What a user would write instead of keras_resnet: eager PyTorch, NCHW, a 3x3
16-filter stem, three stages of 2n 3x3 layers (16, 32, 64 filters, the first
layer of stages 2 and 3 strided), global average pooling and a 10-way linear
layer. Shortcuts are option A (Sec. 3.3): identity, or on a change of size a
strided subsample with the new channels zero-padded at the end, as
keras_resnet's `ZeroPadShortcut` does; no parameters.

torch is never a dependency of keras_resnet: only the benchmarks import this.
"""

from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus the option-A shortcut (Fig. 2, left)."""

    def __init__(self, in_channels: int, filters: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, filters, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(filters)
        self.conv2 = nn.Conv2d(filters, filters, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(filters)
        self.stride = stride
        self.extra_channels = filters - in_channels

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, ::self.stride, ::self.stride]
        if self.extra_channels:
            x = F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))  # (W, H, C) pairs, last first.
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-`depth` for 32x32 images, depth = 6n + 2 (20, 32, 44, 56, 110, 1202)."""

    def __init__(self, depth: int = 20, classes: int = 10):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n + 2 with n >= 1. Received: depth={depth}")
        blocks_per_stage = (depth - 2) // 6
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16),
                                  nn.ReLU())
        blocks, in_channels = [], 16
        for stage, filters in enumerate((16, 32, 64)):
            for index in range(blocks_per_stage):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(BasicBlock(in_channels, filters, stride))
                in_channels = filters
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.blocks(self.stem(x)).mean(dim=(2, 3)))


def _nchw(images: np.ndarray) -> torch.Tensor:
    """NHWC numpy images (the Keras side's batch) as an NCHW float tensor."""
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


def train_step(model: nn.Module, images: np.ndarray, labels: np.ndarray, *,
               learning_rate: float, momentum: float,
               weight_decay: float) -> Callable[[], None]:
    """One SGD step of cross-entropy on the fixed batch, per call of the result."""
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate, momentum=momentum,
                                weight_decay=weight_decay)
    x, y = _nchw(images), torch.from_numpy(labels.astype(np.int64))

    def step() -> None:
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    return step


def inference_step(model: nn.Module, images: np.ndarray) -> Callable[[], None]:
    """One forward pass in inference mode on the fixed batch, per call of the result."""
    model.eval()
    x = _nchw(images)

    def step() -> None:
        with torch.inference_mode():
            model(x)

    return step
