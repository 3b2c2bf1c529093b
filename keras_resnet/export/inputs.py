"""What an export starts from: the model, its metadata, its test view, images.

Every exported artefact takes raw RGB in [0, 255] and applies the model's own
preprocessing, so the Keras model it is checked against must too:
- a `.keras` file written by train.py already does (it carries its
  `MeanSubtraction`) and is exported as it is, with its ModelInfo;
- a model name with weights (a name of the weights table, a file, or None
  for He initialisation) builds a `keras_resnet` model with the weights'
  normalisation (the table's; caffe where none is known) in front, and its
  ModelInfo (keras_resnet.evaluation.artefacts).

The test view (what `serving_bytes` does to a decoded image, and what
calibration and verification images get) is one of keras_resnet.data.augment's:
by default the one the model's metadata names, as train.py evaluates it;
"single" (CIFAR, Sec. 4.2) the image itself, resized to the input size if it
is not already; "center" (ImageNet, Sec. 3.4, the centre of the 10 crops) the
shorter side resized to size * 256 / 224 and the centre crop. A model without
metadata (a user's own `.keras` file) needs the view given.
"""

import dataclasses
import os
from collections.abc import Callable

import keras
import numpy as np

from keras_resnet.data import augment
from keras_resnet.data import folders
from keras_resnet.data import sources
from keras_resnet.errors import ArgumentError
from keras_resnet.errors import DatasetUnavailableError
from keras_resnet.evaluation import artefacts
from keras_resnet.evaluation import checks
from keras_resnet.models.metadata import ModelInfo

EVAL_TRANSFORMS = ("auto", *augment.SINGLE_VIEWS)
TFDS_PREFIX = "tfds:"


def load_exportable(model_path: str | None = None, model_name: str | None = None,
                  weights: str | None = None, image_size: int | None = None) -> artefacts.Artefact:
    """The Keras model to export, with its ModelInfo; it takes float32 RGB
    in [0, 255].

    Give `model_path` (a `.keras` file that carries its preprocessing) or
    `model_name` (any name of `keras_resnet.list_models()`) with `weights`
    (None for He initialisation, "imagenet", or a weights file).
    """
    if model_path is not None and not model_path.endswith(".keras"):
        raise ValueError(f"Model file must be a .keras file (as train.py writes). Received: {model_path!r}")
    return artefacts.load_artefact(model_path, model_name, weights, image_size=image_size)


def load_model(model_path: str | None = None, model_name: str | None = None,
               weights: str | None = None, image_size: int | None = None) -> keras.Model:
    """`load_exportable(...)`'s Keras model."""
    return load_exportable(model_path, model_name, weights, image_size).model


def input_size(model: keras.Model) -> tuple[int, int]:
    """(height, width) of the model's input; they must be fixed and equal."""
    shape = tuple(model.input_shape)
    if len(shape) != 4 or shape[-1] != 3 or shape[1] is None or shape[1] != shape[2]:
        raise ValueError(
            "Export needs a model with a fixed square RGB input (batch, size, "
            f"size, 3). Received: input_shape={shape}"
        )
    return shape[1], shape[2]


def test_view(eval_transform: str, info: ModelInfo | None, what: str = "the model") -> str:
    """The test view `eval_transform` names: "single" or "center", or "auto",
    the view of `info` (the model's metadata, which `what` lacks if None)."""
    if eval_transform not in EVAL_TRANSFORMS:
        raise ArgumentError("eval_transform", eval_transform, f"must be one of {', '.join(EVAL_TRANSFORMS)}")
    if eval_transform != "auto":
        return eval_transform
    if info is None:
        raise ArgumentError("eval_transform", eval_transform, (
            f"must be one of {', '.join(augment.SINGLE_VIEWS)} for {what}: it carries no "
            "keras_resnet metadata to read its test view from"))
    return info.test_view


def eval_transform(name: str, info: ModelInfo | None = None, what: str = "the model") -> Callable:
    """The test view `name` (see `test_view`) as fn(image, size) -> float32 [size, size, 3]."""
    return augment.one_view(test_view(name, info, what))


def exported_info(info: ModelInfo | None, view: str) -> ModelInfo | None:
    """What an export records: the model's ModelInfo with the test view it serves."""
    return None if info is None else dataclasses.replace(info, test_view=view)


def _tfds_images(spec: str, limit: int, data_dir: str | None) -> list:
    name, _, split = spec[len(TFDS_PREFIX):].partition(":")
    try:
        examples = sources.tfds_split(name, split or None, data_dir).examples
    except DatasetUnavailableError as e:
        raise ValueError(f"{e.cause}. Prepare it in the TFDS data directory data_dir, or give an image folder") from None
    return [image for image, _ in examples.take(limit)]


@dataclasses.dataclass
class Images:
    """Images for calibration and verification, at the model's input size."""

    pixels: np.ndarray  # float32 [N, H, W, 3], RGB in [0, 255]
    source: str  # where they came from, for the report


def load_images(source: str | None, image_size: int, transform: Callable | None, limit: int = 100,
                seed: int = 0, data_dir: str | None = None) -> "Images":
    """Up to `limit` images of `source`, through the evaluation transform.

    `source` is a folder (images at any depth, e.g. class subfolders),
    "tfds:NAME[:SPLIT]" (default split: test, else validation), or None for seeded uniform
    noise (enough to compare float artefacts, not to calibrate int8).
    """
    if limit < 1:
        raise ArgumentError("limit", limit, "must be at least 1")
    if source is None:
        pixels = np.random.RandomState(seed).uniform(0, 255, (limit, image_size, image_size, 3))
        return Images(pixels.astype("float32"), f"{limit} random images")
    if source.startswith(TFDS_PREFIX):
        decoded = _tfds_images(source, limit, data_dir)
    elif os.path.isdir(source):
        split = folders.read_folder(source, limit=limit, seed=seed)
        decoded = [image for image, _ in split.examples]
    elif os.path.lexists(source):
        raise ValueError(
            f"Image source {source!r} is a file, not a folder. Accepted: an image folder "
            f"(with or without class subfolders) or {TFDS_PREFIX}NAME[:SPLIT]"
        )
    else:
        raise ValueError(
            f"Image source does not exist: {source!r}. Accepted: an image folder "
            "(with or without class subfolders) or tfds:NAME[:SPLIT]"
        )
    if not decoded:
        raise ValueError(f"No images in {source!r}")
    pixels = np.stack([transform(image, image_size).numpy() for image in decoded])
    return Images(pixels, f"{len(pixels)} images of {source}")


def keras_outputs(model: keras.Model, images: "Images") -> np.ndarray:
    """The Keras model's probabilities on `images` (`Images`); a model whose
    weights or outputs are not finite is refused before anything is written."""
    checks.check_weights(model, f"The Keras model {model.name!r}")
    outputs = model.predict(images.pixels, verbose=0)
    checks.check_finite(outputs, f"The Keras model {model.name!r}")
    return outputs


def compare(reference: np.ndarray, outputs: np.ndarray, exported: str = "The export") -> tuple[float, float]:
    """(max abs difference, top-1 agreement) of the Keras model's
    probabilities `reference` and the export's `outputs`.

    Raises ValueError naming the side whose outputs are not finite (NaN or
    inf): their difference would be NaN, and argmax of NaN rows agrees.
    """
    reference, outputs = np.asarray(reference), np.asarray(outputs)
    checks.check_finite(reference, "The Keras model")
    checks.check_finite(outputs, exported)
    if reference.shape != outputs.shape:
        raise ValueError(f"Output shapes differ: {reference.shape} vs {outputs.shape}")
    diff = float(np.abs(reference - outputs).max())
    agree = float(np.mean(reference.argmax(-1) == outputs.argmax(-1)))
    return diff, agree


@dataclasses.dataclass
class Report:
    """What an export wrote and how closely it follows the Keras model."""

    path: str
    size_bytes: int
    max_abs_diff: float  # on probabilities, against the Keras model
    top1_agreement: float  # fraction of images with the same top class
    images: str  # the images compared

    def __str__(self):
        return (
            f"{self.path}: {self.size_bytes / 2**20:.2f} MiB; against Keras on "
            f"{self.images}: max abs difference {self.max_abs_diff:.3g}, "
            f"top-1 agreement {self.top1_agreement:.1%}"
        )


def check_folder(path: str, what: str = "Output directory") -> None:
    """Refuses a folder to write in that exists as a file (it is created if missing)."""
    if os.path.lexists(path) and not os.path.isdir(path):
        raise ValueError(f"{what} {path!r} is a file, not a folder; give a folder to write in")


def directory_size(path: str) -> int:
    return sum(
        os.path.getsize(os.path.join(folder, f))
        for folder, _, files in os.walk(path)
        for f in files
    )
