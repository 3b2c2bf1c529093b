"""Model size and cost as the paper counts them, next to the paper's figures.

Parameters: trainable weights, as in paper Table 6 (0.27M for ResNet-20).
FLOPs: multiply-adds of one forward pass of one image, as in paper Table 1
(3.8e9 for ResNet-50 at 224x224) and Sec. 3.3 (3.6e9 for plain-34).
`count_params` and `count_flops` measure any built model; `counts` works out
the same two numbers for a name of the variant table without building it, as
Table 1 does, and `measure` puts them beside the paper's. `PAPER` holds those
figures and the paper's error rates, per model name.
"""

import dataclasses
import math

import keras

from keras_resnet.models import arguments
from keras_resnet.models import resnet
from keras_resnet.models.blocks import branch_convs
from keras_resnet.models.variants import blocks_of


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


def counts(
    name: str, image_size: int | None = None, *, shortcut: str | None = None, version: str = "v1"
) -> tuple[int, int]:
    """Trainable parameters and multiply-adds of `get_model(name)` at
    `image_size` (the family's by default), by arithmetic over its row of the
    variant table: what `count_params` and `count_flops` find in the built
    model, without building it. `shortcut` and `version` are those of
    `resnet.ResNet`."""
    spec = resnet.VARIANTS[resnet.canonical_name(name)]
    family = resnet.FAMILIES[spec.family]
    size = family.default_size if image_size is None else image_size
    arguments.check_min_size((size,), family, f"image_size={image_size}")
    shortcut = family.shortcut if shortcut is None else shortcut
    arguments.check_block_options(shortcut, version)
    convs = []  # (kernel size, input channels, output channels, output size)
    channels = family.widths[0]
    if family.stem == "cifar":
        convs.append((3, 3, channels, size))
    else:  # 7x7/2 conv, then a 3x3/2 max pool
        size = _strided(size, 2)
        convs.append((7, 3, channels, size))
        size = _strided(size, 2)
    for _, filters, strides in blocks_of(spec):
        width = channels
        for kernel, out, stride in branch_convs(spec.block, filters, strides, version):
            size = _strided(size, stride)
            convs.append((kernel, width, out, size))
            width = out
        grows = strides > 1 or width != channels
        if spec.residual and (shortcut == "C" or (shortcut == "B" and grows)):
            convs.append((1, channels, width, size))  # the projection (blocks.py)
        channels = width
    kernels = [k * k * c_in * c_out for k, c_in, c_out, _ in convs]
    # Each conv's BN learns a scale and an offset per channel; fc has a bias.
    params = sum(kernels) + sum(2 * c_out for _, _, c_out, _ in convs)
    flops = sum(w * s * s for w, (_, _, _, s) in zip(kernels, convs))
    return params + (channels + 1) * family.classes, flops + channels * family.classes


def _strided(size: int, strides: int) -> int:
    """The output size of every strided layer here (padded as blocks.py pads)."""
    return -(-size // strides)


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
    """Model `name`'s `counts` beside the paper's figures; nothing is built.

    Args:
        name: a name from `resnet.list_models()`.
        image_size: square input size; defaults to the family's (224 or 32).
    """
    name = resnet.canonical_name(name)
    family = resnet.VARIANTS[name].family
    size = resnet.FAMILIES[family].default_size if image_size is None else image_size
    params, flops = counts(name, size)
    paper = PAPER.get(name, PaperFigures())
    if size != resnet.FAMILIES[family].default_size:
        paper = dataclasses.replace(paper, flops=None)  # Given for 224x224.
    return Complexity(
        name=name, family=family, input_size=size, params=params, flops=flops, paper=paper
    )
