"""torchvision and timm ResNet checkpoints as our models: `from_torchvision`.

It builds our model of the checkpoint's depth and loads its state dict
(keras_resnet.models.state_dicts, which reads `.safetensors` and `torch.save`
files without PyTorch, and maps their names onto our layers). torchvision's
(and timm's) ResNet-50/101/152 put the stride on the 3x3 conv: they come out
as `version="v1.5"`.
"""

import os
from collections.abc import Sequence

import keras

from keras_resnet.models import state_dicts
from keras_resnet.models.resnet import get_model
from keras_resnet.models.variants import VARIANTS


def from_torchvision(
    path: str | os.PathLike,
    name: str | None = None,
    *,
    include_top: bool = True,
    input_shape: Sequence[int | None] | None = None,
    pooling: str | None = None,
    classifier_activation: str | None = "softmax",
) -> keras.Model:
    """Our model with the weights of a torchvision/timm ResNet state dict.

    Args:
        path: a `.safetensors` or `torch.save` (`.pth`) file holding a
            torchvision or timm ResNet's state dict (`conv1.weight`, `bn1.*`,
            `layer1.0.conv1.weight`, ..., `fc.weight`, `fc.bias`).
        name: "resnet18", "resnet34", "resnet50", "resnet101" or "resnet152";
            None infers it from the blocks the file has.
        include_top: whether to keep the classifier: `fc` becomes
            `predictions`, with as many classes as `fc.weight` has rows.
            False ignores `fc`.
        input_shape: as for `get_model`.
        pooling: as for `get_model`.
        classifier_activation: as for `get_model`.

    Returns:
        A `keras.Model`: basic-block nets as the paper's (shortcut option B),
        bottleneck nets as `version="v1.5"`. The converter adds no
        preprocessing: torchvision's and timm's weights expect their
        normalisation, `get_preprocessing("tv_in1k")` (in front of the model
        with `with_preprocessing`).

    Raises:
        ValueError: the file is neither readable safetensors nor a readable
            `torch.save` file (keras_resnet.models.torch_files), is no ResNet
            of those depths, or does not fit `name`: the message names the
            first tensor that has no place in the model, is missing from the
            file, or has another shape.
    """
    path = os.fspath(path)
    tensors = state_dicts.read_tensors(path)
    inferred = name is None
    name = state_dicts.infer_name(path, tensors) if inferred else state_dicts.checked_name(name)
    spec = VARIANTS[name]
    if not include_top:
        tensors = {k: v for k, v in tensors.items() if not k.startswith("fc.")}
    elif "fc.weight" not in tensors:
        raise ValueError(
            f"{path}: the file has no classifier (fc.weight); pass include_top=False "
            "to convert its backbone"
        )
    model = get_model(
        name, include_top=include_top, input_shape=input_shape, pooling=pooling,
        classes=tensors["fc.weight"].shape[0] if include_top else None,
        classifier_activation=classifier_activation, shortcut="B",
        version="v1.5" if spec.block == "bottleneck" else "v1",
    )
    state_dicts.assign_tensors(model, path, tensors, name, inferred)
    return model
