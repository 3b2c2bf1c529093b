"""Standard deviations of the layer responses (paper Sec. 4.2, Fig. 7).

He et al. (2015), "Deep Residual Learning for Image Recognition", Sec. 4.2,
"Analysis of Layer Responses": Fig. 7 shows "standard deviations (std) of the
layer responses on CIFAR-10. The responses are the outputs of each 3x3 layer,
after BN and before other nonlinearity (ReLU/addition)", for plain nets and
ResNets, once in the layers' order and once ranked in descending order. The
paper reads it as support for residual functions being "generally closer to
zero than the non-residual functions".

Definition used here: a layer's response is the output of a
BatchNormalization layer whose input is the output of a Conv2D with a 3x3
kernel (in keras_resnet's networks, every `{name}_bn` after a 3x3
`{name}_conv`: the stem and both convs of a basic block, the middle conv of a
bottleneck; never a 1x1 conv or a projection shortcut), in inference mode (the
BN's moving statistics, as when testing). Its std is the population standard
deviation (ddof=0) of every element of that output over the images given:
every image, position and channel together, not a per-channel std averaged.

The pairs are found in the graph, not by name: the network is run through
symbolically, layer by layer (into nested functional and Sequential models,
so a model wrapped by `with_preprocessing` works as a bare one does), and a BN
counts when the tensor it reads was made by a 3x3 Conv2D (Keras' or
keras_resnet's). That finds the pairs of any functional model, whatever its
layers are called. The run-through uses copies of the layers, with their
weights, so the model given is left as it was (`fold_batch_norm`, which
reads a layer's uses, still sees only its own graph).
"""

from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from matplotlib.figure import Figure

from keras_resnet.models.folding import is_functional


class _Trace:
    """A symbolic run through a model that keeps the responses it meets."""

    def __init__(self) -> None:
        self.producer: dict[int, tuple[Any, keras.layers.Layer]] = {}
        self.responses: list[keras.KerasTensor] = []
        self.names: list[str] = []

    def call(self, layer: keras.layers.Layer, *args: Any, **kwargs: Any) -> Any:
        """`clone_model`'s call_function: `layer` (the model's own) on `args`."""
        if isinstance(layer, keras.Sequential):
            x = args[0]
            for inner in layer.layers:
                x = self.call(inner, x)
            return x
        if isinstance(layer, keras.Model):
            return self.run(layer, args[0])
        copy = layer.__class__.from_config(layer.get_config())
        outputs = copy(*args, **kwargs)
        copy.set_weights(layer.get_weights())
        if isinstance(layer, keras.layers.BatchNormalization) and args:
            made_by = self.producer.get(id(args[0]), (None, None))[1]
            if isinstance(made_by, keras.layers.Conv2D) and tuple(made_by.kernel_size) == (3, 3):
                self.responses.append(outputs)
                self.names.append(layer.name)
        for tensor in keras.tree.flatten(outputs):
            self.producer[id(tensor)] = (tensor, layer)  # the tensor kept: ids stay unique
        return outputs

    def run(self, model: keras.Model, inputs: Any) -> Any:
        """The outputs of the functional `model` on the symbolic `inputs`.

        `clone_model` builds a model from Inputs only, so `model` is run
        through on fresh Inputs, as a model of its outputs and responses, and
        that model is called on `inputs`.
        """
        if not is_functional(model):
            raise TypeError(
                "response_stds runs through functional and Sequential models (as "
                f"keras_resnet's builders return). Received: {type(model).__name__} "
                f"{model.name!r}, whose layers it cannot see."
            )
        fresh = keras.tree.map_structure(
            lambda t: keras.Input(batch_shape=t.shape, dtype=t.dtype), model.input
        )
        inner = _Trace()
        clone = keras.models.clone_model(
            model, input_tensors=fresh, clone_function=lambda layer: layer,
            call_function=inner.call,
        )
        count = len(clone.outputs)
        outputs = keras.Model(fresh, clone.outputs + inner.responses)(inputs)
        self.responses += outputs[count:]
        self.names += inner.names
        return keras.tree.pack_sequence_as(model.output, outputs[:count])


def response_probe(model: keras.Model) -> tuple[keras.Model, list[str]]:
    """A model with the inputs of `model` and its responses as outputs (a
    list), and the names of their BN layers.

    One output per BatchNormalization that reads a 3x3 Conv2D (see the module
    docstring), in the order they are computed. `model` is functional or
    Sequential, possibly with such models nested in it; its layers are
    copied, with their weights, not shared.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"response_probe expects a keras.Model. Received: {type(model).__name__}")
    inputs = keras.tree.map_structure(
        lambda t: keras.Input(batch_shape=t.shape, dtype=t.dtype), model.input
    )
    trace = _Trace()
    trace.call(model, inputs)
    if not trace.responses:
        raise ValueError(
            f"Model {model.name!r} has no BatchNormalization directly after a 3x3 "
            "Conv2D: no layer responses to measure."
        )
    probe = keras.Model(inputs, list(trace.responses), name=f"{model.name}_responses")
    return probe, trace.names


class _Moments:
    """Count, mean and sum of squared deviations, combined batch by batch in
    float64 (Chan et al.'s pairwise update: no cancellation of large sums)."""

    def __init__(self) -> None:
        self.count, self.mean, self.m2 = 0, 0.0, 0.0

    def update(self, values: Any) -> None:
        x = np.asarray(values, dtype=np.float64).ravel()
        if not x.size:
            return
        mean = float(x.mean())
        m2 = float(np.square(x - mean).sum())
        total = self.count + x.size
        delta = mean - self.mean
        self.m2 += m2 + delta * delta * self.count * x.size / total
        self.mean += delta * x.size / total
        self.count = total

    @property
    def std(self) -> float:
        return float(np.sqrt(self.m2 / self.count))


def _batches(images: Any, batch_size: int) -> Iterable[Any]:
    """Batches of images: slices of an array, or the elements of an iterable
    of batches (a tf.data.Dataset), the first of each (images, labels) pair."""
    if hasattr(images, "shape"):
        for start in range(0, len(images), batch_size):
            yield images[start:start + batch_size]
        return
    for batch in images:
        yield batch[0] if isinstance(batch, (tuple, list)) else batch


def response_stds(
    model: keras.Model, images: Any, batch_size: int = 100
) -> list[tuple[str, float]]:
    """The std of each 3x3 layer's response (paper Fig. 7) on `images`.

    Args:
        model: a functional (or Sequential) keras.Model, bare or wrapped by
            `with_preprocessing`; left unchanged.
        images: what `model` takes, e.g. raw RGB pixels in [0, 255]: an array
            (N, H, W, C), or an iterable of such batches (a tf.data.Dataset,
            of images or of (images, labels)).
        batch_size: images per step, for an array.

    Returns:
        (BN layer name, std) per response, in the network's order: the
        population std of every element of the BN's output in inference
        mode, accumulated over the batches in float64.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer. Received: batch_size={batch_size!r}")
    probe, names = response_probe(model)
    moments = [_Moments() for _ in names]
    for batch in _batches(images, batch_size):
        outputs = probe.predict_on_batch(batch)
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        for moment, output in zip(moments, outputs):
            moment.update(output)
    if not moments[0].count:
        raise ValueError("response_stds received no images.")
    return [(name, m.std) for name, m in zip(names, moments)]


def fig7_figure(series: Mapping[str, Sequence[float]]) -> Figure:
    """Fig. 7 of the paper: the stds of each model's responses (one line per
    key of `series`), top in the layers' order, bottom in descending order."""
    figure = Figure(figsize=(6.4, 6.4))
    top, bottom = figure.subplots(2, 1)
    for label, values in series.items():
        values = np.asarray(values, dtype=np.float64)
        index = np.arange(1, len(values) + 1)
        top.plot(index, values, label=label)
        bottom.plot(index, np.sort(values)[::-1], label=label)
    top.set_xlabel("layer index (original)")
    bottom.set_xlabel("layer index (sorted by magnitude)")
    for axes in (top, bottom):
        axes.set_ylabel("std")
        axes.grid(True, alpha=0.3)
        if series:
            axes.legend()
    figure.tight_layout()
    return figure
