"""torchvision's ResNet written out with its module names (torchvision is not
installed: its compiled ops do not load on the CPU torch build), random
weights and random BN statistics, its state dict saved as timm's
`model.safetensors` is: the reference that converted and published weights
are checked against (tests/models/test_convert.py, test_pretrained.py). And
the paper's CIFAR ResNet with option A shortcuts, which takes a Keras one's
weights: the reference its training steps are checked against
(tests/training/test_solver_matches_torch.py)."""

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


class CifarBlock(nn.Module):
    """The paper's CIFAR block (Sec. 4.2) with option A's shortcut: x[::2, ::2]
    and zero channels appended (Sec. 3.3)."""

    def __init__(self, inplanes, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.stride, self.extra = stride, planes - inplanes

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        identity = torch.nn.functional.pad(x[:, :, ::self.stride, ::self.stride],
                                           (0, 0, 0, 0, 0, self.extra))
        return torch.relu(self.bn2(self.conv2(out)) + identity)


class TorchCifarResNet(nn.Module):
    """The paper's 6n+2-layer CIFAR ResNet: a 3x3 conv, 3 stages of n blocks
    on 16, 32, 64 filters, global average pooling, a 10-way fc."""

    def __init__(self, depth, num_classes=10):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        blocks, inplanes = [], 16
        for stage, planes in enumerate((16, 32, 64)):
            for i in range(n):
                blocks.append(CifarBlock(inplanes, planes, 2 if stage and not i else 1))
                inplanes = planes
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.blocks(torch.relu(self.bn1(self.conv1(x))))
        return self.fc(x.mean((2, 3)))

    def keras_names(self):
        """(module, the Keras layer it is) for every module with weights."""
        n = len(self.blocks) // 3
        pairs = [(self.conv1, "conv1_conv"), (self.bn1, "conv1_bn"), (self.fc, "predictions")]
        for index, block in enumerate(self.blocks):
            name = f"conv{index // n + 2}_block{index % n + 1}"
            pairs += [(block.conv1, f"{name}_1_conv"), (block.bn1, f"{name}_1_bn"),
                      (block.conv2, f"{name}_2_conv"), (block.bn2, f"{name}_2_bn")]
        return pairs


def keras_tensors(module):
    """`module`'s tensors in the order of the Keras layer's weights: kernel
    (and bias), or gamma, beta, moving mean and variance."""
    if isinstance(module, nn.BatchNorm2d):
        return [module.weight, module.bias, module.running_mean, module.running_var]
    return [module.weight] + ([module.bias] if module.bias is not None else [])


def keras_layout(module, tensor):
    """`module`'s weight as Keras holds it: HWIO kernels, (in, out) dense."""
    tensor = tensor.detach().numpy()
    if isinstance(module, nn.Conv2d):
        return tensor.transpose(2, 3, 1, 0)
    return tensor.T if isinstance(module, nn.Linear) else tensor


def keras_values(module):
    """`module`'s tensors as the Keras layer's weights hold them."""
    return [keras_layout(module, tensor) for tensor in keras_tensors(module)]


def torch_cifar_net_like(backbone):
    """A TorchCifarResNet holding the weights and BN statistics of `backbone`
    (a Keras CIFAR ResNet with option A shortcuts), in training mode."""
    blocks = sum(layer.name.endswith("_2_conv") for layer in backbone.layers)
    net = TorchCifarResNet(2 * blocks + 2)
    with torch.no_grad():
        for module, name in net.keras_names():
            weights = backbone.get_layer(name).weights
            for tensor, weight in zip(keras_tensors(module), weights, strict=True):
                value = keras.ops.convert_to_numpy(weight)
                if value.ndim == 4:  # HWIO to OIHW
                    value = value.transpose(3, 2, 0, 1)
                tensor.copy_(torch.from_numpy(value.T if value.ndim == 2 else value))
    return net.train()
