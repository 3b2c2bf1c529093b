"""torchvision/timm checkpoints (keras_resnet.models.convert): the converted
model computes what the PyTorch net computes, with its top and without it, also
after a .keras round trip; files of another depth, shape or a broken file are
refused by name. The PyTorch reference is torchvision's ResNet written out here
(torchvision is not installed), with its module names."""

import os

import keras
import numpy as np
import pytest
import safetensors.numpy
import torch
from torch import nn

import keras_resnet

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

    def features(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x):
        return self.fc(self.features(x))


ARCHS = {"resnet18": (BasicBlock, [2, 2, 2, 2]), "resnet34": (BasicBlock, [3, 4, 6, 3]),
         "resnet50": (Bottleneck, [3, 4, 6, 3])}


def _torch_net(name, seed=0, **kwargs):
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


def _save(net, path):
    safetensors.numpy.save_file(
        {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}, str(path))
    return str(path)


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    """name -> (torch net, its state dict's .safetensors file), made once."""
    folder = tmp_path_factory.mktemp("checkpoints")
    return {name: (net, _save(net, folder / f"{name}.safetensors"))
            for name, net in ((n, _torch_net(n)) for n in ("resnet18", "resnet50"))}


def _images():
    return np.random.RandomState(1).normal(0, 1, (2, SIZE, SIZE, 3)).astype("float32")


def _torch_outputs(net, images, features=False):
    with torch.no_grad():
        x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
        return (net.features(x) if features else net(x)).numpy()


def _relative_error(ours, reference):
    ours = keras.ops.convert_to_numpy(ours)
    assert ours.shape == reference.shape
    return float(np.max(np.abs(ours - reference)) / np.max(np.abs(reference)))


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_the_converted_classifier_gives_pytorchs_logits(nets, name):
    net, path = nets[name]
    model = keras_resnet.from_torchvision(
        path, input_shape=(SIZE, SIZE, 3), classifier_activation=None)
    # Inferred from the file: the depth, the classes, and torchvision's v1.5 bottleneck.
    assert model.name == name
    assert model.get_layer("predictions").units == CLASSES
    if name == "resnet50":
        assert model.get_layer("conv3_block1_2_conv").strides == (2, 2)
        assert model.get_layer("conv3_block1_1_conv").strides == (1, 1)
    images = _images()
    reference = _torch_outputs(net, images)
    assert _relative_error(model(images, training=False), reference) <= TOLERANCE


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_without_the_top_it_gives_pytorchs_pooled_features(nets, name):
    net, path = nets[name]
    model = keras_resnet.from_torchvision(path, include_top=False, pooling="avg")
    assert "predictions" not in [layer.name for layer in model.layers]
    images = _images()
    reference = _torch_outputs(net, images, features=True)
    assert _relative_error(model(images, training=False), reference) <= TOLERANCE


def test_the_converted_model_survives_a_keras_round_trip(nets, tmp_path):
    net, path = nets["resnet18"]
    model = keras_resnet.from_torchvision(
        path, "ResNet-18", input_shape=(SIZE, SIZE, 3), classifier_activation=None)
    model.save(tmp_path / "converted.keras")
    loaded = keras.saving.load_model(tmp_path / "converted.keras")
    images = _images()
    reference = _torch_outputs(net, images)
    assert _relative_error(loaded(images, training=False), reference) <= TOLERANCE


def test_a_file_of_another_depth_is_refused_by_its_first_tensor(nets, tmp_path):
    resnet18, resnet50 = nets["resnet18"][1], nets["resnet50"][1]
    with pytest.raises(ValueError, match="tensor 'layer1.2.conv1.weight', which resnet34 needs, "
                                         "is missing from the file"):
        keras_resnet.from_torchvision(resnet18, "resnet34", include_top=False)
    with pytest.raises(ValueError, match=r"tensor 'layer1.0.conv3.weight' has no place in "
                                         r"resnet34 \(its blocks are basic"):
        keras_resnet.from_torchvision(resnet50, "resnet34", include_top=False)
    resnet34 = _save(_torch_net("resnet34"), tmp_path / "resnet34.safetensors")
    with pytest.raises(ValueError) as error:
        keras_resnet.from_torchvision(resnet34, "resnet18", include_top=False)
    assert str(error.value) == (
        f"{resnet34}: tensor 'layer1.2.conv1.weight' has no place in resnet18 "
        "(it has layer1.0 to layer1.1); is the file a ResNet of another depth?")
    with pytest.raises(ValueError, match=r"name must be None or one of resnet18, .*resnet152\. "
                                         r"Received: name='resnet20'"):
        keras_resnet.from_torchvision(resnet18, "resnet20")


def test_a_tensor_of_another_shape_is_refused_with_both_shapes(tmp_path):
    # A grayscale checkpoint (timm's in_chans=1) converted for RGB inputs.
    path = _save(_torch_net("resnet18", in_chans=1), tmp_path / "gray.safetensors")
    with pytest.raises(ValueError, match=r"tensor 'conv1.weight' has shape \(64, 1, 7, 7\), "
                                         r"but resnet18 needs \(64, 3, 7, 7\)"):
        keras_resnet.from_torchvision(path, input_shape=(SIZE, SIZE, 3))


def test_a_file_missing_a_tensor_names_it(nets, tmp_path):
    tensors = safetensors.numpy.load_file(nets["resnet18"][1])
    del tensors["layer3.1.bn2.running_var"]
    path = str(tmp_path / "incomplete.safetensors")
    safetensors.numpy.save_file(tensors, path)
    with pytest.raises(ValueError, match="tensor 'layer3.1.bn2.running_var', which resnet18 "
                                         "needs, is missing from the file"):
        keras_resnet.from_torchvision(path)
    del tensors["fc.weight"]
    safetensors.numpy.save_file(tensors, path)
    with pytest.raises(ValueError, match=r"no classifier \(fc.weight\); pass include_top=False"):
        keras_resnet.from_torchvision(path)


def test_a_broken_file_is_refused_in_one_line(nets, tmp_path):
    with open(nets["resnet18"][1], "rb") as f:
        data = f.read()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError) as error:
        keras_resnet.from_torchvision(str(truncated))
    message = str(error.value)
    assert message.startswith(f"{truncated}: not a readable safetensors file (")
    assert "\n" not in message
    with pytest.raises(ValueError, match="must be a .safetensors file"):
        keras_resnet.from_torchvision(os.fspath(tmp_path / "absent.safetensors"))


def test_a_file_of_no_known_depth_is_refused_naming_its_blocks(nets, tmp_path):
    tensors = safetensors.numpy.load_file(nets["resnet18"][1])
    tensors = {k: v for k, v in tensors.items() if not k.startswith("layer4.1.")}
    path = str(tmp_path / "odd.safetensors")
    safetensors.numpy.save_file(tensors, path)
    with pytest.raises(ValueError, match=r"basic blocks \[2, 2, 2, 1\] in layer1 to layer4, "
                                         r"which is no torchvision/timm ResNet\. Accepted: "
                                         r"resnet18: basic \[2, 2, 2, 2\]"):
        keras_resnet.from_torchvision(path)
