"""Where images come from: an image folder, a TFDS data set, or synthetic data.

One reader per kind of source, shared by training (keras_resnet.data.pipeline),
evaluation and export. A source yields (uint8 RGB image [H, W, 3], int32
label) examples, in a `Split` (keras_resnet.data.splits) that also says how
many there are and what the labels mean; training reads a `Source`: training,
validation and test splits.

Folders: keras_resnet.data.folders, the image-folder reader (without val/, a
seeded `VAL_FRACTION` of train/ validates). TFDS: CIFAR-10 trains on the
paper's 45k/5k split of its training set (Sec. 4.2); other data sets on
"train", validated on "validation" or "test". `training_source` and
`eval_split` pick the reader that `dataset` names.
"""

import contextlib
import dataclasses
import logging
import os
from collections.abc import Iterator

import numpy as np
import tensorflow as tf

from keras_resnet.data import fashion_mnist
from keras_resnet.data import folders
from keras_resnet.data.images import MAX_PIXELS
from keras_resnet.data.splits import VAL_FRACTION
from keras_resnet.data.splits import Source
from keras_resnet.data.splits import Split
from keras_resnet.data.splits import decode_bytes  # noqa: F401  (a name of this module too)
from keras_resnet.data.splits import index_names
from keras_resnet.errors import ArgumentError
from keras_resnet.errors import DatasetUnavailableError

# Paper Sec. 4.2: hyper-parameters chosen on a 45k/5k split of the 50k images.
TFDS_SPLITS = {"cifar10": ("train[:45000]", "train[45000:]")}
DOWNLOAD_RETRIES = 2  # TFDS's are 10, with back-off.


# --------------------------------------------------------------- synthetic


def synthetic(num_examples: int, image_size: int, num_classes: int, seed: int) -> Split:
    """Learnable random images: a colour per class plus uniform noise.

    The class colours are the same for every `seed`, so a training set and a
    validation set drawn with two seeds pose the same task.
    """
    colours = np.random.RandomState(1234).uniform(20, 235, size=(num_classes, 3))
    rng = np.random.RandomState(seed)
    labels = rng.randint(0, num_classes, size=num_examples)
    noise = rng.uniform(-25, 25, size=(num_examples, image_size, image_size, 3))
    images = np.clip(colours[labels][:, None, None, :] + noise, 0, 255)
    examples = tf.data.Dataset.from_tensor_slices((images.astype("uint8"), labels.astype("int32")))
    return Split(examples=examples, count=num_examples, class_names=index_names(num_classes))


# --------------------------------------------------------------------- TFDS


def tfds_builder(name: str, data_dir: str | None = None, manual_dir: str | None = None):
    """The TFDS builder of `name`, downloaded and prepared if needed."""
    import tensorflow_datasets as tfds  # only TFDS runs pay for the import.

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # tfds raises its own DatasetNotFoundError.
        raise ValueError(
            f"Unknown dataset: {name!r}: not a TFDS name (e.g. cifar10, "
            "cifar100, imagenette, imagenet2012), not an existing folder, and "
            f"not 'synthetic' ({type(e).__name__})"
        ) from None
    from tensorflow_datasets.core.download import downloader

    if os.path.isfile(os.path.join(builder.data_dir, "dataset_info.json")):
        return builder  # prepared (builder.is_prepared() would warn of a missing folder)
    # Where TFDS writes while it downloads and prepares `name`: what it made
    # of these is removed again if it fails (empty folders only). The
    # folders that other data sets share are not walked.
    root = os.path.dirname(os.path.dirname(builder.data_dir))
    downloads = os.path.join(root, "downloads")
    shared = [root, downloads, os.path.join(downloads, "extracted")]
    walked = [os.path.join(root, name), os.path.join(downloads, name)]

    def folders_now() -> set[str]:
        return {p for p in shared if os.path.isdir(p)} | {p for f in walked for p in _folders(f)}

    existing = folders_now()
    logging.getLogger("absl").info("Downloading and preparing TFDS dataset %s into %s.",
                                   name, builder.data_dir)
    # TFDS 4.9 retries a failed download 10 times with back-off, about 3.5
    # minutes offline; a few retries fail in a second.
    retries, downloader.MAX_RETRIES = downloader.MAX_RETRIES, DOWNLOAD_RETRIES
    try:
        with _quiet_download():
            builder.download_and_prepare(
                download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    except Exception as e:
        for folder in sorted(folders_now() - existing, reverse=True):  # the deepest first
            with contextlib.suppress(OSError):  # not empty: a file TFDS wrote stays
                os.rmdir(folder)
        raise DatasetUnavailableError(
            f"Cannot download or prepare TFDS dataset {name!r} into "
            f"{builder.data_dir!r} ({type(e).__name__}: {_shortened(str(e), 300)})"
        ) from None
    finally:
        downloader.MAX_RETRIES = retries
    return builder


def _folders(top: str) -> list[str]:
    """`top` and the folders under it, symlinks not followed (nor listed)."""
    if not os.path.isdir(top) or os.path.islink(top):
        return []
    return [top] + [os.path.join(parent, d) for parent, dirs, _ in os.walk(top) for d in dirs
                    if not os.path.islink(os.path.join(parent, d))]


@contextlib.contextmanager
def _quiet_download() -> Iterator[None]:
    """No progress bars, nor urllib3's retry warnings: a failure is then the
    program's first and only line about the download."""
    import tensorflow_datasets as tfds

    urllib3 = logging.getLogger("urllib3")
    level = urllib3.level
    urllib3.setLevel(logging.ERROR)
    tfds.disable_progress_bar()
    try:
        yield
    finally:
        tfds.enable_progress_bar()
        urllib3.setLevel(level)


def _shortened(text: str, limit: int) -> str:
    """`text` on one line, cut at a word if longer than `limit`, marked so."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: text.rfind(" ", 0, limit)] + " ..."


def _open_split(builder, split: str, seed: int = 0, shuffle: bool = False) -> Split:
    import tensorflow_datasets as tfds

    examples = builder.as_dataset(
        split=split, as_supervised=True, shuffle_files=shuffle,
        read_config=tfds.ReadConfig(shuffle_seed=seed),
    )
    try:
        count = builder.info.splits[split].num_examples
    except (KeyError, ValueError):  # e.g. under tfds.testing.mock_data.
        count = int(examples.reduce(0, lambda n, _: n + 1))
    label = builder.info.features["label"]
    names = tuple(label.names) if label.names else index_names(label.num_classes)
    return Split(examples=examples, count=count, class_names=names)


def tfds_split(name: str, split: str | None = None, data_dir: str | None = None,
               manual_dir: str | None = None) -> Split:
    """One split of a TFDS data set; by default "test", else "validation"."""
    builder = tfds_builder(name, data_dir, manual_dir)
    if split is None:
        split = "test" if "test" in builder.info.splits else "validation"
    return dataclasses.replace(_open_split(builder, split), name=split)


def tfds_source(name: str, data_dir: str | None = None, manual_dir: str | None = None,
                seed: int = 0) -> Source:
    """Training and validation splits of a TFDS data set (see TFDS_SPLITS)."""
    builder = tfds_builder(name, data_dir, manual_dir)
    val_split = "validation" if "validation" in builder.info.splits else "test"
    train_split, val_split = TFDS_SPLITS.get(name, ("train", val_split))
    return Source(_open_split(builder, train_split, seed, shuffle=True), _open_split(builder, val_split),
                  splits={"train": f"{name} {train_split}", "val": f"{name} {val_split}"})


# ---------------------------------------------------------------- any kind


def training_source(dataset: str, *, image_size: int, num_classes: int, synthetic_examples: int,
                    synthetic_val_examples: int, seed: int = 0, data_dir: str | None = None,
                    manual_dir: str | None = None, val_fraction: float = VAL_FRACTION,
                    max_pixels: int = MAX_PIXELS) -> Source:
    """The training, validation and test splits of `dataset`: "synthetic"
    (of `num_classes` classes at `image_size`), a folder (`folders.folder_source`),
    or a TFDS name."""
    if dataset == "synthetic":
        return Source(
            synthetic(synthetic_examples, image_size, num_classes, seed),
            synthetic(synthetic_val_examples, image_size, num_classes, seed + 1),
            splits={"train": f"synthetic ({synthetic_examples} images, seed {seed})",
                    "val": f"synthetic ({synthetic_val_examples} images, seed {seed + 1})"},
        )
    if folders.is_folder(dataset):
        return folders.folder_source(os.path.expanduser(dataset), seed=seed,
                                     val_fraction=val_fraction, max_pixels=max_pixels)
    if dataset == fashion_mnist.NAME and (folder := fashion_mnist.find(manual_dir)):
        return fashion_mnist.fashion_mnist_source(folder, seed=seed, val_fraction=val_fraction)
    return tfds_source(dataset, data_dir, manual_dir, seed)


def eval_split(dataset: str, split: str | None = None, *, image_size: int, num_classes: int,
               synthetic_examples: int = 256, seed: int = 0, data_dir: str | None = None,
               manual_dir: str | None = None, max_pixels: int = MAX_PIXELS) -> Split:
    """The split of `dataset` that evaluation scores, in training's forms:
    "synthetic" (training's validation set), a folder
    (`folders.folder_test_split`) or a TFDS name (`tfds_split`)."""
    if dataset == "synthetic":
        if split is not None:
            raise ArgumentError("split", split, "must be left out for the synthetic dataset")
        return dataclasses.replace(synthetic(synthetic_examples, image_size, num_classes, seed + 1),
                                   name="validation")
    if folders.is_folder(dataset):
        return folders.folder_test_split(os.path.expanduser(dataset), split, max_pixels)
    if dataset == fashion_mnist.NAME and (folder := fashion_mnist.find(manual_dir)):
        return fashion_mnist.fashion_mnist_split(folder, split, seed=seed)
    return tfds_split(dataset, split, data_dir, manual_dir)
