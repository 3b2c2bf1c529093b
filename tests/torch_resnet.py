"""torchvision's ResNet written out with its module names (torchvision is not
installed: its compiled ops do not load on the CPU torch build), random
weights and random BN statistics, its state dict saved as timm's
`model.safetensors` is: the reference that converted and published weights
are checked against (tests/models/test_convert.py, test_pretrained.py)."""

import keras
import numpy as np
import safetensors.numpy
import torch
from torch import nn

CLASSES = 7
SIZE = 64
TOLERANCE = 1e-4  # max |ours - torch| / max |torch|


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    expansion = 4  # torchvision's: the stride on the 3x3 conv (v1.5)

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class TorchResNet(nn.Module):
    def __init__(self, block, layers, num_classes=CLASSES, in_chans=3):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(in_chans, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(block, 64, layers[0], 1)
        self.layer2 = self._make_layer(block, 128, layers[1], 2)
        self.layer3 = self._make_layer(block, 256, layers[2], 2)
        self.layer4 = self._make_layer(block, 512, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512 * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def stages(self, x):
        """The outputs of layer1 to layer4 (strides 4, 8, 16, 32)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outputs = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            outputs.append(x)
        return outputs

    def features(self, x):
        return torch.flatten(self.avgpool(self.stages(x)[-1]), 1)

    def forward(self, x):
        return self.fc(self.features(x))


ARCHS = {"resnet18": (BasicBlock, [2, 2, 2, 2]), "resnet34": (BasicBlock, [3, 4, 6, 3]),
         "resnet50": (Bottleneck, [3, 4, 6, 3])}


def torch_net(name, seed=0, **kwargs):
    """A torchvision-style net with random weights and random BN statistics, in eval mode."""
    torch.manual_seed(seed)
    net = TorchResNet(*ARCHS[name], **kwargs)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.2)
                module.running_mean.normal_(0.0, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    return net.eval()


def save(net, path):
    safetensors.numpy.save_file(
        {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}, str(path))
    return str(path)


def images(seed=1):
    return np.random.RandomState(seed).normal(0, 1, (2, SIZE, SIZE, 3)).astype("float32")


def torch_outputs(net, images, features=False):
    with torch.no_grad():
        x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
        return (net.features(x) if features else net(x)).numpy()


def torch_stages(net, images):
    """{"conv2": ..., "conv5": ...}: layer1 to layer4's outputs, channels last."""
    with torch.no_grad():
        x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
        return {f"conv{i + 2}": out.numpy().transpose(0, 2, 3, 1)
                for i, out in enumerate(net.stages(x))}


def relative_error(ours, reference):
    ours = keras.ops.convert_to_numpy(ours)
    assert ours.shape == reference.shape
    return float(np.max(np.abs(ours - reference)) / np.max(np.abs(reference)))
