"""TensorFlow's fast paths for keras_resnet.models.layers on the TensorFlow backend:
fused batch normalization (BatchNormalization), and the weight gradient of a
1x1 convolution as a matrix product (Conv2D).

The only TensorFlow in the model code, imported by those layers only when
Keras runs on TensorFlow: the models stay backend-neutral.
"""

from typing import Any

import tensorflow as tf


def batch_norm_training(layer: Any, inputs: tf.Tensor) -> tf.Tensor:
    """`layer` (a BatchNormalization) on a training batch: normalised by the
    batch's statistics, moving averages updated as Keras updates them."""
    outputs, mean, variance = _fused(layer, inputs, is_training=True)
    # The op returns the unbiased variance (n / (n - 1) times the one it
    # normalised by); Keras averages the biased one.
    count = tf.cast(tf.size(inputs, out_type=tf.int64) // mean.shape[0], tf.float32)
    variance = variance * (count - 1) / count
    momentum = layer.momentum
    layer.moving_mean.assign(layer.moving_mean * momentum + mean * (1 - momentum))
    layer.moving_variance.assign(layer.moving_variance * momentum + variance * (1 - momentum))
    return outputs


def batch_norm_inference(layer: Any, inputs: tf.Tensor) -> tf.Tensor:
    """`layer` at inference: normalised by its moving statistics. As one op,
    TensorFlow's graph optimizer fuses it into the convolution before it,
    which Keras' scale-and-shift ops it does not: ResNet-50 inference 1.09x
    as fast on CPU (benchmarks/RESULTS.md). It does so in float32 only; a
    bfloat16 BN stays a separate op, and folding it (keras_resnet.models.folding)
    is 2.4x as fast."""
    return _fused(layer, inputs, is_training=False)[0]


def _fused(layer: Any, inputs: tf.Tensor, is_training: bool) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """FusedBatchNormV3 of `layer` on `inputs`: (outputs in the layer's
    compute dtype, the batch's mean and unbiased variance, or the moving ones)."""
    # The kernel takes half and bfloat16 activations as they are and computes
    # the statistics in float32, as Keras does after casting them: under a
    # mixed policy, a cast each way around every BN (and in the gradient)
    # would cost a bfloat16 ResNet-50 training step 20% (benchmarks/RESULTS.md).
    x = inputs if inputs.dtype in (tf.float16, tf.bfloat16) else tf.cast(inputs, tf.float32)
    axis = layer.axis % 4
    channels = x.shape[axis]
    scale = tf.convert_to_tensor(layer.gamma) if layer.scale else tf.ones([channels])
    offset = tf.convert_to_tensor(layer.beta) if layer.center else tf.zeros([channels])
    moving = {} if is_training else {"mean": tf.convert_to_tensor(layer.moving_mean),
                                     "variance": tf.convert_to_tensor(layer.moving_variance)}
    # TensorFlow raises an epsilon under 1.001e-5 (keras_resnet's 1e-5) to
    # 1.001e-5, the least cuDNN accepts: a 1e-8 difference in `variance + eps`.
    outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
        x, scale, offset, epsilon=layer.epsilon,
        data_format="NHWC" if axis == 3 else "NCHW", is_training=is_training, **moving,
    )
    return tf.cast(outputs, layer.compute_dtype), mean, variance


def on_cpu() -> bool:
    """Whether TensorFlow sees no GPU, so that ops run on the CPU."""
    return not tf.config.list_logical_devices("GPU")


def conv1x1_training(inputs: tf.Tensor, kernel: tf.Tensor, strides: tuple[int, int]) -> tf.Tensor:
    """A 1x1 convolution of NHWC `inputs` (padding "valid"), whose kernel
    gradient is the matrix product of the (subsampled) inputs and the output
    gradient over all positions of the batch.

    The same sums as TensorFlow's Conv2DBackpropFilter, which oneDNN ran in
    bfloat16 at 257 GFLOP/s on an AMX CPU, 2.5x slower than its matmul of
    them (benchmarks/RESULTS.md). The forward pass and the input's gradient
    stay convolutions.
    """
    row, col = strides

    @tf.custom_gradient
    def conv(x: tf.Tensor, w: tf.Tensor):
        def grad(dy: tf.Tensor):
            dx = tf.raw_ops.Conv2DBackpropInput(
                input_sizes=tf.shape(x), filter=w, out_backprop=dy,
                strides=[1, row, col, 1], padding="VALID")
            # The positions a strided 1x1 conv reads, x[:, ::row, ::col], as a
            # 1x1 average pool: 15x as fast as TensorFlow's strided slice.
            read = tf.nn.avg_pool2d(x, 1, strides, "VALID") if (row, col) != (1, 1) else x
            channels_in, channels_out = w.shape[2], w.shape[3]
            dw = tf.matmul(tf.reshape(read, [-1, channels_in]),
                           tf.reshape(dy, [-1, channels_out]), transpose_a=True)
            return dx, tf.reshape(dw, tf.shape(w))

        return tf.nn.conv2d(x, w, [1, row, col, 1], "VALID"), grad

    return conv(inputs, tf.convert_to_tensor(kernel))  # under a mixed policy, cast to bfloat16
