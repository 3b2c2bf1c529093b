"""The checks of `ResNet`'s arguments, made before anything is built.

`Arguments`: those that shape the network, the family's defaults filled in.
`checked_input_shape` refuses an input shape that is not three sizes >= 1
(height and width may be None) or that the network's total stride would
shrink to nothing; `check_options` a shortcut option, version, pooling or
class count the paper does not have, or zero-initialised residual branches on
a plain net; `check_weights` published weights that do not fit the other
arguments, or a classifier activation that loaded weights were not trained
with (which `weights` exist at all, `resolve_weights` decides:
keras_resnet.models.resolved). Each names the argument it refuses.
"""

import dataclasses
import operator
from collections.abc import Sequence
from typing import Any

import keras

from keras_resnet.models.blocks import BlockSettings
from keras_resnet.models.blocks import SHORTCUT_OPTIONS
from keras_resnet.models.blocks import VERSIONS
from keras_resnet.models.resolved import ResolvedWeights
from keras_resnet.models.variants import Family
from keras_resnet.models.variants import Variant


@dataclasses.dataclass(frozen=True, kw_only=True)
class Arguments:
    """`ResNet`'s arguments that shape the network, family defaults filled in."""

    include_top: bool
    weights: ResolvedWeights
    pooling: str | None
    classes: int
    classifier_activation: str | None
    shortcut: str
    version: str
    zero_init_residual: bool
    weight_decay: float

    def block_settings(self, residual: bool) -> BlockSettings:
        """What every block shares; a plain net (not `residual`) has no shortcuts."""
        return BlockSettings(
            shortcut=self.shortcut if residual else None,
            version=self.version,
            zero_init_residual=self.zero_init_residual,
            weight_decay=self.weight_decay,
        )


def checked_input_shape(
    input_shape: Sequence[int | None] | None, family: Family, include_top: bool
) -> tuple[int | None, ...]:
    """`input_shape` as a tuple (the family's size if None), or ValueError."""
    channels_first = keras.config.image_data_format() == "channels_first"
    if input_shape is None:
        size = family.default_size if include_top else None
        return (3, size, size) if channels_first else (size, size, 3)
    shape = _as_shape(input_shape, channels_first)
    if shape is None:
        raise ValueError(
            "`input_shape` must be a tuple of three integers (height, width, "
            "channels), each >= 1; height and width may be None (any size). "
            f"Received: input_shape={input_shape!r}"
        )
    input_shape = shape
    spatial = input_shape[1:] if channels_first else input_shape[:2]
    check_min_size(spatial, family, f"input_shape={input_shape}")
    return input_shape


def check_min_size(sizes: Sequence[int | None], family: Family, received: str) -> None:
    """ValueError unless every one of `sizes` (None: any) is at least the
    family's smallest input; `received` names the argument in the message."""
    if any(s is not None and s < family.min_size for s in sizes):
        raise ValueError(
            f"Input size must be at least {family.min_size}x{family.min_size}"
            f" for this model. Received: {received}"
        )


def _as_shape(input_shape: Any, channels_first: bool) -> tuple[int | None, ...] | None:
    """`input_shape` as a tuple if it is three sizes >= 1, of which height and
    width may be None; else None. Keras itself would build a model that no
    image fits (0 channels), or fail later naming a layer, not the argument."""
    if isinstance(input_shape, (str, bytes)):
        return None
    try:
        shape = tuple(input_shape)
    except TypeError:  # not iterable, e.g. a single int
        return None
    if len(shape) != 3:
        return None
    channels = shape[0] if channels_first else shape[-1]
    if channels is None or not all(s is None or _is_count(s) for s in shape):
        return None
    return shape


def _is_count(value: Any) -> bool:
    """Whether `value` is an integer >= 1 (Python's or NumPy's, not a bool)."""
    if isinstance(value, bool):
        return False
    try:
        return operator.index(value) >= 1
    except TypeError:
        return False


def check_block_options(shortcut: str, version: str) -> None:
    """Checks the options every block takes: the shortcut (Sec. 3.3) and
    where a bottleneck strides."""
    if shortcut not in SHORTCUT_OPTIONS:
        raise ValueError(
            f"Unknown shortcut option: {shortcut!r}. "
            f"Accepted: {', '.join(SHORTCUT_OPTIONS)} (paper Sec. 3.3)."
        )
    if version not in VERSIONS:
        raise ValueError(
            f"Unknown version: {version!r}. Accepted: "
            "'v1' (stride on the bottleneck's first 1x1, as in the paper) "
            "or 'v1.5' (stride on its 3x3)."
        )


def check_options(name: str, spec: Variant, args: Arguments) -> None:
    """Checks the options of the network itself (Sec. 3.3 shortcuts, head)."""
    check_block_options(args.shortcut, args.version)
    if args.pooling not in (None, "avg", "max"):
        raise ValueError(
            "`pooling` must be None, 'avg' or 'max'. "
            f"Received: pooling={args.pooling!r}"
        )
    if args.include_top and not _is_count(args.classes):
        raise ValueError(
            "`classes` must be an integer >= 1, the number of classes the top "
            f"predicts. Received: classes={args.classes!r}"
        )
    if args.zero_init_residual and not spec.residual:
        raise ValueError(
            f"zero_init_residual=True needs residual blocks; {name} is a plain "
            "net, whose blocks would then output zeros."
        )
    if not args.weight_decay >= 0:
        raise ValueError(
            f"`weight_decay` must be >= 0. Received: weight_decay={args.weight_decay}"
        )


def check_weights(args: Arguments) -> None:
    """Checks the resolved `weights` against the other arguments, before
    anything is built."""
    if args.weights.given is None:
        return
    args.weights.check_fits(include_top=args.include_top, classes=args.classes,
                            shortcut=args.shortcut, version=args.version)
    if args.include_top and args.classifier_activation not in (None, "softmax"):
        raise ValueError(
            "Only None and 'softmax' activations are allowed for "
            "`classifier_activation` when loading weights with "
            "include_top=True. Received: "
            f"classifier_activation={args.classifier_activation!r}"
        )
