"""ResNet builders: one generic builder over one table of variants.

ImageNet family: paper Table 1 (ResNet-18/34/50/101/152, 224x224 input).
CIFAR family: paper Sec. 4.2 (depth 6n+2: ResNet-20/32/44/56/110/1202).
Every residual net has a plain twin (Sec. 4.1, 4.2): the same stack, no shortcuts.
"""

import contextlib
import dataclasses
import inspect
import sys

import keras

from keras_resnet import weights as weights_lib
from keras_resnet.blocks import BLOCKS
from keras_resnet.blocks import SHORTCUT_OPTIONS
from keras_resnet.blocks import VERSIONS
from keras_resnet.blocks import BlockSettings
from keras_resnet.layers import channel_axis


@dataclasses.dataclass(frozen=True)
class Family:
    """What the networks trained on one data set share (stem, widths, head)."""

    stem: str  # "imagenet": 7x7/2 conv + 3x3/2 max pool; "cifar": 3x3 conv.
    widths: tuple  # filters of each stage's first conv (bottleneck width).
    default_size: int
    min_size: int  # the network's total stride: smaller inputs vanish.
    classes: int
    shortcut: str  # the paper's default option.


FAMILIES = {
    "imagenet": Family("imagenet", (64, 128, 256, 512), 224, 32, 1000, "B"),
    "cifar": Family("cifar", (16, 32, 64), 32, 4, 10, "A"),
}


@dataclasses.dataclass(frozen=True)
class Variant:
    family: str
    block: str
    blocks_per_stage: tuple
    residual: bool = True


def _cifar(n):
    return Variant("cifar", "basic", (n, n, n))


_RESIDUAL = {
    "resnet18": Variant("imagenet", "basic", (2, 2, 2, 2)),
    "resnet34": Variant("imagenet", "basic", (3, 4, 6, 3)),
    "resnet50": Variant("imagenet", "bottleneck", (3, 4, 6, 3)),
    "resnet101": Variant("imagenet", "bottleneck", (3, 4, 23, 3)),
    "resnet152": Variant("imagenet", "bottleneck", (3, 8, 36, 3)),
    "resnet20": _cifar(3),
    "resnet32": _cifar(5),
    "resnet44": _cifar(7),
    "resnet56": _cifar(9),
    "resnet110": _cifar(18),
    "resnet1202": _cifar(200),
}
VARIANTS = dict(_RESIDUAL)
VARIANTS.update(
    (name.replace("resnet", "plain"), dataclasses.replace(v, residual=False))
    for name, v in _RESIDUAL.items()
)


def list_models():
    """Every name `get_model` accepts, ImageNet family first, by depth."""
    return sorted(
        VARIANTS,
        key=lambda n: (
            VARIANTS[n].family != "imagenet",
            not VARIANTS[n].residual,
            int(n.lstrip("resnetplain")),
        ),
    )


def canonical_name(name):
    """The table's name for `name` ("ResNet-50" -> "resnet50"), or ValueError."""
    key = str(name).lower().replace("-", "").replace("_", "")
    if key not in VARIANTS:
        raise ValueError(
            f"Unknown model name: {name!r}. Available: {', '.join(list_models())}"
        )
    return key


def family_of(name=None, image_size=None):
    """"imagenet" or "cifar": the variant's family if `name` is a variant's,
    else by input size (under 64 pixels: CIFAR). Decides the test protocol."""
    if name in VARIANTS:
        return VARIANTS[name].family
    return "cifar" if image_size is not None and image_size < 64 else "imagenet"


def get_model(name, **kwargs):
    """Builds the model called `name` (see `list_models()`), e.g. "resnet50".

    Names are case-insensitive; "ResNet-50" works too. Keyword arguments are
    those of `ResNet`.
    """
    return ResNet(name, **kwargs)


def _input_shape(input_shape, family, include_top):
    """Validates `input_shape` (channels_last or channels_first, 3 entries)."""
    channels_first = keras.config.image_data_format() == "channels_first"
    if input_shape is None:
        size = family.default_size if include_top else None
        return (3, size, size) if channels_first else (size, size, 3)
    input_shape = tuple(input_shape)
    if len(input_shape) != 3:
        raise ValueError(
            "`input_shape` must be a tuple of three integers "
            f"(height, width, channels). Received: input_shape={input_shape}"
        )
    spatial = input_shape[1:] if channels_first else input_shape[:2]
    if any(s is not None and s < family.min_size for s in spatial):
        raise ValueError(
            f"Input size must be at least {family.min_size}x{family.min_size}"
            f" for this model. Received: input_shape={input_shape}"
        )
    return input_shape


def _validate(name, variant, family, kw):
    """Checks the arguments against each other, before anything is built."""
    weights = kw["weights"]
    if kw["shortcut"] not in SHORTCUT_OPTIONS:
        raise ValueError(
            f"Unknown shortcut option: {kw['shortcut']!r}. "
            f"Accepted: {', '.join(SHORTCUT_OPTIONS)} (paper Sec. 3.3)."
        )
    if kw["version"] not in VERSIONS:
        raise ValueError(
            f"Unknown version: {kw['version']!r}. Accepted: "
            "'v1' (stride on the bottleneck's first 1x1, as in the paper) "
            "or 'v1.5' (stride on its 3x3)."
        )
    if kw["pooling"] not in (None, "avg", "max"):
        raise ValueError(
            "`pooling` must be None, 'avg' or 'max'. "
            f"Received: pooling={kw['pooling']!r}"
        )
    if kw["zero_init_residual"] and not variant.residual:
        raise ValueError(
            f"zero_init_residual=True needs residual blocks; {name} is a plain "
            "net, whose blocks would then output zeros."
        )
    if not kw["weight_decay"] >= 0:
        raise ValueError(
            f"`weight_decay` must be >= 0. Received: weight_decay={kw['weight_decay']}"
        )
    if weights is None:
        return
    if weights == "imagenet":
        weights_lib.check_published(name, kw)
    elif not isinstance(weights, str) or not weights_lib.exists(weights):
        raise ValueError(
            "The `weights` argument should be either None (random "
            "initialization), 'imagenet' (pre-training on ImageNet), or the "
            f"path to an existing weights file. Received: weights={weights!r}"
        )
    if kw["include_top"] and kw["classifier_activation"] not in (None, "softmax"):
        raise ValueError(
            "Only None and 'softmax' activations are allowed for "
            "`classifier_activation` when loading weights with "
            "include_top=True. Received: "
            f"classifier_activation={kw['classifier_activation']!r}"
        )


def ResNet(
    variant,
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=None,
    classifier_activation="softmax",
    name=None,
    *,
    shortcut=None,
    version="v1",
    zero_init_residual=False,
    weight_decay=0.0,
):
    """Builds a ResNet (or plain net) of the paper as a Functional model.

    Args:
        variant: a name from `list_models()`, e.g. "resnet50" or "plain20".
        include_top: whether to include the global average pooling and the
            fully-connected classifier (`avg_pool`, `predictions`).
        weights: None (He-normal initialisation), "imagenet" (the published
            keras.applications weights; ResNet50/101/152), or the path to a
            weights file: a Keras `.weights.h5`/`.keras` file, or an HDF5 file
            in the legacy keras.applications layout.
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
    variant = VARIANTS[variant_name]
    family = FAMILIES[variant.family]
    kw = dict(
        include_top=include_top,
        weights=weights,
        pooling=pooling,
        classes=family.classes if classes is None else classes,
        classifier_activation=classifier_activation,
        shortcut=family.shortcut if shortcut is None else shortcut,
        version=version,
        zero_init_residual=zero_init_residual,
        weight_decay=weight_decay,
    )
    _validate(variant_name, variant, family, kw)
    settings = BlockSettings(
        shortcut=kw["shortcut"] if variant.residual else None,
        version=version,
        zero_init_residual=zero_init_residual,
        weight_decay=weight_decay,
    )

    if input_tensor is None:
        inputs = keras.Input(shape=_input_shape(input_shape, family, include_top))
    elif keras.backend.is_keras_tensor(input_tensor):
        inputs = input_tensor
        _input_shape(input_tensor.shape[1:], family, include_top)
    else:
        raise ValueError(
            "`input_tensor` must be a Keras tensor (the output of "
            f"`keras.Input()`). Received: input_tensor={input_tensor!r}"
        )

    if weights == "imagenet" and inputs.shape[channel_axis()] != 3:
        raise ValueError(
            "The published weights need 3 input channels (RGB). Received: "
            f"input_shape={tuple(inputs.shape[1:])}"
        )
    x = _stem(inputs, family, settings)
    block_fn = BLOCKS[variant.block]
    for stage, (filters, blocks) in enumerate(
        zip(family.widths, variant.blocks_per_stage), start=2
    ):
        for i in range(1, blocks + 1):
            # conv2_x keeps the stem's resolution; later stages halve it.
            strides = 2 if i == 1 and stage > 2 else 1
            x = block_fn(x, filters, strides, settings, f"conv{stage}_block{i}")
    x = _head(x, include_top, pooling, kw, settings)

    inputs = keras.utils.get_source_inputs(inputs) if input_tensor is not None else inputs
    with _recursion_limit(50 * sum(variant.blocks_per_stage) + 1000):
        model = keras.Model(inputs, x, name=name or variant_name)
    if weights is not None:
        weights_lib.load(model, weights, variant_name, include_top)
    return model


@contextlib.contextmanager
def _recursion_limit(limit):
    """Keras walks the layer graph recursively; ResNet-1202 is 4,000 layers deep."""
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(max(previous, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)


def classifier(classes, activation="softmax", weight_decay=0.0):
    """The fully-connected `predictions` layer of the head (Table 1: "fc").

    Under a mixed-precision policy it computes in float32, softmax included.
    """
    mixed = keras.config.dtype_policy().name.startswith("mixed")
    return keras.layers.Dense(
        classes,
        activation=activation,
        kernel_initializer="he_normal",
        kernel_regularizer=BlockSettings(weight_decay=weight_decay).regularizer,
        dtype="float32" if mixed else None,
        name="predictions",
    )


def _stem(x, family, settings):
    if family.stem == "cifar":
        return settings.conv_bn_relu(x, family.widths[0], 3, 1, "conv1")
    x = settings.conv_bn_relu(x, family.widths[0], 7, 2, "conv1")
    # Padding with zeros before max pooling is safe: the inputs are >= 0.
    x = keras.layers.ZeroPadding2D(1, name="pool1_pad")(x)
    return keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)


def _head(x, include_top, pooling, kw, settings):
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        return classifier(kw["classes"], kw["classifier_activation"], settings.weight_decay)(x)
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    return x


def _public_builder(variant_name, description):
    """A keras.applications-style builder for one variant of the table.

    Its signature is `ResNet`'s without `variant`; `weights` defaults to
    "imagenet" where published weights exist, as in keras.applications.
    """
    default_weights = "imagenet" if variant_name in weights_lib.PUBLISHED else None
    params = list(inspect.signature(ResNet).parameters.values())[1:]
    signature = inspect.Signature(
        [p.replace(default=default_weights) if p.name == "weights" else p for p in params]
    )

    def builder(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return ResNet(variant_name, **bound.arguments)

    builder.__signature__ = signature
    builder.__name__ = builder.__qualname__ = (
        variant_name.replace("resnet", "ResNet").replace("plain", "Plain")
    )
    builder.__doc__ = (
        f"Instantiates {description} (weights={default_weights!r} by default).\n\n"
        "Arguments are those of `keras_resnet.ResNet`, less `variant`."
    )
    return builder


ResNet18 = _public_builder("resnet18", "ResNet-18 (paper Table 1)")
ResNet34 = _public_builder("resnet34", "ResNet-34 (paper Table 1)")
ResNet50 = _public_builder("resnet50", "ResNet-50 (paper Table 1)")
ResNet101 = _public_builder("resnet101", "ResNet-101 (paper Table 1)")
ResNet152 = _public_builder("resnet152", "ResNet-152 (paper Table 1)")
Plain18 = _public_builder("plain18", "plain-18, ResNet-18 without shortcuts")
Plain34 = _public_builder("plain34", "plain-34, ResNet-34 without shortcuts")
ResNet20 = _public_builder("resnet20", "CIFAR ResNet-20 (paper Sec. 4.2)")
ResNet32 = _public_builder("resnet32", "CIFAR ResNet-32 (paper Sec. 4.2)")
ResNet44 = _public_builder("resnet44", "CIFAR ResNet-44 (paper Sec. 4.2)")
ResNet56 = _public_builder("resnet56", "CIFAR ResNet-56 (paper Sec. 4.2)")
ResNet110 = _public_builder("resnet110", "CIFAR ResNet-110 (paper Sec. 4.2)")
ResNet1202 = _public_builder("resnet1202", "CIFAR ResNet-1202 (paper Sec. 4.2)")
Plain20 = _public_builder("plain20", "CIFAR plain-20 (paper Sec. 4.2, Fig. 6)")
Plain32 = _public_builder("plain32", "CIFAR plain-32 (paper Sec. 4.2, Fig. 6)")
Plain44 = _public_builder("plain44", "CIFAR plain-44 (paper Sec. 4.2, Fig. 6)")
Plain56 = _public_builder("plain56", "CIFAR plain-56 (paper Sec. 4.2, Fig. 6)")
Plain110 = _public_builder("plain110", "CIFAR plain-110 (paper Sec. 4.2, Fig. 6)")
