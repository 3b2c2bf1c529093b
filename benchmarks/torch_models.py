"""PyTorch references for `bench_cpu.py` and `bench_gpu.py`.

The CIFAR ResNets of He et al. (Sec. 4.2) and an ImageNet ResNet-50 as the paper
has it (Table 1, v1: the stride on the bottleneck's first 1x1 conv), written
out, and torchvision's ResNet-50 (v1.5: the stride on the 3x3 conv).

What a user would write instead of keras_resnet: eager PyTorch, NCHW, a 3x3
16-filter stem, three stages of 2n 3x3 layers (16, 32, 64 filters, the first
layer of stages 2 and 3 strided), global average pooling and a 10-way linear
layer. Shortcuts are option A (Sec. 3.3): identity, or on a change of size a
strided subsample with the new channels zero-padded at the end, as
keras_resnet's `ZeroPadShortcut` does; no parameters. `Placement` puts a step
on a GPU as a PyTorch user would there: channels_last, bfloat16 autocast and,
for the torch.compile rows, the compiled model.

torch is never a dependency of keras_resnet: only the benchmarks import this.
"""

import dataclasses
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


class Bottleneck(nn.Module):
    """1x1, 3x3, 1x1 conv-BN layers plus the shortcut (Fig. 5, right), v1: the
    first 1x1 conv strides, as keras_resnet's and keras.applications' do. A
    projection (option B) where the shape changes."""

    def __init__(self, in_channels: int, filters: int, stride: int):
        super().__init__()
        out_channels = 4 * filters
        self.conv1 = nn.Conv2d(in_channels, filters, 1, stride, bias=False)
        self.bn1 = nn.BatchNorm2d(filters)
        self.conv2 = nn.Conv2d(filters, filters, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(filters)
        self.conv3 = nn.Conv2d(filters, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.projection = None
        if stride > 1 or in_channels != out_channels:
            self.projection = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.projection is None else self.projection(x)))


class ResNet50(nn.Module):
    """ResNet-50 of Table 1 (v1), 224x224 images: the 7x7 stem, a 3x3 max pool,
    stages of 3, 4, 6 and 3 bottlenecks, global average pooling, a linear layer."""

    def __init__(self, classes: int = 1000):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64),
                                  nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        blocks, in_channels = [], 64
        for stage, (filters, count) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3))):
            for index in range(count):
                blocks.append(Bottleneck(in_channels, filters, 2 if stage and not index else 1))
                in_channels = 4 * filters
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(in_channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.blocks(self.stem(x)).mean(dim=(2, 3)))


def resnet50(classes: int = 1000) -> nn.Module:
    """torchvision's ResNet-50 (v1.5: the stride on the bottleneck's 3x3 conv)."""
    import torchvision

    return torchvision.models.resnet50(num_classes=classes)


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where and how a step runs: the CPU benchmark's defaults, or the GPU's
    channels_last, bfloat16 autocast and torch.compile."""
    device: str = "cpu"
    channels_last: bool = False
    bfloat16: bool = False
    compile: bool = False

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def model(self, model: nn.Module) -> nn.Module:
        return model.to(self.device, memory_format=self.memory_format)

    def images(self, images: np.ndarray) -> torch.Tensor:
        """NHWC numpy images (the Keras side's batch) as an NCHW tensor on the device."""
        x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
        return x.to(self.device, memory_format=self.memory_format)

    def autocast(self):
        return torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.bfloat16)


def train_step(model: nn.Module, images: np.ndarray, labels: np.ndarray, *,
               learning_rate: float, momentum: float, weight_decay: float,
               placement: Placement = Placement()) -> Callable[[], None]:
    """One SGD step of cross-entropy on the fixed batch, per call of the result. On a
    GPU the call returns once the step is queued, as a PyTorch training loop runs."""
    model = placement.model(model).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate, momentum=momentum,
                                weight_decay=weight_decay)
    forward = torch.compile(model) if placement.compile else model
    x = placement.images(images)
    y = torch.from_numpy(labels.astype(np.int64)).to(placement.device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with placement.autocast():
            loss = F.cross_entropy(forward(x), y)
        loss.backward()
        optimizer.step()

    return step


def inference_step(model: nn.Module, images: np.ndarray, *,
                   placement: Placement = Placement()) -> Callable[[], torch.Tensor]:
    """One forward pass in inference mode on the fixed batch, per call of the result,
    which returns the logits on the host (as Keras' `predict_on_batch` does)."""
    model = placement.model(model).eval()
    x = placement.images(images)

    def step() -> torch.Tensor:
        with torch.inference_mode(), placement.autocast():
            return model(x).float().cpu()

    return step
