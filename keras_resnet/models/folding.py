"""BatchNormalization folded into the convolution before it, for inference.

At inference BN is a fixed per-channel affine map (paper Sec. 3.4: "we adopt
batch normalization right after each convolution"), so a conv followed by its BN
is one conv with a bias:

    scale = gamma / sqrt(moving_variance + epsilon)
    kernel' = kernel * scale                       (per output channel)
    bias'   = (bias - moving_mean) * scale + beta  (bias = 0 without one)

The folded model computes the same function up to float rounding with one pass
over each activation instead of three: TensorFlow runs each conv, its bias and
its ReLU as one fused kernel on CPU (benchmarks/RESULTS.md gives the gain). It
is for inference only: a folded model has no batch statistics to train with.
"""

import collections

import keras
import numpy as np

from keras_resnet.models.layers import Conv2D
from keras_resnet.models.layers import channel_axis


def fold_batch_norm(model: keras.Model) -> keras.Model:
    """A copy of the functional `model` with every BN that directly follows a
    Conv2D folded into that conv, which gets a bias; other layers are copied
    with their weights, and nested functional models are folded too.

    A BN is left as it is where its conv has an activation of its own, where
    the conv's output is used elsewhere too (another layer or a model output),
    or where the BN normalises another axis than the conv's channels.
    """
    if not isinstance(model, keras.Model) or not is_functional(model):
        raise TypeError(
            "fold_batch_norm expects a functional keras.Model (as keras_resnet's "
            f"builders return). Received: {type(model).__name__}"
        )
    pairs = _foldable(model)
    folded_bns = {id(bn) for _, bn in pairs}
    bn_of = {id(conv): bn for conv, bn in pairs}

    def clone(layer):
        if id(layer) in folded_bns:
            return layer  # skipped by `call`; never called
        if id(layer) in bn_of:
            return _conv_with_bias(layer)
        if isinstance(layer, keras.Model) and is_functional(layer):
            return fold_batch_norm(layer)
        return layer.__class__.from_config(layer.get_config())

    sources = {}  # id(new layer) -> the layer it copies

    def clone_and_remember(layer):
        new = clone(layer)
        sources[id(new)] = layer
        return new

    def call(new, *args, **kwargs):
        old = sources[id(new)]
        if id(old) in folded_bns:
            return args[0]
        outputs = new(*args, **kwargs)
        if id(old) in bn_of:
            new.set_weights(_folded_weights(old, bn_of[id(old)]))
        elif not (isinstance(old, keras.Model) and is_functional(old)):
            new.set_weights(old.get_weights())  # a folded model has its own
        return outputs

    # New inputs named as the model's own (clone_model would name them after
    # their tensors).
    inputs = keras.tree.map_structure(
        lambda t: keras.Input(batch_shape=t.shape, dtype=t.dtype,
                              name=t._keras_history.operation.name),
        model.input,
    )
    return keras.models.clone_model(
        model, input_tensors=inputs, clone_function=clone_and_remember, call_function=call
    )


def is_functional(model: keras.Model) -> bool:
    """Whether `fold_batch_norm` takes `model`: a graph of layers that
    `clone_model` runs through with `call_function` (it clones Sequential
    models another way, without it)."""
    return hasattr(model, "_nodes_by_depth") and not isinstance(model, keras.Sequential)


Pair = tuple[keras.layers.Conv2D, keras.layers.BatchNormalization]


def _foldable(model: keras.Model) -> list[Pair]:
    """(conv, BN) pairs of `model` where only the BN reads the conv's output."""
    readers = collections.Counter()
    for layer in model.layers:
        for node in layer._inbound_nodes:
            readers.update(id(t) for t in node.input_tensors)
    readers.update(id(t) for t in model.outputs)

    pairs = []
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization) or len(layer._inbound_nodes) != 1:
            continue
        (tensor,) = layer._inbound_nodes[0].input_tensors
        conv = tensor._keras_history.operation
        if (
            type(conv) in (keras.layers.Conv2D, Conv2D)
            and len(conv._inbound_nodes) == 1
            and readers[id(tensor)] == 1
            and conv.activation is keras.activations.linear
            and layer.axis % 4 == channel_axis(conv.data_format) % 4
        ):
            pairs.append((conv, layer))
    return pairs


def _conv_with_bias(conv: keras.layers.Conv2D) -> keras.layers.Conv2D:
    config = conv.get_config()
    config.update(use_bias=True, bias_initializer="zeros", bias_regularizer=None,
                  bias_constraint=None)
    return keras.layers.Conv2D.from_config(config)


def _folded_weights(conv: keras.layers.Conv2D, bn: keras.layers.BatchNormalization) -> list:
    """[kernel, bias] of `conv` with `bn` folded in, computed in float64."""
    def value(variable):
        return keras.ops.convert_to_numpy(variable).astype(np.float64)

    channels = conv.filters
    kernel = value(conv.kernel)
    bias = value(conv.bias) if conv.use_bias else np.zeros(channels)
    gamma = value(bn.gamma) if bn.scale else np.ones(channels)
    beta = value(bn.beta) if bn.center else np.zeros(channels)
    mean, variance = value(bn.moving_mean), value(bn.moving_variance)
    scale = gamma / np.sqrt(variance + bn.epsilon)
    dtype = conv.kernel.dtype
    return [(kernel * scale).astype(dtype), ((bias - mean) * scale + beta).astype(dtype)]
