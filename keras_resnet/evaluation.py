"""The paper's test protocols, on any artefact: `.keras`, SavedModel, `.tflite`.

Protocols (each averages softmax scores over its views of an image):
- "single": the image itself at the model's size (CIFAR, Sec. 4.2).
- "center": shorter side resized to 256/224 of the size, the centre crop.
- "10crop": the four corner crops and the centre crop of that resized image,
  and their horizontal flips (Table 3; AlexNet's protocol).
- "multiscale": fully convolutional, on the whole image with its shorter side
  at each of {224, 256, 384, 480, 640} (scaled by size/224) (Table 4). Our
  classifier is global average pooling then one linear layer, so averaging its
  scores over every position equals applying it to the pooled features.
Images enter as RGB in [0, 255]; artefacts carry their own preprocessing.
"""

import contextlib
import dataclasses
import glob
import os
import zipfile
import zlib

import keras
import numpy as np
import tensorflow as tf

from keras_resnet import data as data_lib
from keras_resnet import models
from keras_resnet import preprocessing

PROTOCOLS = ("single", "center", "10crop", "multiscale")
SCALES = (224, 256, 384, 480, 640)


def default_protocol(family):
    return "single" if family == "cifar" else "center"


# ------------------------------------------------------------------- views


def ten_crops(image, image_size):
    """The 4 corner and the centre crops of the resized image, and their flips."""
    image = data_lib.resize_shorter(image, round(image_size * 256 / 224))
    shape = tf.shape(image)
    bottom, right = shape[0] - image_size, shape[1] - image_size
    corners = [(0, 0), (0, right), (bottom, 0), (bottom, right), (bottom // 2, right // 2)]
    crops = tf.stack(
        [image[t : t + image_size, l : l + image_size] for t, l in corners]
    )
    crops = tf.clip_by_value(crops, 0.0, 255.0)
    return tf.concat([crops, tf.reverse(crops, axis=[2])], axis=0)


VIEWS = {
    "single": lambda x, size: data_lib.resize_to(x, size)[None],
    "center": lambda x, size: data_lib.resize_center_crop(x, size)[None],
    "10crop": ten_crops,
}


def multiscale_views(image, image_size, scales=SCALES):
    """The whole image at each scale (shorter side scale * image_size / 224)."""
    return [
        tf.clip_by_value(data_lib.resize_shorter(image, round(s * image_size / 224)), 0.0, 255.0)[None]
        for s in scales
    ]


# --------------------------------------------------------------- artefacts


@dataclasses.dataclass
class Artefact:
    """A model to evaluate: `predict` maps RGB [0, 255] batches to probabilities."""

    path: str
    predict: callable
    image_size: int | None  # None: any size (fully convolutional)
    num_classes: int
    family: str


def _softmax_output(model):
    last = model.layers[-1]
    while isinstance(last, keras.Model):
        last = last.layers[-1]
    return getattr(last, "activation", None) is keras.activations.softmax


def keras_artefact(model, path, strategy=None):
    """Runs a Keras model, on every replica of `strategy` if one is given.

    A batch is padded to a multiple of the replicas (MirroredStrategy cannot
    give a replica an empty batch on TF 2.21) and the padding dropped.
    """
    replicas = strategy.num_replicas_in_sync if strategy else 1
    softmax = _softmax_output(model)

    def predict(images):
        n = len(images)
        pad = -n % replicas
        if pad:
            images = np.concatenate([images, np.repeat(images[-1:], pad, axis=0)])
        out = model.predict(images, batch_size=len(images), verbose=0)[:n]
        return out if softmax else keras.ops.convert_to_numpy(keras.ops.softmax(out))

    size = model.input_shape[1]
    return Artefact(path, predict, size, model.output_shape[-1], models.family_of(model.name, size))


def _with_any_input_size(model):
    """The same model and weights, taking images of any height and width."""
    config = model.get_config()

    def free(layer_configs):
        for layer in layer_configs:
            if layer["class_name"] == "InputLayer":
                shape = layer["config"]["batch_shape"]
                layer["config"]["batch_shape"] = [shape[0], None, None, shape[-1]]
            elif layer["class_name"] == "Functional":
                free(layer["config"]["layers"])

    free(config["layers"])
    clone = keras.Model.from_config(config)
    clone.set_weights(model.get_weights())
    return clone


def load_keras_model(path):
    """The model in a `.keras` file, uncompiled (no optimizer is needed, nor
    its schedule's class); evaluation and export load through it.

    Raises ValueError naming the file if it is missing, not a `.keras` file,
    or corrupt or truncated (a `.keras` file is a zip archive: an incomplete
    copy or download has no central directory, a damaged one fails a CRC).
    """
    if not os.path.isfile(path):
        raise ValueError(f"Model file does not exist: {path!r}")
    if not path.endswith(".keras"):
        raise ValueError(f"Model file must be a .keras file (as train.py writes). Received: {path!r}")
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as e:
        raise ValueError(
            f"Model file {path!r} is corrupt or truncated: not a complete .keras "
            f"(zip) archive ({' '.join(str(e).split())})"
        ) from None
    if damaged is not None:
        raise ValueError(f"Model file {path!r} is corrupt: its member {damaged!r} fails its CRC check")
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # Keras raises many types for a bad file.
        reason = " ".join(str(e).split())[:300]
        raise ValueError(f"Cannot load model file {path!r} ({type(e).__name__}: {reason})") from None


def check_finite(outputs, what):
    """Refuses (ValueError) a model whose `outputs` (a row per image) hold NaN
    or inf: a diverged run's NaN weights, an overflow; not scored or exported."""
    outputs = np.asarray(outputs)
    bad = ~np.isfinite(outputs.reshape(len(outputs), -1)).all(axis=1)
    if bad.any():
        raise ValueError(
            f"{what} gives non-finite outputs (NaN or inf) for {int(bad.sum())} of "
            f"{len(bad)} images; its weights may hold NaN (a diverged run) or overflow"
        )


def load_keras(path, strategy=None, any_size=False):
    scope = strategy.scope() if strategy else contextlib.nullcontext()
    with scope:
        model = load_keras_model(path)
        if any_size:
            model = _with_any_input_size(model)
    return keras_artefact(model, path, strategy)


def pretrained(name, weights, strategy=None, any_size=False):
    """`get_model(name, weights=...)` with the published weights' preprocessing."""
    scope = strategy.scope() if strategy else contextlib.nullcontext()
    with scope:
        shape = (None, None, 3) if any_size else None
        model = models.get_model(name, weights=weights, input_shape=shape)
        model = preprocessing.with_preprocessing(model, preprocessing.caffe_preprocessing())
    artefact = keras_artefact(model, f"{name}:{weights}", strategy)
    artefact.family = models.VARIANTS[models.canonical_name(name)].family
    return artefact


def _saved_model_dir(path):
    """`path`, or its newest numbered version (TF Serving layout)."""
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        return path
    versions = [
        d for d in glob.glob(os.path.join(path, "*"))
        if os.path.basename(d).isdigit() and os.path.exists(os.path.join(d, "saved_model.pb"))
    ]
    if not versions:
        raise ValueError(f"No SavedModel in {path!r} (no saved_model.pb, nor version folders)")
    return max(versions, key=lambda d: int(os.path.basename(d)))


def load_saved_model(path):
    loaded = tf.saved_model.load(_saved_model_dir(path))
    if "serving_default" not in loaded.signatures:
        raise ValueError(f"SavedModel {path!r} has no serving_default signature")
    serve = loaded.signatures["serving_default"]
    spec = serve.structured_input_signature[1]
    (key,) = spec
    shape = spec[key].shape
    classes = serve.structured_outputs["probabilities"].shape[-1]

    def predict(images):
        out = serve(**{key: tf.constant(images, tf.float32)})
        return out["probabilities"].numpy()

    predict.loaded = loaded  # keeps the trackable objects alive
    return Artefact(path, predict, shape[1], classes, models.family_of(None, shape[1]))


def load_tflite(path):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path)
    (inp,) = interpreter.get_input_details()
    (out,) = interpreter.get_output_details()
    size, classes = int(inp["shape"][1]), int(out["shape"][-1])

    def predict(images):
        interpreter.resize_tensor_input(inp["index"], list(images.shape))
        interpreter.allocate_tensors()
        x = images
        scale, zero = inp["quantization"]
        if scale:
            x = np.round(x / scale + zero)
        interpreter.set_tensor(inp["index"], x.astype(inp["dtype"]))
        interpreter.invoke()
        y = interpreter.get_tensor(out["index"]).astype("float32")
        scale, zero = out["quantization"]
        return (y - zero) * scale if scale else y

    return Artefact(path, predict, size, classes, models.family_of(None, size))


def load(path=None, model=None, weights=None, strategy=None, any_size=False):
    """The artefact at `path` (.keras, SavedModel folder, .tflite), or a named model."""
    if path is None:
        return pretrained(model, weights, strategy, any_size)
    if not os.path.exists(path):
        raise ValueError(f"Model path does not exist: {path!r}")
    if path.endswith(".keras"):
        return load_keras(path, strategy, any_size)
    if path.endswith(".tflite"):
        return load_tflite(path)
    if os.path.isdir(path):
        return load_saved_model(path)
    raise ValueError(
        f"Unrecognised model path {path!r}: expected a .keras file, a SavedModel "
        "folder or a .tflite file"
    )


# ----------------------------------------------------------------- metrics


class Metrics:
    """Top-1/top-5 accuracy, per-class accuracy and the confusion matrix."""

    def __init__(self, num_classes, class_names=None):
        self.num_classes = num_classes
        self.class_names = list(class_names or range(num_classes))
        self.k = min(5, num_classes)
        self.confusion = np.zeros((num_classes, num_classes), "int64")
        self.topk_correct = 0

    def update(self, probabilities, labels):
        labels = np.asarray(labels, "int64")
        ranked = np.argsort(-probabilities, axis=1, kind="stable")
        np.add.at(self.confusion, (labels, ranked[:, 0]), 1)
        self.topk_correct += int(np.sum(ranked[:, : self.k] == labels[:, None]))

    def result(self):
        n = int(self.confusion.sum())
        top1 = float(np.trace(self.confusion) / n) if n else 0.0
        topk = self.topk_correct / n if n else 0.0
        counts = self.confusion.sum(axis=1)
        per_class = [
            float(c / t) if t else None for c, t in zip(self.confusion.diagonal(), counts)
        ]
        return {
            "num_examples": n,
            "top1_accuracy": top1,
            "top5_accuracy": topk,
            "top1_error": 1.0 - top1,
            "top5_error": 1.0 - topk,
            "top_k": self.k,
            # None for a class without examples.
            "per_class_accuracy": dict(zip(map(str, self.class_names), per_class)),
        }


# -------------------------------------------------------------------- data


def eval_data(dataset, split=None, data_dir=None, manual_dir=None, image_size=32,
              num_classes=10, synthetic_examples=256, seed=0):
    """(examples of (RGB image, label), count, class names) of one split.

    `dataset` takes train.py's forms: "synthetic", a folder (class names from
    its train/ folder, so labels match training; images from `split`, by
    default val/ or test/), or a TFDS name (split default: "test", else
    "validation").
    """
    if dataset == "synthetic":
        examples = data_lib.synthetic(synthetic_examples, image_size, num_classes, seed + 1)
        return examples, synthetic_examples, [str(i) for i in range(num_classes)]
    if os.path.isdir(dataset):
        return _folder_split(dataset, split)
    return data_lib.tfds_split(dataset, split, data_dir, manual_dir)


def _folder_split(root, split):
    splits = [split] if split else ["val", "test"]
    split_dir = next(
        (os.path.join(root, s) for s in splits if os.path.isdir(os.path.join(root, s))), None
    )
    if split_dir is None:
        raise ValueError(f"Dataset folder {root!r} has no {' or '.join(splits)} folder")
    names_dir = os.path.join(root, "train") if os.path.isdir(os.path.join(root, "train")) else split_dir
    class_names = data_lib.class_folders(names_dir)
    # Refuses a class folder that names_dir lacks: its images have no label.
    paths, labels = data_lib.list_images(split_dir, class_names)
    if not paths:
        raise ValueError(
            f"No JPEG/PNG images in the class folders of {split_dir!r} (classes, "
            f"from {names_dir!r}: {', '.join(class_names) or 'none'})"
        )
    paths, labels, _, _ = data_lib.readable(paths, labels, split_dir)
    if not paths:
        raise ValueError(f"None of the images in {split_dir!r} can be decoded")
    examples = tf.data.Dataset.from_tensor_slices((paths, tf.constant(labels, "int32")))
    examples = examples.map(lambda p, y: (data_lib.decode(p), y)).ignore_errors()
    return examples, len(paths), class_names


# -------------------------------------------------------------- evaluation


def check_fits(artefact, protocol, num_classes):
    """Raises ValueError unless the artefact can be evaluated so on this data."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"Unknown protocol: {protocol!r}. Accepted: {', '.join(PROTOCOLS)}")
    if artefact.num_classes != num_classes:
        raise ValueError(
            f"{artefact.path} predicts {artefact.num_classes} classes; the data "
            f"set has {num_classes}"
        )
    if protocol == "multiscale" and artefact.image_size is not None:
        raise ValueError(
            f"The multiscale protocol needs a fully-convolutional model taking "
            f"any image size; {artefact.path} takes only {artefact.image_size}x"
            f"{artefact.image_size} (use a .keras file or --model)"
        )


def evaluate(artefact, examples, num_examples, class_names, protocol, batch_size=64,
             scales=SCALES, verbose=1):
    """Scores `artefact` on `examples` ((RGB image, label) pairs) by `protocol`.

    Returns the dict of `Metrics.result()` plus the protocol and artefact.
    """
    check_fits(artefact, protocol, len(class_names))
    size = artefact.image_size or models.FAMILIES[artefact.family].default_size
    metrics = Metrics(len(class_names), class_names)
    progress = keras.utils.Progbar(num_examples, verbose=verbose)
    if protocol == "multiscale":
        for image, label in examples.as_numpy_iterator():
            views = multiscale_views(image, size, scales)
            probs = np.mean([artefact.predict(v.numpy()) for v in views], axis=0)
            check_finite(probs, artefact.path)
            metrics.update(probs, [label])
            progress.add(1)
    else:
        view = VIEWS[protocol]
        batches = (
            examples.map(lambda x, y: (view(x, size), y), num_parallel_calls=tf.data.AUTOTUNE)
            .batch(batch_size)
            .prefetch(tf.data.AUTOTUNE)
        )
        for views, labels in batches.as_numpy_iterator():
            b, v = views.shape[:2]
            probs = artefact.predict(views.reshape((b * v,) + views.shape[2:]))
            check_finite(probs, artefact.path)
            metrics.update(probs.reshape(b, v, -1).mean(axis=1), labels)
            progress.add(b)
    result = metrics.result()
    result.update(protocol=protocol, artefact=artefact.path, image_size=size)
    if protocol == "multiscale":
        result["scales"] = [round(s * size / 224) for s in scales]
    return result, metrics.confusion
