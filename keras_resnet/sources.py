"""Where images come from: an image folder, a TFDS data set, or synthetic data.

One reader per kind of source, shared by training (keras_resnet.pipeline),
evaluation and export. A source yields (uint8 RGB image [H, W, 3], int32
label) examples, in a `Split` that also says how many there are and what the
labels mean; training reads a `Source`, a training and a validation split.

Folders: `root/train/<class>/*.jpg|png` and `root/val/` (or `root/test/`),
class names from train/'s subfolders; unreadable images are skipped and
counted. TFDS: CIFAR-10 trains on the paper's 45k/5k split of its training set
(Sec. 4.2); other data sets on "train", validated on "validation" or "test".
"""

import dataclasses
import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from keras_resnet.errors import ArgumentError
from keras_resnet.errors import DatasetUnavailableError

AUTOTUNE = tf.data.AUTOTUNE
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
# Paper Sec. 4.2: hyper-parameters chosen on a 45k/5k split of the 50k images.
TFDS_SPLITS = {"cifar10": ("train[:45000]", "train[45000:]")}
DOWNLOAD_RETRIES = 2  # TFDS's are 10, with back-off.
@dataclasses.dataclass(frozen=True, kw_only=True)
class Split:
    """One split of a data set."""

    examples: tf.data.Dataset  # (uint8 image [H, W, 3], int32 label)
    count: int
    class_names: tuple[str, ...]  # label -> name
    skipped: int = 0  # unreadable files left out
    decoded_bytes: int | None = None  # of all images decoded; None: unknown


@dataclasses.dataclass(frozen=True)
class Source:
    """A training run's data before any augmentation."""

    train: Split
    val: Split


def index_names(num_classes: int) -> tuple[str, ...]:
    """The names of classes that have none: "0", "1", ..."""
    return tuple(str(i) for i in range(num_classes))


# ---------------------------------------------------------------- decoding


def decode_bytes(image_bytes: tf.Tensor) -> tf.Tensor:
    """Encoded JPEG/PNG (also GIF, BMP) to uint8 RGB [H, W, 3]."""
    return tf.io.decode_image(image_bytes, channels=3, expand_animations=False)


def decode(path: tf.Tensor | str) -> tf.Tensor:
    return decode_bytes(tf.io.read_file(path))


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


# ------------------------------------------------------------------ folders


def is_folder(dataset: str) -> bool:
    """Whether `dataset` names a folder (else a TFDS name or "synthetic")."""
    return os.sep in dataset or os.path.isdir(dataset) or dataset.startswith((".", "~"))


def normalize(dataset: str) -> str:
    """`dataset` as one spelling: "DIR/" and "DIR" are the same folder."""
    if not is_folder(dataset):
        return dataset
    path = os.path.normpath(dataset)
    return path if is_folder(path) else os.path.join(".", path)  # still a folder


def class_folders(directory: str) -> list[str]:
    """The sorted subfolder names of `directory`: one class each."""
    return sorted(d for d in os.listdir(directory) if os.path.isdir(os.path.join(directory, d)))


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def list_images(split_dir: str, class_names: Sequence[str]) -> tuple[list[str], list[int]]:
    """(paths, labels) of the images in `split_dir/<class>/`, labels by
    `class_names` (the training split's). A class folder that the training
    split lacks is refused: its images would have no label."""
    unknown = sorted(set(class_folders(split_dir)) - set(class_names))
    if unknown:
        raise ValueError(
            f"{split_dir!r} has class folder {unknown[0]!r}"
            + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else "")
            + f", which the training split lacks; its classes: {', '.join(class_names) or 'none'}"
        )
    paths, labels = [], []
    for label, name in enumerate(class_names):
        folder = os.path.join(split_dir, name)
        if os.path.isdir(folder):
            entries = sorted(e for e in os.listdir(folder) if _is_image(e))
            paths.extend(os.path.join(folder, e) for e in entries)
            labels.extend([label] * len(entries))
    return paths, labels


def _all_images(root: str) -> list[str]:
    """Every JPEG/PNG below `root` (class subfolders or not), sorted."""
    return sorted(
        os.path.join(folder, f) for folder, _, names in os.walk(root) for f in names if _is_image(f)
    )


def _readable(paths: list[str], where: str, limit: int | None) -> tuple[list[int], int, int]:
    """(indices of the files that decode, how many were skipped, their
    decoded bytes); with `limit`, the first `limit` that decode. Logs which
    were skipped."""
    probe = tf.data.Dataset.from_tensor_slices((paths, tf.range(len(paths))))
    probe = probe.map(
        lambda p, i: (i, tf.reduce_prod(tf.shape(decode(p), out_type="int64"))),
        num_parallel_calls=AUTOTUNE,
    ).ignore_errors()
    sizes = dict(probe.take(-1 if limit is None else limit).as_numpy_iterator())
    tried = len(paths) if limit is None or len(sizes) < limit else max(sizes) + 1
    skipped = [p for i, p in enumerate(paths[:tried]) if i not in sizes]
    if skipped:
        logging.warning(
            "Skipped %d unreadable image(s) of %d in %s, e.g. %s",
            len(skipped), tried, where, ", ".join(skipped[:5]),
        )
    return sorted(sizes), len(skipped), sum(sizes.values())


def read_folder(
    split_dir: str,
    names_dir: str | None = None,
    *,
    limit: int | None = None,
    seed: int | None = None,
) -> Split:
    """The readable images of one folder: the one image-folder reader.

    With `names_dir`: the images of `split_dir/<class>/`, labelled by the
    class folders of `names_dir` (training's train/, so labels match
    training); a class folder that `names_dir` lacks is refused. Without:
    every image at any depth below `split_dir`, label 0. `seed` shuffles the
    files (so a `limit` sees every class); `limit` keeps the first that decode.
    """
    if names_dir is None:
        class_names, paths = (), _all_images(split_dir)
        labels = [0] * len(paths)
        if not paths:
            raise ValueError(f"No JPEG/PNG images in {split_dir!r} or its subfolders")
    else:
        class_names = tuple(class_folders(names_dir))
        paths, labels = list_images(split_dir, class_names)
        if not paths:
            raise ValueError(
                f"No JPEG/PNG images in the class folders of {split_dir!r} (classes, "
                f"from {names_dir!r}: {', '.join(class_names) or 'none'})"
            )
    if seed is not None:
        order = np.random.RandomState(seed).permutation(len(paths))
        paths, labels = [paths[i] for i in order], [labels[i] for i in order]
    keep, skipped, decoded_bytes = _readable(paths, split_dir, limit)
    if not keep:
        raise ValueError(f"None of the images in {split_dir!r} can be decoded")
    examples = tf.data.Dataset.from_tensor_slices(
        ([paths[i] for i in keep], tf.constant([labels[i] for i in keep], "int32"))
    )
    # A file that turns unreadable after the scan is skipped, not a crash.
    examples = examples.map(lambda p, y: (decode(p), y), num_parallel_calls=AUTOTUNE).ignore_errors()
    return Split(examples=examples, count=len(keep), class_names=class_names,
                 skipped=skipped, decoded_bytes=decoded_bytes)


def _subfolder(root: str, names: Sequence[str]) -> str | None:
    if not os.path.isdir(root):
        raise ValueError(f"Dataset folder does not exist: {root!r}")
    return next((os.path.join(root, n) for n in names if os.path.isdir(os.path.join(root, n))), None)


def folder_source(root: str) -> Source:
    """Training's folder layout: `root/train/` and `root/val/` (or `test/`)."""
    train_dir, val_dir = _subfolder(root, ["train"]), _subfolder(root, ["val", "test"])
    if train_dir is None or val_dir is None:
        raise ValueError(
            f"Dataset folder {root!r} must hold train/ and val/ (or test/), one subfolder per class."
        )
    return Source(read_folder(train_dir, train_dir), read_folder(val_dir, train_dir))


def folder_test_split(root: str, split: str | None = None) -> Split:
    """Evaluation's split of a folder: `root/<split>/`, by default val/ or
    test/, with the class names of `root/train/` (else of the split's own)."""
    splits = [split] if split else ["val", "test"]
    split_dir = _subfolder(root, splits)
    if split_dir is None:
        raise ValueError(f"Dataset folder {root!r} has no {' or '.join(splits)} folder")
    return read_folder(split_dir, _subfolder(root, ["train"]) or split_dir)


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

    # TFDS 4.9 retries a failed download 10 times with back-off, about 3.5
    # minutes offline; a few retries fail in a second.
    retries, downloader.MAX_RETRIES = downloader.MAX_RETRIES, DOWNLOAD_RETRIES
    try:
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    except Exception as e:
        reason = " ".join(str(e).split())[:200]
        raise DatasetUnavailableError(
            f"Cannot download or prepare TFDS dataset {name!r} into "
            f"{builder.data_dir!r} ({type(e).__name__}: {reason})"
        ) from None
    finally:
        downloader.MAX_RETRIES = retries
    return builder


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
    return _open_split(builder, split)


def tfds_source(name: str, data_dir: str | None = None, manual_dir: str | None = None,
                seed: int = 0) -> Source:
    """Training and validation splits of a TFDS data set (see TFDS_SPLITS)."""
    builder = tfds_builder(name, data_dir, manual_dir)
    val_split = "validation" if "validation" in builder.info.splits else "test"
    train_split, val_split = TFDS_SPLITS.get(name, ("train", val_split))
    return Source(_open_split(builder, train_split, seed, shuffle=True), _open_split(builder, val_split))


# ---------------------------------------------------------------- any kind


def training_source(dataset: str, *, image_size: int, num_classes: int, synthetic_examples: int,
                    synthetic_val_examples: int, seed: int = 0, data_dir: str | None = None,
                    manual_dir: str | None = None) -> Source:
    """The training and validation splits of `dataset`: "synthetic" (of
    `num_classes` classes at `image_size`), a folder, or a TFDS name."""
    if dataset == "synthetic":
        return Source(synthetic(synthetic_examples, image_size, num_classes, seed),
                      synthetic(synthetic_val_examples, image_size, num_classes, seed + 1))
    if is_folder(dataset):
        return folder_source(os.path.expanduser(dataset))
    return tfds_source(dataset, data_dir, manual_dir, seed)


def eval_split(dataset: str, split: str | None = None, *, image_size: int, num_classes: int,
               synthetic_examples: int = 256, seed: int = 0, data_dir: str | None = None,
               manual_dir: str | None = None) -> Split:
    """The split of `dataset` that evaluation scores, in training's forms:
    "synthetic" (training's validation set), a folder (`folder_test_split`)
    or a TFDS name (`tfds_split`)."""
    if dataset == "synthetic":
        if split is not None:
            raise ArgumentError("split", split, "must be left out for the synthetic dataset")
        return synthetic(synthetic_examples, image_size, num_classes, seed + 1)
    if is_folder(dataset):
        return folder_test_split(os.path.expanduser(dataset), split)
    return tfds_split(dataset, split, data_dir, manual_dir)
