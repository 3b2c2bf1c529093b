"""Model size and cost as the paper counts them, next to the paper's figures.

Parameters: trainable weights, as in paper Table 6 (0.27M for ResNet-20).
FLOPs: multiply-adds of one forward pass of one image, as in paper Table 1
(3.8e9 for ResNet-50 at 224x224) and Sec. 3.3 (3.6e9 for plain-34).
`PAPER` holds those figures and the paper's error rates, per model name.
"""

import dataclasses
import math

import keras

from keras_resnet.models import resnet


@dataclasses.dataclass(frozen=True, kw_only=True)
class PaperFigures:
    """One model's figures in the paper; None where the paper gives none.

    Attributes:
        flops: multiply-adds at 224x224 (Table 1; plain-34: Sec. 3.3).
        params: trainable parameters (Table 6).
        top1: error % -- CIFAR-10 test error (Table 6) for the CIFAR family,
            ImageNet val 10-crop top-1 (Tables 2 and 3) for the ImageNet one.
        top5: ImageNet val 10-crop top-5 error % (Table 3).
    """

    flops: float | None = None
    params: float | None = None
    top1: float | None = None
    top5: float | None = None


PAPER = {
    "resnet18": PaperFigures(flops=1.8e9, top1=27.88),  # Table 2: option A.
    "resnet34": PaperFigures(flops=3.6e9, top1=24.52, top5=7.46),  # Table 3: B.
    "resnet50": PaperFigures(flops=3.8e9, top1=22.85, top5=6.71),
    "resnet101": PaperFigures(flops=7.6e9, top1=21.75, top5=6.05),
    "resnet152": PaperFigures(flops=11.3e9, top1=21.43, top5=5.71),
    "plain18": PaperFigures(top1=27.94),  # Table 2.
    "plain34": PaperFigures(flops=3.6e9, top1=28.54, top5=10.02),  # Table 3.
    "resnet20": PaperFigures(params=0.27e6, top1=8.75),
    "resnet32": PaperFigures(params=0.46e6, top1=7.51),
    "resnet44": PaperFigures(params=0.66e6, top1=7.17),
    "resnet56": PaperFigures(params=0.85e6, top1=6.97),
    "resnet110": PaperFigures(params=1.7e6, top1=6.43),  # Best of 5 runs.
    "resnet1202": PaperFigures(params=19.4e6, top1=7.93),
}

# The layers counted. Each costs `output positions * kernel size`
# multiply-adds: its kernel holds one weight per multiply-add at each output
# position (for grouped and depthwise convs too).
_COUNTED = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
    keras.layers.Dense,
)


def count_params(model: keras.Model, trainable_only: bool = True) -> int:
    """Number of parameters of `model`.

    By default only the trainable ones, which is what paper Table 6 counts:
    BatchNormalization's moving mean and variance are statistics, not learned.
    """
    weights = model.trainable_weights if trainable_only else model.weights
    return sum(math.prod(w.shape) for w in weights)


def count_flops(model: keras.Model) -> int:
    """Multiply-adds of one forward pass of one image, as the paper counts.

    Counts the conv layers (Conv1D/2D/3D, grouped and depthwise included)
    and the fully-connected (Dense) layers. Everything else is ignored, as in paper Table 1: biases,
    BatchNormalization, activations, additions and pooling. Nested models
    are walked; a layer (or nested model) is counted once, for one call.

    Raises:
        ValueError: if a counted layer's output size is not static, e.g. a
            model built without `input_shape=`.
    """
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += count_flops(layer)
        elif isinstance(layer, _COUNTED):
            total += _kernel_positions(layer, model) * math.prod(layer.kernel.shape)
    return total


def _kernel_positions(layer: keras.layers.Layer, model: keras.Model) -> int:
    """How many times `layer`'s kernel is applied to one image."""
    shape = list(layer.output.shape[1:])  # Without the batch axis.
    channels_first = getattr(layer, "data_format", None) == "channels_first"
    del shape[0 if channels_first else -1]
    if None in shape:
        raise ValueError(
            f"Cannot count the FLOPs of model {model.name!r}: layer "
            f"{layer.name!r} has output shape {layer.output.shape}, whose size "
            "is not static. Build the model with a fixed input size, e.g. "
            "`input_shape=(224, 224, 3)`."
        )
    return math.prod(shape)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Complexity:
    """One model's measured size and cost, and the paper's figures for it."""

    name: str
    family: str
    input_size: int
    params: int
    flops: int
    paper: PaperFigures


def measure(name: str, image_size: int | None = None) -> Complexity:
    """Builds model `name` (weights=None) and measures it.

    Args:
        name: a name from `resnet.list_models()`.
        image_size: square input size; defaults to the family's (224 or 32).
    """
    shape = None if image_size is None else (image_size, image_size, 3)
    model = resnet.get_model(name, weights=None, input_shape=shape)
    family = resnet.VARIANTS[model.name].family
    size = model.input_shape[2]  # Width, in either data format.
    paper = PAPER.get(model.name, PaperFigures())
    if size != resnet.FAMILIES[family].default_size:
        paper = dataclasses.replace(paper, flops=None)  # Given for 224x224.
    return Complexity(
        name=model.name,
        family=family,
        input_size=size,
        params=count_params(model),
        flops=count_flops(model),
        paper=paper,
    )
