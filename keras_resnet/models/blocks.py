"""Residual blocks of the paper (Sec. 3.3 and Fig. 5), as plain tensor functions.

Every conv is followed by BatchNormalization and then the activation; in a
residual block the ReLU comes after the addition (Sec. 3.4). Layer names follow
keras.applications (`conv3_block1_1_conv`, `..._0_conv` for the projection
shortcut, `..._add`, `..._out`), so weights and user code carry over.
"""

import dataclasses
from collections.abc import Callable

import keras

from keras_resnet.models.layers import BatchNormalization
from keras_resnet.models.layers import Conv2D
from keras_resnet.models.layers import ZeroPadShortcut
from keras_resnet.models.layers import channel_axis

# BN epsilon of the authors' Caffe models (keras.applications uses 1.001e-5,
# which `weights.py` folds into the moving variance when loading its files).
BN_EPSILON = 1e-5
# Moving-average momentum of the BN statistics (PyTorch's 0.1 in Keras terms).
BN_MOMENTUM = 0.9

SHORTCUT_OPTIONS = ("A", "B", "C")
VERSIONS = ("v1", "v1.5")


@dataclasses.dataclass(frozen=True, kw_only=True)
class BlockSettings:
    """What every block of one model shares.

    Attributes:
        shortcut: "A", "B" or "C" (paper Sec. 3.3), or None for a plain net.
        version: "v1" puts a bottleneck's stride on its first 1x1 conv (the
            paper and the authors' models); "v1.5" puts it on the 3x3 conv.
        zero_init_residual: start the last BN gamma of every residual branch
            at 0, so each block starts as the identity.
        weight_decay: the paper's weight decay (1e-4), applied to conv and
            dense kernels as an L2 loss of `weight_decay / 2 * sum(w**2)`,
            whose gradient `weight_decay * w` is Caffe's weight decay.
    """

    shortcut: str | None = "B"
    version: str = "v1"
    zero_init_residual: bool = False
    weight_decay: float = 0.0

    @property
    def regularizer(self) -> keras.regularizers.Regularizer | None:
        """The kernels' L2 loss of `weight_decay`, or None without decay."""
        if not self.weight_decay:
            return None
        return keras.regularizers.L2(self.weight_decay / 2)

    def conv_bn(
        self,
        x: keras.KerasTensor,
        filters: int,
        kernel_size: int,
        strides: int,
        name: str,
        zero_gamma: bool = False,
    ) -> keras.KerasTensor:
        """Conv (no bias: BN follows) and BN, named `{name}_conv`/`{name}_bn`.

        A strided conv wider than 1x1 pads symmetrically (`{name}_pad`), as
        Caffe and PyTorch do; TF's "same" would pad only bottom/right and shift
        the sampling grid against the shortcut's.
        """
        padding = "same"
        if strides > 1 or kernel_size == 1:
            padding = "valid"
            if kernel_size > 1:
                x = keras.layers.ZeroPadding2D(
                    kernel_size // 2, name=f"{name}_pad"
                )(x)
        x = Conv2D(
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            use_bias=False,
            kernel_initializer="he_normal",
            kernel_regularizer=self.regularizer,
            name=f"{name}_conv",
        )(x)
        return BatchNormalization(
            axis=channel_axis(),
            momentum=BN_MOMENTUM,
            epsilon=BN_EPSILON,
            gamma_initializer="zeros" if zero_gamma else "ones",
            name=f"{name}_bn",
        )(x)

    def conv_bn_relu(
        self, x: keras.KerasTensor, filters: int, kernel_size: int, strides: int, name: str
    ) -> keras.KerasTensor:
        """`conv_bn`, then a ReLU named `{name}_relu`."""
        x = self.conv_bn(x, filters, kernel_size, strides, name)
        return keras.layers.Activation("relu", name=f"{name}_relu")(x)

    def shortcut_and_add(
        self, x: keras.KerasTensor, residual: keras.KerasTensor, strides: int, name: str
    ) -> keras.KerasTensor:
        """Adds the shortcut of `x` to `residual`; then the block's ReLU."""
        filters = residual.shape[channel_axis()]
        if self.shortcut is None:
            out = residual
        else:
            grows = strides > 1 or x.shape[channel_axis()] != filters
            if self.shortcut == "C" or (self.shortcut == "B" and grows):
                x = self.conv_bn(x, filters, 1, strides, f"{name}_0")
            elif grows:  # option A
                x = ZeroPadShortcut(filters, strides, name=f"{name}_0_pad")(x)
            out = keras.layers.Add(name=f"{name}_add")([x, residual])
        return keras.layers.Activation("relu", name=f"{name}_out")(out)


def branch_convs(
    block: str, filters: int, strides: int, version: str = "v1"
) -> tuple[tuple[int, int, int], ...]:
    """(kernel size, filters, stride) of each conv of a block's residual
    branch, in order: what the blocks below build and what
    `complexity.counts` counts. "basic": two 3x3 convs, the stride on the
    first (Fig. 5 left). "bottleneck": 1x1 reduce, 3x3, 1x1 expand to
    4 * filters (Fig. 5 right), the stride on the first 1x1 in v1 and on the
    3x3 in v1.5."""
    if block == "basic":
        return ((3, filters, strides), (3, filters, 1))
    stride_1x1, stride_3x3 = (strides, 1) if version == "v1" else (1, strides)
    return ((1, filters, stride_1x1), (3, filters, stride_3x3), (1, 4 * filters, 1))


def _block(
    kind: str, x: keras.KerasTensor, filters: int, strides: int, settings: BlockSettings, name: str
) -> keras.KerasTensor:
    """The residual branch of `branch_convs` (convs `{name}_1`, `{name}_2`,
    ...), then the shortcut and the addition."""
    convs = branch_convs(kind, filters, strides, settings.version)
    y = x
    for i, (kernel, width, stride) in enumerate(convs, 1):
        if i < len(convs):
            y = settings.conv_bn_relu(y, width, kernel, stride, f"{name}_{i}")
        else:  # the branch's last BN: its ReLU comes after the addition
            y = settings.conv_bn(y, width, kernel, stride, f"{name}_{i}",
                                 zero_gamma=settings.zero_init_residual)
    return settings.shortcut_and_add(x, y, strides, name)


def basic_block(
    x: keras.KerasTensor, filters: int, strides: int, settings: BlockSettings, name: str
) -> keras.KerasTensor:
    """Two 3x3 convs (Fig. 5 left); the stride sits on the first."""
    return _block("basic", x, filters, strides, settings, name)


def bottleneck_block(
    x: keras.KerasTensor, filters: int, strides: int, settings: BlockSettings, name: str
) -> keras.KerasTensor:
    """1x1 reduce, 3x3, 1x1 expand to 4 * filters (Fig. 5 right)."""
    return _block("bottleneck", x, filters, strides, settings, name)


# A block: (input, filters, strides, settings, name) -> output.
Block = Callable[[keras.KerasTensor, int, int, BlockSettings, str], keras.KerasTensor]
BLOCKS: dict[str, Block] = {"basic": basic_block, "bottleneck": bottleneck_block}
