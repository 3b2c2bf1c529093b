"""Input preprocessing and prediction decoding.

ImageNet (paper Sec. 3.4, and the published weights): "caffe" mode, as
keras.applications.resnet.preprocess_input: RGB -> BGR, minus the per-channel
ImageNet mean, no scaling. CIFAR (Sec. 4.2): "the per-pixel mean subtracted",
the mean image of the training set.

`MeanSubtraction` does either inside a model, so a saved model carries the
preprocessing it was trained with and takes raw RGB images in [0, 255].
"""

import json

import keras
import numpy as np
from keras import ops

from keras_resnet.layers import PACKAGE
from keras_resnet.layers import channel_axis
from keras_resnet.weights import download

# Per-channel ImageNet mean in BGR order (keras.applications "caffe" mode).
IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)
CLASS_INDEX_URL = (
    "https://storage.googleapis.com/download.tensorflow.org/data/"
    "imagenet_class_index.json"
)
CLASS_INDEX_MD5 = "c2c37ea517e94d9795004a39431a14cb"
_class_index = None


def _caffe(x, data_format, to_array, flip):
    """RGB->BGR and mean subtraction, written once for NumPy and tensors."""
    axis = channel_axis(data_format)
    mean = np.asarray(IMAGENET_BGR_MEAN, dtype="float32")
    if axis == 1:
        mean = mean.reshape((3, 1, 1) if len(x.shape) == 3 else (1, 3, 1, 1))
    return flip(to_array(x), axis) - mean


def preprocess_input(x, data_format=None):
    """Preprocesses RGB images in [0, 255] for the published ImageNet weights.

    Like keras.applications.resnet.preprocess_input ("caffe" mode): channels
    reversed to BGR, the ImageNet mean subtracted, no scaling. A NumPy input
    gives a new float32 array (the input is never modified in place); a
    tensor gives a tensor.
    """
    if isinstance(x, (np.ndarray, list, tuple)) or np.isscalar(x):
        return _caffe(
            x, data_format, lambda a: np.asarray(a, "float32"), np.flip
        )
    return _caffe(
        x,
        data_format,
        lambda t: ops.cast(t, "float32"),
        lambda t, axis: ops.flip(t, axis=axis),
    )


def compute_pixel_mean(images):
    """The per-pixel mean image (H, W, C), float32, of a training set.

    `images` is an array (N, H, W, C) or an iterable of such batches (e.g. a
    tf.data.Dataset of image batches, or of (image, label) batches).
    """
    if hasattr(images, "shape"):
        return np.asarray(images, "float64").mean(axis=0).astype("float32")
    total, count = None, 0
    for batch in images:
        if isinstance(batch, (tuple, list)):
            batch = batch[0]
        batch = np.asarray(batch, "float64")
        total = batch.sum(axis=0) if total is None else total + batch.sum(axis=0)
        count += batch.shape[0]
    if not count:
        raise ValueError("compute_pixel_mean received no images.")
    return (total / count).astype("float32")


def preprocess_cifar(x, pixel_mean):
    """Subtracts the training set's per-pixel mean (paper Sec. 4.2)."""
    return np.asarray(x, "float32") - np.asarray(pixel_mean, "float32")


@keras.saving.register_keras_serializable(package=PACKAGE)
class MeanSubtraction(keras.layers.Layer):
    """`(x with channels reversed, if asked) - mean`, inside the model.

    Args:
        mean: broadcastable to the images: per channel (C,) or per pixel
            (H, W, C), in the channel order after any reversal.
        reverse_channels: reverse the channel axis first (RGB -> BGR).
    """

    def __init__(self, mean, reverse_channels=False, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.mean = np.asarray(mean, dtype="float32")
        self.reverse_channels = bool(reverse_channels)
        self.data_format = data_format or keras.config.image_data_format()

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        if self.reverse_channels:
            x = ops.flip(x, axis=channel_axis(self.data_format))
        return x - ops.cast(self.mean, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            mean=self.mean.tolist(),
            reverse_channels=self.reverse_channels,
            data_format=self.data_format,
        )
        return config


def caffe_preprocessing(name="preprocessing"):
    """The `MeanSubtraction` of the published ImageNet weights."""
    data_format = keras.config.image_data_format()
    mean = np.asarray(IMAGENET_BGR_MEAN, "float32")
    if data_format == "channels_first":
        mean = mean.reshape(3, 1, 1)
    return MeanSubtraction(mean, reverse_channels=True, name=name)


def with_preprocessing(model, layer):
    """A model taking raw RGB images in [0, 255]: `layer`, then `model`."""
    inputs = keras.Input(shape=model.input_shape[1:], name="images")
    return keras.Model(inputs, model(layer(inputs)), name=model.name)


def _imagenet_class_index():
    global _class_index
    if _class_index is None:
        path = download("imagenet_class_index.json", CLASS_INDEX_URL, CLASS_INDEX_MD5)
        with open(path) as f:
            index = json.load(f)
        _class_index = [tuple(index[str(i)]) for i in range(len(index))]
    return _class_index


def decode_predictions(preds, top=5, class_names=None):
    """The `top` classes of each prediction, best first.

    Args:
        preds: array (samples, classes) of scores.
        top: how many classes per sample.
        class_names: a name per class. None means the 1000 ImageNet classes
            (their index file is downloaded once and md5-checked, as
            keras.applications does), and results are
            `(wordnet_id, name, score)` tuples like keras.applications';
            otherwise `(class_index, name, score)`.

    Returns:
        One list of tuples per sample.
    """
    preds = np.asarray(ops.convert_to_numpy(preds))
    expected = 1000 if class_names is None else len(class_names)
    if preds.ndim != 2 or preds.shape[1] != expected:
        raise ValueError(
            "`decode_predictions` expects a batch of predictions of shape "
            f"(samples, {expected}). Received array with shape: {preds.shape}"
        )
    if not 1 <= int(top) <= expected:
        raise ValueError(f"`top` must be in [1, {expected}]. Received: top={top}")
    if class_names is None:
        labels = _imagenet_class_index()
    else:
        labels = [(i, str(n)) for i, n in enumerate(class_names)]
    results = []
    for row in preds:
        best = np.argsort(-row, kind="stable")[: int(top)]
        results.append([labels[i] + (row[i],) for i in best])
    return results
