"""Custom layers, registered so that `.keras` files load with `safe_mode=True`.

`BatchNormalization` is Keras' own, with a faster training step on the
TensorFlow backend (keras_resnet.models.fused). So is `Conv2D`, for 1x1 convolutions
trained in bfloat16 on a CPU.

`ZeroPadShortcut` is the parameter-free shortcut of option A (paper Sec. 3.3):
"the shortcut still performs identity mapping, with extra zero entries padded
for increasing dimensions", subsampled by striding when the feature map halves.
"""

from typing import Any

import keras
from keras import ops

PACKAGE = "keras_resnet"


def standardize_data_format(data_format: str | None = None) -> str:
    """`data_format`, or Keras' image data format if None; ValueError if unknown."""
    data_format = data_format or keras.config.image_data_format()
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(
            "`data_format` must be 'channels_last' or 'channels_first'. "
            f"Received: data_format={data_format!r}"
        )
    return data_format


def channel_axis(data_format: str | None = None) -> int:
    """The channel axis of a 4D image tensor for `data_format`."""
    return -1 if standardize_data_format(data_format) == "channels_last" else 1


@keras.saving.register_keras_serializable(package=PACKAGE)
class ZeroPadShortcut(keras.layers.Layer):
    """Identity shortcut that subsamples by `strides` and zero-pads channels.

    Keeps every `strides`-th pixel (the same positions a 1x1 projection with
    that stride reads) and appends zero channels up to `filters`.
    """

    def __init__(
        self, filters: int, strides: int = 1, data_format: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if int(filters) < 1 or int(strides) < 1:
            raise ValueError(
                "`filters` and `strides` must be positive integers. "
                f"Received: filters={filters}, strides={strides}"
            )
        self.filters = int(filters)
        self.strides = int(strides)
        self.data_format = standardize_data_format(data_format)

    def _output_size(self, size: int | None) -> int | None:
        """The output's height (or width) for an input `size`: ceil(size / strides)."""
        return None if size is None else -(-size // self.strides)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        shape = list(input_shape)
        axis = channel_axis(self.data_format) % 4
        channels = shape[axis]
        if channels is not None and channels > self.filters:
            raise ValueError(
                f"ZeroPadShortcut pads channels up to {self.filters}; "
                f"received an input with {channels} channels."
            )
        spatial = (1, 2) if axis == 3 else (2, 3)
        for i in spatial:
            shape[i] = self._output_size(shape[i])
        shape[axis] = self.filters
        return tuple(shape)

    def call(self, inputs: Any) -> Any:
        x = inputs
        if self.strides > 1:
            # x[:, ::s, ::s], as a 1x1 average pool: the same values, and on
            # TensorFlow's CPU a ResNet-20 training step 5% faster than a
            # strided slice and its gradient (benchmarks/RESULTS.md).
            x = ops.average_pool(x, 1, strides=self.strides, padding="valid",
                                 data_format=self.data_format)
        axis = channel_axis(self.data_format)
        extra = self.filters - x.shape[axis]
        paddings = [[0, 0]] * 4
        paddings[axis] = [0, extra]
        return ops.pad(x, paddings) if extra else x

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            filters=self.filters,
            strides=self.strides,
            data_format=self.data_format,
        )
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class BatchNormalization(keras.layers.BatchNormalization):
    """Keras' BatchNormalization, run by TensorFlow's fused kernel on the
    TensorFlow backend (keras_resnet.models.fused).

    Keras 3 normalises a training batch with separate ops (moments, then a
    scale and shift) and differentiates them one by one; the fused kernel does
    each direction in one op. It computes the same statistics and moving
    averages, up to float rounding (and an epsilon of at least 1.001e-5,
    TensorFlow's floor), and made ResNet-20 training 14% faster on CPU
    (benchmarks/RESULTS.md). At inference the one op is fused into the
    convolution before it. Other backends, masks, renorm and synchronized BN
    run Keras' own code.
    """

    def call(self, inputs: Any, training: bool | None = None, mask: Any = None) -> Any:
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        from keras_resnet.models import fused  # TensorFlow only

        if training and self.trainable:
            return fused.batch_norm_training(self, inputs)
        return fused.batch_norm_inference(self, inputs)  # as Keras: the moving statistics

    def _fusable(self, inputs: Any, mask: Any) -> bool:
        rank = len(inputs.shape)
        return (
            keras.backend.backend() == "tensorflow"
            and rank == 4
            and self.axis % rank in (1, 3)
            and mask is None
            and not self.renorm
            and not self.synchronized
        )


@keras.saving.register_keras_serializable(package=PACKAGE)
class Conv2D(keras.layers.Conv2D):
    """Keras' Conv2D; trained in bfloat16 on TensorFlow's CPU, a 1x1 one takes
    its kernel's gradient from a matrix product (keras_resnet.models.fused).

    oneDNN's bfloat16 kernel for a 1x1 convolution's weight gradient ran at
    under a quarter of the rate of its forward pass, 2.5x slower than the same
    sums as a matmul; with the matmul a bfloat16 ResNet-50 trains 1.12x as fast
    (benchmarks/RESULTS.md). The forward pass, the input's gradient, other
    kernel sizes, dtypes, devices and backends run Keras' own code: in
    float32 the matmul is no faster.
    """

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        if training and self._matmul_weight_gradient():
            from keras_resnet.models import fused  # TensorFlow only

            if fused.on_cpu():
                outputs = fused.conv1x1_training(inputs, self.kernel, self.strides)
                return self.activation(outputs)
        return super().call(inputs)

    def _matmul_weight_gradient(self) -> bool:
        return (
            keras.backend.backend() == "tensorflow"
            and self.compute_dtype == "bfloat16"
            and self.kernel_size == (1, 1)
            and self.dilation_rate == (1, 1)
            and self.groups == 1
            and self.data_format == "channels_last"
            and not self.use_bias
        )
