"""The paper's test protocols, on any artefact: `.keras`, SavedModel, `.tflite`.

Protocols (each averages softmax scores over its views of an image): the test
views of keras_resnet.data.augment ("single", CIFAR, Sec. 4.2; "center" and
"10crop", Table 3) and "multiscale": fully convolutional, on the whole image
with its shorter side at each of {224, 256, 384, 480, 640} (scaled by
size/224) (Table 4). Our classifier is global average pooling then one linear
layer, so averaging its scores over every position equals applying it to the
pooled features. "weights": the transform published weights were scored with
(the weights table's: torchvision's IMAGENET1K_V2 resize 232 then crop 224,
"ResNet strikes back" bicubic 235 then 224), so that their published
accuracy is what is reproduced.

The protocol and the image size default to what the artefact says: a named
set of weights, its own transform; else its metadata's test view and input
size (keras_resnet.models.metadata); an artefact without metadata needs them
given. Images enter as RGB in [0, 255]; artefacts carry their own
preprocessing. Each result names the transform it used (`describe`).
"""

import keras
import numpy as np
import tensorflow as tf

from keras_resnet.data import augment
from keras_resnet.data import sources
from keras_resnet.errors import ArgumentError
from keras_resnet.evaluation import checks
from keras_resnet.evaluation.artefacts import Artefact

PAPER_PROTOCOLS = (*augment.VIEWS, "multiscale")
PROTOCOLS = (*PAPER_PROTOCOLS, "weights")
SCALES = augment.SCALES


# ----------------------------------------------------------------- metrics


class Metrics:
    """Top-1/top-5 accuracy, per-class accuracy and the confusion matrix."""

    def __init__(self, num_classes: int, class_names=None):
        self.num_classes = num_classes
        self.class_names = list(class_names or range(num_classes))
        self.k = min(5, num_classes)
        self.confusion = np.zeros((num_classes, num_classes), "int64")
        self.topk_correct = 0

    def update(self, probabilities: np.ndarray, labels) -> None:
        labels = np.asarray(labels, "int64")
        ranked = np.argsort(-probabilities, axis=1, kind="stable")
        np.add.at(self.confusion, (labels, ranked[:, 0]), 1)
        self.topk_correct += int(np.sum(ranked[:, : self.k] == labels[:, None]))

    def result(self) -> dict:
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


# -------------------------------------------------------------- evaluation


def resolve_protocol(artefact: Artefact, protocol: str | None = None, image_size: int | None = None) -> tuple[str, int]:
    """(protocol, image size): those given, else the artefact's: its weights'
    own transform where it has one, its metadata's test view and input size;
    the size also from a fixed input."""
    info = artefact.info
    if protocol is None and artefact.transform is not None:
        protocol = "weights"
    if protocol is None:
        if info is None:
            raise ArgumentError("protocol", None, (
                f"must be given ({', '.join(PAPER_PROTOCOLS)}): {artefact.path} carries no "
                "keras_resnet metadata to read its test view from"))
        protocol = info.test_view
    if protocol not in PROTOCOLS:
        raise ArgumentError("protocol", protocol, f"must be one of {', '.join(PROTOCOLS)}")
    if protocol == "multiscale":
        _check_multiscale(artefact)
    if protocol == "weights" and artefact.transform is None:
        raise ArgumentError("protocol", protocol, (
            f"needs published weights (a model name and a name of list_weights()): "
            f"{artefact.path} carries no evaluation transform of its own"))
    fixed = artefact.image_size
    size = image_size or (info.image_size if info else None) or fixed
    if size is None:
        raise ArgumentError("image_size", None, (
            f"must be given: {artefact.path} takes any input size and carries no "
            "keras_resnet metadata to read its size from"))
    if fixed is not None and size != fixed:
        raise ArgumentError("image_size", size, f"must be {fixed}, the input size of {artefact.path}")
    return protocol, size


def check_fits(artefact: Artefact, protocol: str, class_names: tuple[str, ...] | list[str]) -> None:
    """Raises ValueError unless the artefact can be evaluated so on data of
    `class_names`. Names "0", "1", ... are those of unnamed classes: they
    match any."""
    num_classes = len(class_names)
    if artefact.num_classes != num_classes:
        raise ValueError(
            f"{artefact.path} predicts {artefact.num_classes} classes; the data set has {num_classes}"
        )
    trained = artefact.info.class_names if artefact.info else sources.index_names(num_classes)
    unnamed = sources.index_names(num_classes)
    if unnamed not in (trained, tuple(class_names)) and trained != tuple(class_names):
        i = next((i for i, (a, b) in enumerate(zip(trained, class_names)) if a != b), 0)
        raise ValueError(
            f"{artefact.path} was trained on other classes than the data set's: its "
            f"class {i} is {trained[i]!r}, the data set's {class_names[i]!r}"
        )


def describe(protocol: str, size: int, artefact: Artefact | None = None, scales=SCALES) -> str:
    """The transform `protocol` applies at `size`, in words (for results)."""
    if protocol == "weights":
        return artefact.transform.at(size).describe()
    if protocol == "multiscale":
        sides = ", ".join(str(augment.scaled(s, size)) for s in scales)
        return f"the whole image, shorter side resized to each of {sides} (bilinear)"
    if protocol == "single":
        return f"the whole image resized to {size}x{size}"
    test_resize = f"shorter side resized to {augment.scaled(256, size)} (bilinear)"
    if protocol == "center":
        return f"{test_resize}, centre {size}x{size} crop"
    return f"{test_resize}, 10 crops of {size}x{size} (4 corners, centre, their flips)"


def _view(artefact: Artefact, protocol: str):
    """fn(image, size) -> [views, size, size, 3] of a one-pass protocol."""
    if protocol != "weights":
        return augment.VIEWS[protocol]

    def view(image, size):
        transform = artefact.transform.at(size)
        return augment.weights_view(transform.resize, transform.crop, transform.interpolation)(image)

    return view


def _check_multiscale(artefact: Artefact) -> None:
    """Raises ValueError unless the artefact takes the multiscale protocol's
    several image sizes: before any data is read."""
    if artefact.image_size is not None:
        raise ValueError(
            f"The multiscale protocol needs a fully-convolutional model taking "
            f"any image size; {artefact.path} takes only {artefact.image_size}x"
            f"{artefact.image_size} (a .keras file or a model name can)"
        )
    mean_size = artefact.model is not None and checks.pixel_mean_size(artefact.model)
    if mean_size:
        raise ValueError(
            f"The multiscale protocol resizes images to several sizes; {artefact.path} "
            f"subtracts a per-pixel mean of {mean_size[0]}x{mean_size[1]} (its training set's, "
            "Sec. 4.2), which fits only images of that size: use its own test view"
        )


def _score_multiscale(artefact, examples, size, scales, metrics, progress):
    for image, label in examples.as_numpy_iterator():
        views = augment.multiscale_views(image, size, scales)
        probs = np.mean([artefact.predict(v.numpy()) for v in views], axis=0)
        checks.check_finite(probs, artefact.path)
        metrics.update(probs, [label])
        progress.add(1)


def _score_views(artefact, examples, view, size, batch_size, metrics, progress):
    batches = (
        examples.map(lambda x, y: (view(x, size), y), num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    for views, labels in batches.as_numpy_iterator():
        b, v = views.shape[:2]
        probs = artefact.predict(views.reshape((b * v,) + views.shape[2:]))
        checks.check_finite(probs, artefact.path)
        metrics.update(probs.reshape(b, v, -1).mean(axis=1), labels)
        progress.add(b)


def evaluate(artefact: Artefact, split: sources.Split, protocol: str | None = None, *,
             image_size: int | None = None, batch_size: int = 64, scales=SCALES,
             verbose: int = 1) -> tuple[dict, np.ndarray]:
    """Scores `artefact` on `split` by `protocol` at `image_size` (both by
    default from the artefact's metadata, see `resolve_protocol`).

    Returns the dict of `Metrics.result()` plus the protocol, artefact and
    image size, and the confusion matrix.
    """
    protocol, size = resolve_protocol(artefact, protocol, image_size)
    check_fits(artefact, protocol, split.class_names)
    metrics = Metrics(len(split.class_names), split.class_names)
    # Counts images: Keras' default unit would label the time per image "ms/step".
    progress = keras.utils.Progbar(split.count, verbose=verbose, unit_name="image")
    if protocol == "multiscale":
        _score_multiscale(artefact, split.examples, size, scales, metrics, progress)
    else:
        _score_views(artefact, split.examples, _view(artefact, protocol), size, batch_size,
                     metrics, progress)
    result = metrics.result()
    result.update(protocol=protocol, artefact=artefact.path, image_size=size,
                  transform=describe(protocol, size, artefact, scales))
    if protocol == "multiscale":
        result["scales"] = [augment.scaled(s, size) for s in scales]
    return result, metrics.confusion


def evaluate_on(artefact: Artefact, dataset: str, split: str | None = None, *,
                protocol: str | None = None, image_size: int | None = None,
                batch_size: int = 64, data_dir: str | None = None,
                manual_dir: str | None = None,
                verbose: int = 1) -> tuple[dict, np.ndarray, sources.Split]:
    """What evaluate.py does: scores `artefact` on `split` of `dataset` (its
    test split by default) by `protocol` at `image_size` (by default from the
    artefact's metadata). Returns `evaluate`'s result, which also records the
    dataset and the split scored (its name: the default's too), its confusion
    matrix, and the split read."""
    protocol, size = resolve_protocol(artefact, protocol, image_size)
    examples = sources.eval_split(dataset, split, image_size=size, num_classes=artefact.num_classes,
                                  data_dir=data_dir, manual_dir=manual_dir)
    result, confusion = evaluate(artefact, examples, protocol, image_size=size,
                                 batch_size=batch_size, verbose=verbose)
    result.update(dataset=dataset, split=examples.name)
    return result, confusion, examples

