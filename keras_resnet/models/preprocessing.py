"""Input preprocessing and prediction decoding.

ImageNet (paper Sec. 3.4, and keras.applications' weights): "caffe" mode, as
keras.applications.resnet.preprocess_input: RGB -> BGR, minus the per-channel
ImageNet mean, no scaling. torchvision's and timm's weights: "torchvision",
RGB scaled to [0, 1], minus a mean, over a std per channel. Every published
set's is in keras_resnet.models.pretrained (`get_preprocessing` gives it).
CIFAR (Sec. 4.2): "the per-pixel mean subtracted", the mean image of the
training set.

`MeanSubtraction` does any of them inside a model, so a saved model carries
the preprocessing it was trained with and takes raw RGB images in [0, 255].
"""

import json
import os
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops
from numpy.typing import ArrayLike

from keras_resnet.models import pretrained
from keras_resnet.models.downloads import download
from keras_resnet.models.layers import PACKAGE
from keras_resnet.models.layers import channel_axis
from keras_resnet.models.layers import standardize_data_format
from keras_resnet.models.variants import canonical_name

# Per-channel ImageNet mean in BGR order (keras.applications "caffe" mode).
IMAGENET_BGR_MEAN = pretrained.NORMALIZATIONS["caffe"].mean
IMAGENET_CLASSES = 1000  # entries of keras.applications' class index


def _caffe_preprocessed(
    x: Any,
    data_format: str | None,
    to_array: Callable[[Any], Any],
    flip: Callable[[Any, int], Any],
) -> Any:
    """RGB->BGR and mean subtraction, written once for NumPy and tensors."""
    axis = channel_axis(data_format)
    mean = np.asarray(IMAGENET_BGR_MEAN, dtype="float32")
    if axis == 1:
        mean = mean.reshape((3, 1, 1) if len(x.shape) == 3 else (1, 3, 1, 1))
    return flip(to_array(x), axis) - mean


def preprocess_input(x: Any, data_format: str | None = None) -> Any:
    """Preprocesses RGB images in [0, 255] for the published ImageNet weights.

    Like keras.applications.resnet.preprocess_input ("caffe" mode): channels
    reversed to BGR, the ImageNet mean subtracted, no scaling. A NumPy input
    gives a new float32 array (the input is never modified in place); a
    tensor gives a tensor.
    """
    if isinstance(x, (np.ndarray, list, tuple)) or np.isscalar(x):
        return _caffe_preprocessed(
            x, data_format, lambda a: np.asarray(a, "float32"), np.flip
        )
    return _caffe_preprocessed(
        x,
        data_format,
        lambda t: ops.cast(t, "float32"),
        lambda t, axis: ops.flip(t, axis=axis),
    )


def compute_pixel_mean(images: np.ndarray | Iterable[Any]) -> np.ndarray:
    """The per-pixel mean image (H, W, C), float32, of a training set.

    `images` is an array (N, H, W, C) or an iterable of such batches (e.g. a
    tf.data.Dataset of image batches, or of (image, label) batches).
    """
    if hasattr(images, "shape"):
        return np.asarray(images, "float64").mean(axis=0).astype("float32")
    total: np.ndarray | None = None
    count = 0
    for batch in images:
        if isinstance(batch, (tuple, list)):
            batch = batch[0]
        batch = np.asarray(batch, "float64")
        total = batch.sum(axis=0) if total is None else total + batch.sum(axis=0)
        count += batch.shape[0]
    if not count or total is None:
        raise ValueError("compute_pixel_mean received no images.")
    return (total / count).astype("float32")


def preprocess_cifar(x: ArrayLike, pixel_mean: ArrayLike) -> np.ndarray:
    """Subtracts the training set's per-pixel mean (paper Sec. 4.2)."""
    return np.asarray(x, "float32") - np.asarray(pixel_mean, "float32")


@keras.saving.register_keras_serializable(package=PACKAGE)
class MeanSubtraction(keras.layers.Layer):
    """`((x with channels reversed, if asked) - mean) / std`, inside the model.

    The mean is a non-trainable weight, saved with the model's weights and
    not in its config: a per-pixel mean would make the config (which Keras
    prints whole when it cannot find this class) thousands of numbers long.

    Args:
        mean: broadcastable to the images: per channel (C,) or per pixel
            (H, W, C), in the channel order after any reversal.
        reverse_channels: reverse the channel axis first (RGB -> BGR).
        data_format: "channels_last" or "channels_first" (default: Keras').
        mean_shape: the shape of `mean`, when it comes from saved weights.
        std: None (no division), or a std per channel, in the channel order
            after any reversal (torchvision's weights).
    """

    def __init__(
        self,
        mean: ArrayLike | None = None,
        reverse_channels: bool = False,
        data_format: str | None = None,
        mean_shape: Sequence[int] | None = None,
        std: Sequence[float] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if mean is None and mean_shape is None:
            raise ValueError("MeanSubtraction needs `mean` (or `mean_shape` to load it). Received neither.")
        self._initial = None if mean is None else np.asarray(mean, dtype="float32")
        shape = mean_shape if self._initial is None else self._initial.shape
        self.mean_shape = tuple(shape or ())
        if len(self.mean_shape) not in (1, 3):
            raise ValueError(
                "`mean` must have shape (channels,) or (height, width, channels) "
                f"(channels first: (channels, 1, 1)). Received: mean with shape {self.mean_shape}"
            )
        self.reverse_channels = bool(reverse_channels)
        self.data_format = standardize_data_format(data_format)
        self.std = None if std is None else tuple(float(s) for s in np.ravel(std))
        if self.std is not None and (len(self.std) != 3 or not min(self.std) > 0):
            raise ValueError(f"`std` must be 3 numbers > 0, one per channel. Received: std={std!r}")

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        self._mean = self.add_weight(
            shape=self.mean_shape, initializer="zeros", trainable=False, name="mean"
        )
        if self._initial is not None:
            self._mean.assign(self._initial)

    @property
    def mean(self) -> np.ndarray | None:
        """The mean subtracted, as a NumPy array."""
        return ops.convert_to_numpy(self._mean) if self.built else self._initial

    def load_own_variables(self, store: Any) -> None:
        if not len(store.keys()) and self._initial is not None:
            return  # a file from before the mean was a weight: it is in the config
        super().load_own_variables(store)

    def call(self, inputs: Any) -> Any:
        x = ops.cast(inputs, self.compute_dtype)
        if self.reverse_channels:
            x = ops.flip(x, axis=channel_axis(self.data_format))
        x = x - ops.cast(self._mean, self.compute_dtype)
        if self.std is None:
            return x
        shape = (3, 1, 1) if self.data_format == "channels_first" else (3,)
        return x / ops.cast(np.reshape(self.std, shape), self.compute_dtype)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            mean_shape=list(self.mean_shape),
            reverse_channels=self.reverse_channels,
            data_format=self.data_format,
        )
        if self.std is not None:  # left out otherwise: files of older versions have none
            config["std"] = list(self.std)
        return config

    @property
    def normalization(self) -> str:
        """The table's name of what it does (pretrained.NORMALIZATIONS), or
        "pixel_mean" for a training set's mean (Sec. 4.2)."""
        for name, known in pretrained.NORMALIZATIONS.items():
            if (self.reverse_channels == known.reverse_channels and self.std == known.std
                    and len(self.mean_shape) != 3 and self.mean is not None
                    and np.allclose(np.ravel(self.mean), known.mean)):
                return name
        return "pixel_mean"


def normalization_layer(normalization: str, name: str = "preprocessing") -> MeanSubtraction:
    """The `MeanSubtraction` of a normalisation of the table
    (keras_resnet.models.pretrained.NORMALIZATIONS: "caffe", "torchvision")."""
    known = pretrained.NORMALIZATIONS[normalization]
    mean = np.asarray(known.mean, "float32")
    if keras.config.image_data_format() == "channels_first":
        mean = mean.reshape(3, 1, 1)
    return MeanSubtraction(mean, reverse_channels=known.reverse_channels, std=known.std, name=name)


def caffe_preprocessing(name: str = "preprocessing") -> MeanSubtraction:
    """The `MeanSubtraction` of keras.applications' ImageNet weights."""
    return normalization_layer("caffe", name)


def get_preprocessing(weights: "str | pretrained.PretrainedWeights", model: str | None = None,
                      name: str = "preprocessing") -> MeanSubtraction:
    """The layer that turns RGB images in [0, 255] into what `weights` expect.

    Args:
        weights: a name of `list_weights()` ("tv2_in1k"; "imagenet" needs
            `model`, as it means keras.applications' caffe-mode weights for
            ResNet50/101/152 and torchvision's for ResNet18/34), or an entry
            of `list_weights()`.
        model: the model the weights are for, e.g. "resnet50"; needed only
            where the name alone is ambiguous.

    Returns:
        A `MeanSubtraction` layer (channels reversed if asked, minus the
        mean, over the std), for `keras_resnet.with_preprocessing`.
    """
    if isinstance(weights, pretrained.PretrainedWeights):
        return normalization_layer(weights.normalization, name)
    kinds = {entry.normalization for entry in pretrained.WEIGHTS if weights in entry.names}
    if not kinds:
        names = sorted({n for entry in pretrained.WEIGHTS for n in entry.names})
        raise ValueError(f"`weights` must be one of {', '.join(names)} (list_weights()). "
                         f"Received: weights={weights!r}")
    if model is not None:
        return normalization_layer(pretrained.find(canonical_name(model), weights).normalization, name)
    if len(kinds) > 1:
        models = sorted(entry.model for entry in pretrained.WEIGHTS if weights in entry.names)
        raise ValueError(f"weights={weights!r} are preprocessed differently for different "
                         f"models ({', '.join(models)}): pass model=, e.g. model={models[0]!r}")
    return normalization_layer(kinds.pop(), name)


def with_preprocessing(model: keras.Model, layer: keras.layers.Layer) -> keras.Model:
    """A model taking raw RGB images in [0, 255]: `layer`, then `model`."""
    inputs = keras.Input(shape=model.input_shape[1:], name="images")
    return keras.Model(inputs, model(layer(inputs)), name=model.name)


def read_class_index(path: str) -> list[tuple[str, str]]:
    """(wordnet_id, name) per class from a class index JSON file in the
    keras.applications layout: {"0": ["n01440764", "tench"], ...}."""
    try:
        with open(path) as f:
            index = json.load(f)
        labels = [tuple(index[str(i)]) for i in range(len(index))]
        if not labels or any(len(label) != 2 for label in labels):
            raise ValueError("not one [wordnet_id, name] pair per class")
    except (OSError, ValueError, KeyError, TypeError) as e:
        reason = str(e).split("\n")[0] or type(e).__name__
    else:
        return labels
    raise ValueError(
        f"Cannot read the class index {path}: {reason}. Expected JSON in the "
        'keras.applications layout: {"0": ["n01440764", "tench"], "1": ...}.'
    )


def _check_predictions(preds: np.ndarray, classes: int) -> None:
    """Raises ValueError unless `preds` is a (samples, classes) array."""
    if preds.ndim != 2 or preds.shape[1] != classes:
        raise ValueError(
            "`decode_predictions` expects a batch of predictions of shape "
            f"(samples, {classes}). Received array with shape: {preds.shape}"
        )


def decode_predictions(
    preds: Any,
    top: int = 5,
    class_names: Sequence[str] | None = None,
    class_index: str | os.PathLike | None = None,
) -> list[list[tuple[Any, str, float]]]:
    """The `top` classes of each prediction, best first.

    Args:
        preds: array (samples, classes) of scores.
        top: how many classes per sample.
        class_names: a name per class; results are then
            `(class_index, name, score)` tuples.
        class_index: the path of a class index JSON file in the
            keras.applications layout; results are `(wordnet_id, name, score)`.
            With neither, the ImageNet index is downloaded once (from
            `$KERAS_RESNET_WEIGHTS_URL` if set) into Keras' cache and
            md5-checked, as keras.applications does.

    Returns:
        One list of tuples per sample.
    """
    if class_names is not None and class_index is not None:
        raise ValueError(
            "Pass `class_names` or `class_index`, not both. Received: "
            f"class_names={class_names!r:.60}, class_index={class_index!r}"
        )
    preds = np.asarray(ops.convert_to_numpy(preds))
    if class_names is not None:
        labels: list[tuple[Any, str]] = [(i, str(n)) for i, n in enumerate(class_names)]
    else:
        if class_index is None:
            # Checked before the download, so that a wrong array needs no network.
            _check_predictions(preds, IMAGENET_CLASSES)
            class_index = download(
                pretrained.CLASS_INDEX,
                call="decode_predictions(preds, class_index={path})", argument="class_index",
            )
        labels = read_class_index(str(class_index))
    _check_predictions(preds, len(labels))
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or not 1 <= top <= len(labels):
        raise ValueError(f"`top` must be an integer in [1, {len(labels)}]. Received: top={top!r}")
    results = []
    for row in preds:
        best = np.argsort(-row, kind="stable")[:top]
        results.append([labels[i] + (row[i],) for i in best])
    return results
