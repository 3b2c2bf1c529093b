"""What an export starts from: the model, its evaluation transform, images.

Every exported artefact takes raw RGB in [0, 255] and applies the model's own
preprocessing, so the Keras model it is checked against must too:
- a `.keras` file written by train.py already does (it carries its
  `MeanSubtraction`) and is exported as it is;
- `--model=NAME --weights=imagenet|FILE` builds a `keras_resnet` model, which
  takes preprocessed input, and puts `caffe_preprocessing()` (the published
  weights' preprocessing) in front of it.

The evaluation transform (what `serving_bytes` does to a decoded image, and
what calibration and verification images get) is the test view of
keras_resnet.data for the model's family, as train.py evaluates it: CIFAR
(paper Sec. 4.2) the image itself, resized to the input size if it is not
already; ImageNet (Sec. 3.4, the centre of the 10 crops) the shorter side
resized to size / 0.875 (256 for 224) and the centre crop. The family is the
model name's (train.py's models keep their variant's name, e.g. "resnet20"),
else the input size's: under 64 CIFAR, as keras_resnet.evaluation decides.
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf
from absl import logging

import keras_resnet
from keras_resnet import data as data_lib
from keras_resnet import evaluation

EVAL_TRANSFORMS = ("auto", "cifar", "imagenet")
TFDS_PREFIX = "tfds:"


def load_model(model_path=None, model_name=None, weights=None, image_size=None):
    """The Keras model to export; it takes float32 RGB in [0, 255].

    Give `model_path` (a `.keras` file that carries its preprocessing) or
    `model_name` (any name of `keras_resnet.list_models()`) with `weights`
    (None for He initialisation, "imagenet", or a weights file).
    """
    if (model_path is None) == (model_name is None):
        raise ValueError(
            "Give a model path (--model_path, a .keras file) or a model name "
            "(--model), not both and not neither. Received: "
            f"model_path={model_path!r}, model={model_name!r}"
        )
    if model_path is not None:
        if weights is not None or image_size is not None:
            raise ValueError(
                "weights and image_size go with a model name; a .keras file "
                f"has its own. Received: weights={weights!r}, image_size={image_size!r}"
            )
        # A train.py model's learning-rate schedule class need not be
        # importable here: the shared loader does not compile.
        return evaluation.load_keras_model(model_path)
    if weights is not None and weights != "imagenet" and not os.path.isfile(weights):
        raise ValueError(
            f"Weights file does not exist: {weights!r}. Accepted: 'imagenet' or a weights file"
        )
    shape = None if image_size is None else (image_size, image_size, 3)
    model = keras_resnet.get_model(model_name, weights=weights, input_shape=shape)
    return keras_resnet.with_preprocessing(model, keras_resnet.caffe_preprocessing())


def input_size(model):
    """(height, width) of the model's input; they must be fixed and equal."""
    shape = tuple(model.input_shape)
    if len(shape) != 4 or shape[-1] != 3 or shape[1] is None or shape[1] != shape[2]:
        raise ValueError(
            "Export needs a model with a fixed square RGB input (batch, size, "
            f"size, 3). Received: input_shape={shape}"
        )
    return shape[1], shape[2]


def eval_transform(name, image_size, model_name=None):
    """The test view of keras_resnet.data for `name`: "cifar", "imagenet", or
    "auto" (the family of `model_name` if it is a variant's, else by size)."""
    if name not in EVAL_TRANSFORMS:
        raise ValueError(
            f"Unknown eval_transform: {name!r}. Accepted: {', '.join(EVAL_TRANSFORMS)}"
        )
    if name == "auto":
        name = keras_resnet.family_of(model_name, image_size)
    return data_lib.check_augment(name)[1]


def _image_files(root):
    """Every JPEG/PNG below `root` (class subfolders or not), sorted."""
    paths = []
    for folder, _, files in os.walk(root):
        paths.extend(
            os.path.join(folder, f)
            for f in files
            if f.lower().endswith(data_lib.IMAGE_EXTENSIONS)
        )
    return sorted(paths)


def _folder_images(root, limit, seed):
    paths = _image_files(root)
    if not paths:
        raise ValueError(f"No JPEG/PNG images in {root!r} or its subfolders")
    # A seeded shuffle, so calibration sees every class, not the first one.
    np.random.RandomState(seed).shuffle(paths)
    images, skipped = [], []
    for path in paths:
        if len(images) == limit:
            break
        try:
            images.append(data_lib.decode(path))
        except tf.errors.InvalidArgumentError:
            skipped.append(path)
    if skipped:
        logging.warning("Skipped %d unreadable image(s), e.g. %s", len(skipped), skipped[0])
    if not images:
        raise ValueError(f"None of the images in {root!r} can be decoded")
    return images


def _tfds_images(spec, limit, data_dir):
    import tensorflow_datasets as tfds  # only TFDS sources pay for the import.

    name, _, split = spec[len(TFDS_PREFIX):].partition(":")
    try:
        ds = tfds.builder(name, data_dir=data_dir).as_dataset(split=split or "test")
        return [example["image"] for example in ds.take(limit)]
    except Exception as e:  # tfds raises many types; name the source instead.
        reason = " ".join(str(e).split())[:200]
        raise ValueError(
            f"Cannot read TFDS split {spec!r} ({type(e).__name__}: {reason}). "
            "It must be prepared in the TFDS data directory (train.py prepares "
            "it), or give an image folder."
        ) from None


@dataclasses.dataclass
class Images:
    """Images for calibration and verification, at the model's input size."""

    pixels: np.ndarray  # float32 [N, H, W, 3], RGB in [0, 255]
    source: str  # where they came from, for the report


def load_images(source, image_size, transform, limit=100, seed=0, data_dir=None):
    """Up to `limit` images of `source`, through the evaluation transform.

    `source` is a folder (images at any depth, e.g. class subfolders),
    "tfds:NAME[:SPLIT]" (default split: test), or None for seeded uniform
    noise (enough to compare float artefacts, not to calibrate int8).
    """
    if limit < 1:
        raise ValueError(f"The number of images must be at least 1. Received: {limit}")
    if source is None:
        pixels = np.random.RandomState(seed).uniform(0, 255, (limit, image_size, image_size, 3))
        return Images(pixels.astype("float32"), f"{limit} random images")
    if source.startswith(TFDS_PREFIX):
        decoded = _tfds_images(source, limit, data_dir)
    elif os.path.isdir(source):
        decoded = _folder_images(source, limit, seed)
    else:
        raise ValueError(
            f"Image source does not exist: {source!r}. Accepted: an image folder "
            "(with or without class subfolders) or tfds:NAME[:SPLIT]"
        )
    if not decoded:
        raise ValueError(f"No images in {source!r}")
    pixels = np.stack([transform(image, image_size).numpy() for image in decoded])
    return Images(pixels, f"{len(pixels)} images of {source}")


def keras_outputs(model, images):
    """The Keras model's probabilities on `images` (`Images`); a model whose
    outputs are not finite is refused before anything is written."""
    outputs = model.predict(images.pixels, verbose=0)
    evaluation.check_finite(outputs, f"The Keras model {model.name!r}")
    return outputs


def compare(reference, outputs, exported="The export"):
    """(max abs difference, top-1 agreement) of the Keras model's
    probabilities `reference` and the export's `outputs`.

    Raises ValueError naming the side whose outputs are not finite (NaN or
    inf): their difference would be NaN, and argmax of NaN rows agrees.
    """
    reference, outputs = np.asarray(reference), np.asarray(outputs)
    evaluation.check_finite(reference, "The Keras model")
    evaluation.check_finite(outputs, exported)
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


def check_folder(path, what="Output directory"):
    """Refuses a folder to write in that exists as a file (it is created if missing)."""
    if os.path.lexists(path) and not os.path.isdir(path):
        raise ValueError(f"{what} {path!r} is a file, not a folder; give a folder to write in")


def directory_size(path):
    return sum(
        os.path.getsize(os.path.join(folder, f))
        for folder, _, files in os.walk(path)
        for f in files
    )
