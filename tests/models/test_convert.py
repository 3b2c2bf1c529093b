"""torchvision/timm checkpoints (keras_resnet.models.convert): the converted
model computes what the PyTorch net computes, with its top and without it, also
after a .keras round trip; files of another depth, shape or a broken file are
refused by name. The PyTorch reference is torchvision's ResNet written out in
tests/torch_resnet.py, with its module names."""

import os

import keras
import pytest
import safetensors.numpy

import keras_resnet
from tests.torch_resnet import CLASSES
from tests.torch_resnet import SIZE
from tests.torch_resnet import TOLERANCE
from tests.torch_resnet import images
from tests.torch_resnet import relative_error
from tests.torch_resnet import save
from tests.torch_resnet import torch_net
from tests.torch_resnet import torch_outputs


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    """name -> (torch net, its state dict's .safetensors file), made once."""
    folder = tmp_path_factory.mktemp("checkpoints")
    return {name: (net, save(net, folder / f"{name}.safetensors"))
            for name, net in ((n, torch_net(n)) for n in ("resnet18", "resnet50"))}


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
    x = images()
    reference = torch_outputs(net, x)
    assert relative_error(model(x, training=False), reference) <= TOLERANCE


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_without_the_top_it_gives_pytorchs_pooled_features(nets, name):
    net, path = nets[name]
    model = keras_resnet.from_torchvision(path, include_top=False, pooling="avg")
    assert "predictions" not in [layer.name for layer in model.layers]
    x = images()
    reference = torch_outputs(net, x, features=True)
    assert relative_error(model(x, training=False), reference) <= TOLERANCE


def test_the_converted_model_survives_a_keras_round_trip(nets, tmp_path):
    net, path = nets["resnet18"]
    model = keras_resnet.from_torchvision(
        path, "ResNet-18", input_shape=(SIZE, SIZE, 3), classifier_activation=None)
    model.save(tmp_path / "converted.keras")
    loaded = keras.saving.load_model(tmp_path / "converted.keras")
    x = images()
    reference = torch_outputs(net, x)
    assert relative_error(loaded(x, training=False), reference) <= TOLERANCE


def test_a_file_of_another_depth_is_refused_by_its_first_tensor(nets, tmp_path):
    resnet18, resnet50 = nets["resnet18"][1], nets["resnet50"][1]
    with pytest.raises(ValueError, match="tensor 'layer1.2.conv1.weight', which resnet34 needs, "
                                         "is missing from the file"):
        keras_resnet.from_torchvision(resnet18, "resnet34", include_top=False)
    with pytest.raises(ValueError, match=r"tensor 'layer1.0.conv3.weight' has no place in "
                                         r"resnet34 \(its blocks are basic"):
        keras_resnet.from_torchvision(resnet50, "resnet34", include_top=False)
    resnet34 = save(torch_net("resnet34"), tmp_path / "resnet34.safetensors")
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
    path = save(torch_net("resnet18", in_chans=1), tmp_path / "gray.safetensors")
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
    with pytest.raises(ValueError, match=r"must be a .safetensors or torch.save \(.pth\) file"):
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
