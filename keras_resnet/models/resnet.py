"""ResNet builders: one generic builder over one table of variants.

ImageNet family: paper Table 1 (ResNet-18/34/50/101/152, 224x224 input).
CIFAR family: paper Sec. 4.2 (depth 6n+2: ResNet-20/32/44/56/110/1202).
Every residual net has a plain twin (Sec. 4.1, 4.2): the same stack, no shortcuts.
The table of variants is `variants.py`; the public per-variant builders
(`ResNet50`, ...) are in `applications.py`.
"""

import contextlib
import operator
import sys
from collections.abc import Iterator
from collections.abc import Sequence
from typing import Any

import keras

from keras_resnet.models import weights as weights_lib
from keras_resnet.models.arguments import Arguments
from keras_resnet.models.arguments import check_options
from keras_resnet.models.arguments import check_weights
from keras_resnet.models.arguments import checked_input_shape
from keras_resnet.models.blocks import BLOCKS
from keras_resnet.models.blocks import BlockSettings
from keras_resnet.models.layers import channel_axis
from keras_resnet.models.resolved import resolve_weights
from keras_resnet.models.variants import FAMILIES
from keras_resnet.models.variants import VARIANTS
from keras_resnet.models.variants import Family
from keras_resnet.models.variants import Variant
from keras_resnet.models.variants import blocks_of
from keras_resnet.models.variants import canonical_name
from keras_resnet.models.variants import list_models  # noqa: F401  (a name of this module too)


def get_model(name: str, **kwargs: Any) -> keras.Model:
    """Builds the model called `name` (see `list_models()`), e.g. "resnet50".

    Names are case-insensitive; "ResNet-50" works too. Keyword arguments are
    those of `ResNet`.
    """
    return ResNet(name, **kwargs)


def _model_input(
    input_tensor: keras.KerasTensor | None,
    input_shape: Sequence[int | None] | None,
    family: Family,
    args: Arguments,
) -> keras.KerasTensor:
    """The tensor the network starts from: `input_tensor`, or a new Input."""
    if input_tensor is None:
        inputs = keras.Input(shape=checked_input_shape(input_shape, family, args.include_top))
    elif keras.backend.is_keras_tensor(input_tensor):
        inputs = input_tensor
        checked_input_shape(input_tensor.shape[1:], family, args.include_top)
    else:
        raise ValueError(
            "`input_tensor` must be a Keras tensor (the output of "
            f"`keras.Input()`). Received: input_tensor={input_tensor!r}"
        )
    if args.weights.named and inputs.shape[channel_axis()] != 3:
        raise ValueError(
            "The published weights need 3 input channels (RGB). Received: "
            f"input_shape={tuple(inputs.shape[1:])}"
        )
    return inputs


def ResNet(
    variant: str,
    include_top: bool = True,
    weights: str | None = None,
    input_tensor: keras.KerasTensor | None = None,
    input_shape: Sequence[int | None] | None = None,
    pooling: str | None = None,
    classes: int | None = None,
    classifier_activation: str | None = "softmax",
    name: str | None = None,
    *,
    shortcut: str | None = None,
    version: str = "v1",
    zero_init_residual: bool = False,
    weight_decay: float = 0.0,
) -> keras.Model:
    """Builds a ResNet (or plain net) of the paper as a Functional model.

    Args:
        variant: a name from `list_models()`, e.g. "resnet50" or "plain20".
        include_top: whether to include the global average pooling and the
            fully-connected classifier (`avg_pool`, `predictions`).
        weights: None (He-normal initialisation), a name of
            `list_weights(variant)` ("imagenet": the authors' models for
            ResNet50/101/152, torchvision's for ResNet18/34), the path to a
            weights file (a Keras `.weights.h5`/`.keras` file, an HDF5 file in
            the legacy keras.applications layout, a torchvision or timm state
            dict). The package's own callers pass what
            `keras_resnet.models.resolved.resolve_weights` made of it.
        input_tensor: optional Keras tensor (output of `keras.Input()`) to use
            as the model's input.
        input_shape: optional (height, width, channels). Defaults to the
            family's size (224 or 32) with the top, any size without it. The
            network is fully convolutional, so the top also works at any size.
        pooling: with `include_top=False`: None (4D feature map), "avg" or
            "max" (global pooling to a 2D tensor).
        classes: number of classes (default: 1000 for the ImageNet family,
            10 for CIFAR).
        classifier_activation: activation of the `predictions` layer; None
            returns logits.
        name: the model's name (default: the variant's name).
        shortcut: "A" (zero-padding, parameter-free), "B" (projection where
            dimensions grow) or "C" (projection everywhere); paper Sec. 3.3.
            Defaults to B for ImageNet and A for CIFAR, as in the paper.
            Ignored by plain nets, which have no shortcuts.
        version: "v1" (default; stride on the bottleneck's first 1x1 conv, as
            the paper and its released models) or "v1.5" (stride on the 3x3).
        zero_init_residual: start the last BN gamma of each residual branch
            at zero.
        weight_decay: L2 weight decay of conv and dense kernels in Caffe's
            convention (the paper uses 1e-4); 0 adds no regularization loss.

    Returns:
        A `keras.Model`.
    """
    variant_name = canonical_name(variant)
    spec = VARIANTS[variant_name]
    family = FAMILIES[spec.family]
    weights = resolve_weights(variant_name, weights)
    args = Arguments(
        include_top=include_top, weights=weights, pooling=pooling,
        classes=family.classes if classes is None else classes,
        classifier_activation=classifier_activation,
        shortcut=family.shortcut if shortcut is None else shortcut,
        version=version, zero_init_residual=zero_init_residual, weight_decay=weight_decay,
    )
    check_options(variant_name, spec, args)
    check_weights(args)
    inputs = _model_input(input_tensor, input_shape, family, args)
    settings = args.block_settings(residual=spec.residual)
    x = _stem(inputs, family, settings)
    x = _stages(x, spec, settings)
    outputs = _head(x, args)
    # A model on a user's `input_tensor` starts from the Input(s) it comes from.
    sources = inputs if input_tensor is None else keras.utils.get_source_inputs(inputs)
    with _recursion_limit(50 * sum(spec.blocks_per_stage) + 1000):
        model = keras.Model(sources, outputs, name=name or variant_name)
    if weights.given is not None:
        weights_lib.load_weights(model, weights, include_top)
    return model


@contextlib.contextmanager
def _recursion_limit(limit: int) -> Iterator[None]:
    """Keras walks the layer graph recursively; ResNet-1202 is 4,000 layers deep."""
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(max(previous, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)


def classifier(
    classes: int, activation: str | None = "softmax", weight_decay: float = 0.0
) -> keras.layers.Dense:
    """The fully-connected `predictions` layer of the head (Table 1: "fc").

    Under a mixed-precision policy it computes in float32, softmax included.
    `classes` may be a NumPy integer, which Dense alone refuses.
    """
    mixed = keras.config.dtype_policy().name.startswith("mixed")
    return keras.layers.Dense(
        operator.index(classes),
        activation=activation,
        kernel_initializer="he_normal",
        kernel_regularizer=BlockSettings(weight_decay=weight_decay).regularizer,
        dtype="float32" if mixed else None,
        name="predictions",
    )


def _stem(x: keras.KerasTensor, family: Family, settings: BlockSettings) -> keras.KerasTensor:
    """conv1 (and pool1 for ImageNet) of Table 1; the 3x3 conv of Sec. 4.2."""
    if family.stem == "cifar":
        return settings.conv_bn_relu(x, family.widths[0], 3, 1, "conv1")
    x = settings.conv_bn_relu(x, family.widths[0], 7, 2, "conv1")
    # Padding with zeros before max pooling is safe: the inputs are >= 0.
    x = keras.layers.ZeroPadding2D(1, name="pool1_pad")(x)
    return keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)


def _stages(x: keras.KerasTensor, spec: Variant, settings: BlockSettings) -> keras.KerasTensor:
    """The stacked blocks, conv2_x to conv5_x (Table 1) or the 3 CIFAR stages."""
    block_fn = BLOCKS[spec.block]
    for name, filters, strides in blocks_of(spec):
        x = block_fn(x, filters, strides, settings, name)
    return x


def _head(x: keras.KerasTensor, args: Arguments) -> keras.KerasTensor:
    """Global average pooling and the fc classifier, or the pooling asked for."""
    if args.include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        return classifier(args.classes, args.classifier_activation, args.weight_decay)(x)
    if args.pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if args.pooling == "max":
        return keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    return x
