"""The image-folder reader: training's, evaluation's and export's folders.

Layout: `root/train/<class>/*.jpg|png` and `root/val/`, `root/test/` or
both, class names from train/'s subfolders (`folder_source`); evaluation
reads `root/val/` or `root/test/` (`folder_test_split`), export any folder
of images at any depth (`read_folder`). Without val/, a seeded share of
train/ validates, so no model is chosen on test/. Hidden files and folders
(".ipynb_checkpoints/") are not data; a symlink back to a folder that holds
it is refused, as is a class folder that train/ lacks, a train/ of fewer
than 2 classes and a class without a readable image. Unreadable images, and
images above `max_pixels` by their headers (keras_resnet.data.images; not
decoded), are skipped and counted. The splits are keras_resnet.data.sources'
`Split` and `Source`, which also picks a folder, TFDS or synthetic data.
"""

import dataclasses
import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from keras_resnet.data.images import MAX_PIXELS
from keras_resnet.data.images import declared_pixels
from keras_resnet.data.splits import Source
from keras_resnet.data.splits import Split
from keras_resnet.data.splits import VAL_FRACTION
from keras_resnet.data.splits import decode_bytes

AUTOTUNE = tf.data.AUTOTUNE
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def is_folder(dataset: str) -> bool:
    """Whether `dataset` names a folder (else a TFDS name or "synthetic")."""
    return os.sep in dataset or os.path.isdir(dataset) or dataset.startswith((".", "~"))


def normalize(dataset: str) -> str:
    """`dataset` as one spelling: "DIR/" and "DIR" are the same folder."""
    if not is_folder(dataset):
        return dataset
    path = os.path.normpath(dataset)
    return path if is_folder(path) else os.path.join(".", path)  # still a folder


def _hidden(name: str) -> bool:
    """Whether a file or folder is a tool's, not data: .ipynb_checkpoints/,
    .DS_Store, macOS's ._photo.jpg and other names starting with "."."""
    return name.startswith(".")


def class_folders(directory: str) -> list[str]:
    """The sorted subfolder names of `directory`, hidden ones left out: one class each."""
    return sorted(
        d for d in os.listdir(directory)
        if not _hidden(d) and os.path.isdir(os.path.join(directory, d))
    )


def _is_image(name: str) -> bool:
    return not _hidden(name) and name.lower().endswith(IMAGE_EXTENSIONS)


def _refuse_loop(folder: str, holders: Sequence[str]) -> str:
    """The real path of `folder`, met below the folders whose real paths are
    `holders`. A symlink back to one of them (or above) is refused: reading
    it would read their images again, or forever. Links elsewhere are read."""
    real = os.path.realpath(folder)
    if any(os.path.commonpath([real, holder]) == real for holder in holders):
        raise ValueError(
            f"Folder {folder!r} links to {real!r}, which holds it (a symlink loop); "
            "accepted: folders, or links to folders outside the ones that hold them"
        )
    return real


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
    paths, labels, holders = [], [], [os.path.realpath(split_dir)]
    for label, name in enumerate(class_names):
        folder = os.path.join(split_dir, name)
        if os.path.isdir(folder):
            _refuse_loop(folder, holders)
            entries = sorted(e for e in os.listdir(folder) if _is_image(e))
            paths.extend(os.path.join(folder, e) for e in entries)
            labels.extend([label] * len(entries))
    return paths, labels


def _all_images(root: str) -> list[str]:
    """Every JPEG/PNG below `root` (class subfolders or not, symlinked
    folders too), sorted; hidden files and folders left out."""
    holders, paths = {root: (os.path.realpath(root),)}, []
    for folder, subfolders, names in os.walk(root, followlinks=True):
        subfolders[:] = [d for d in subfolders if not _hidden(d)]
        for d in subfolders:
            sub = os.path.join(folder, d)
            holders[sub] = (*holders[folder], _refuse_loop(sub, holders[folder]))
        paths.extend(os.path.join(folder, n) for n in names if _is_image(n))
    return sorted(paths)


def _readable(paths: list[str], where: str, limit: int | None,
              max_pixels: int) -> tuple[dict[int, int], int]:
    """({index: decoded bytes} of the files that decode, how many were
    skipped); with `limit`, the first `limit` that decode. A file of more
    than `max_pixels` by its header is skipped without being decoded. Logs
    which were skipped."""

    def probe(path, index):
        image_bytes = tf.io.read_file(path)
        pixels = declared_pixels(image_bytes)
        size = tf.cond(pixels <= max_pixels,
                       lambda: tf.size(decode_bytes(image_bytes), out_type=tf.int64),
                       lambda: tf.constant(-1, tf.int64))
        return index, pixels, size

    found = tf.data.Dataset.from_tensor_slices((tf.constant(paths, tf.string), tf.range(len(paths))))
    found = found.map(probe, num_parallel_calls=AUTOTUNE).ignore_errors()
    sizes, too_large, tried = {}, {}, len(paths)
    for index, pixels, size in found.as_numpy_iterator():
        if size < 0:
            too_large[index] = pixels
        else:
            sizes[index] = size
        if len(sizes) == limit:
            tried = index + 1
            break
    unreadable = [p for i, p in enumerate(paths[:tried]) if i not in sizes and i not in too_large]
    if unreadable:
        logging.warning("Skipped %d unreadable image(s) of %d in %s, e.g. %s",
                        len(unreadable), tried, where, ", ".join(unreadable[:5]))
    if too_large:
        logging.warning(
            "Skipped %d image(s) of %d in %s above max_pixels=%d (width x height, by their "
            "headers; not decoded), e.g. %s", len(too_large), tried, where, max_pixels,
            ", ".join(f"{paths[i]} ({_pixels(n)})" for i, n in list(too_large.items())[:5]),
        )
    return sizes, len(unreadable) + len(too_large)


def _pixels(declared: int) -> str:
    """What `declared_pixels` said of a skipped image, for the log."""
    if declared == np.iinfo(np.int64).max:
        return "a truncated, malformed or many-block GIF"
    return f"{declared} pixels"


def _decoded(paths: list[str], labels: list[int], max_pixels: int) -> tf.data.Dataset:
    """(image, label) of each file. One that turned unreadable after the scan
    is skipped, not a crash; one that turned larger is skipped undecoded."""
    files = tf.data.Dataset.from_tensor_slices((tf.constant(paths, tf.string), tf.constant(labels, "int32")))
    return (
        files.map(lambda p, y: (tf.io.read_file(p), y), num_parallel_calls=AUTOTUNE)
        .filter(lambda image_bytes, y: declared_pixels(image_bytes) <= max_pixels)
        .map(lambda image_bytes, y: (decode_bytes(image_bytes), y), num_parallel_calls=AUTOTUNE)
        .ignore_errors()
    )


@dataclasses.dataclass(frozen=True)
class _Files:
    """The readable images of a folder, scanned but not kept decoded: a
    training folder's are split in two before they become `Split`s."""

    paths: list[str]
    labels: list[int]
    sizes: list[int]  # decoded bytes of each
    class_names: tuple[str, ...]
    skipped: int  # files left out by the scan

    def subset(self, indices: Sequence[int], skipped: int = 0) -> "_Files":
        return _Files([self.paths[i] for i in indices], [self.labels[i] for i in indices],
                      [self.sizes[i] for i in indices], self.class_names, skipped)

    def split(self, max_pixels: int) -> Split:
        return Split(examples=_decoded(self.paths, self.labels, max_pixels), count=len(self.paths),
                     class_names=self.class_names, skipped=self.skipped,
                     decoded_bytes=sum(self.sizes))


def _scan(split_dir: str, names_dir: str | None, limit: int | None, seed: int | None,
          max_pixels: int) -> _Files:
    """`read_folder`'s images, decoded once to keep the readable ones."""
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
    sizes, skipped = _readable(paths, split_dir, limit, max_pixels)
    if not sizes:
        raise ValueError(f"None of the images in {split_dir!r} can be decoded "
                         f"(JPEG/PNG of at most max_pixels={max_pixels} pixels)")
    every = _Files(paths, labels, [sizes.get(i, 0) for i in range(len(paths))], class_names, skipped)
    return every.subset(sorted(sizes), skipped)


def read_folder(
    split_dir: str,
    names_dir: str | None = None,
    *,
    limit: int | None = None,
    seed: int | None = None,
    max_pixels: int = MAX_PIXELS,
) -> Split:
    """The readable images of one folder: the one image-folder reader.

    With `names_dir`: the images of `split_dir/<class>/`, labelled by the
    class folders of `names_dir` (training's train/, so labels match
    training); a class folder that `names_dir` lacks is refused. Without:
    every image at any depth below `split_dir`, label 0. `seed` shuffles the
    files (so a `limit` sees every class); `limit` keeps the first that decode.
    Images above `max_pixels` (width x height, by the header) are skipped.
    """
    return _scan(split_dir, names_dir, limit, seed, max_pixels).split(max_pixels)


def _subfolder(root: str, names: Sequence[str]) -> str | None:
    if not os.path.isdir(root):
        raise ValueError(f"Dataset folder does not exist: {root!r}")
    return next((os.path.join(root, n) for n in names if os.path.isdir(os.path.join(root, n))), None)


def _training_files(train_dir: str, max_pixels: int) -> _Files:
    """train/'s readable images; refused unless it has 2 classes or more,
    each with a readable image."""
    names = class_folders(train_dir)
    if len(names) < 2:
        raise ValueError(
            f"{train_dir!r} has {len(names)} class folder ({', '.join(names) or 'none'}); "
            "training needs at least 2 classes, one subfolder of JPEG/PNG images each"
        )
    files = _scan(train_dir, train_dir, None, None, max_pixels)
    found = set(files.labels)
    empty = [name for label, name in enumerate(names) if label not in found]
    if empty:
        raise ValueError(
            f"Class folder {os.path.join(train_dir, empty[0])!r}"
            + (f" (and {len(empty) - 1} more)" if len(empty) > 1 else "")
            + f" has no readable JPEG/PNG image of at most max_pixels={max_pixels} pixels; "
            "every class folder of train/ needs one"
        )
    return files


def _hold_out(files: _Files, fraction: float, seed: int, where: str) -> tuple[_Files, _Files]:
    """(the rest, the held out) of `files`: `fraction` of each class (at
    least one of each class of 2 or more images; a class's last image stays),
    drawn with `seed`, so a validation split that picks the best model sees
    every class and is the same in every run of that seed."""
    labels = np.asarray(files.labels)
    by_class = np.argsort(labels, kind="stable")
    counts = np.bincount(labels, minlength=len(files.class_names))
    rng = np.random.RandomState(seed)
    held = set()
    for members in np.split(by_class, np.cumsum(counts)[:-1]):
        take = min(len(members) - 1, max(1, int(fraction * len(members) + 0.5)))
        held.update(int(i) for i in rng.permutation(members)[:take])
    if not held:
        raise ValueError(
            f"{where!r} has one image per class, none to hold out for validation; "
            "accepted: classes of 2 or more images, or a val/ folder"
        )
    rest = [i for i in range(len(labels)) if i not in held]
    return files.subset(rest, files.skipped), files.subset(sorted(held))


def _test_split(test_dir: str | None, train_dir: str, max_pixels: int) -> Split | None:
    """test/, labelled by train/'s classes; None without it or when it holds
    no class folders (unlabelled images, e.g. a competition's: nothing to score)."""
    if test_dir is None:
        return None
    if not class_folders(test_dir):
        logging.info("No test split: %s holds no class folders.", test_dir)
        return None
    return read_folder(test_dir, train_dir, max_pixels=max_pixels)


def folder_source(root: str, *, seed: int = 0, val_fraction: float = VAL_FRACTION,
                  max_pixels: int = MAX_PIXELS) -> Source:
    """Training's folder layout: `root/train/` with `val/`, `test/` or both.

    val/ validates (picks the best model). Without it, `val_fraction` of
    train/ is held out for that, drawn with `seed` (`_hold_out`), so the
    model is never chosen on test/, which is scored apart.
    """
    train_dir = _subfolder(root, ["train"])
    val_dir, test_dir = _subfolder(root, ["val"]), _subfolder(root, ["test"])
    if train_dir is None or val_dir is test_dir is None:
        raise ValueError(
            f"Dataset folder {root!r} must hold train/ and val/ (or test/), one subfolder per class."
        )
    files = _training_files(train_dir, max_pixels)
    test = _test_split(test_dir, train_dir, max_pixels)
    if val_dir is not None:
        train, val = files.split(max_pixels), read_folder(val_dir, train_dir, max_pixels=max_pixels)
        splits = {"train": train_dir, "val": val_dir}
    else:
        rest, held = _hold_out(files, val_fraction, seed, train_dir)
        train, val = rest.split(max_pixels), held.split(max_pixels)
        share = f"{100 * val_fraction:g}%"
        splits = {"train": f"{train_dir} minus {share} held out (seed {seed})",
                  "val": f"{share} of {train_dir} (seed {seed}, {val.count} images)"}
    if test is not None:
        splits["test"] = test_dir
    return Source(train, val, test, splits)


def folder_test_split(root: str, split: str | None = None, max_pixels: int = MAX_PIXELS) -> Split:
    """Evaluation's split of a folder: `root/<split>/`, by default val/ or
    test/, with the class names of `root/train/` (else of the split's own)."""
    splits = [split] if split else ["val", "test"]
    split_dir = _subfolder(root, splits)
    if split_dir is None:
        raise ValueError(f"Dataset folder {root!r} has no {' or '.join(splits)} folder")
    split = read_folder(split_dir, _subfolder(root, ["train"]) or split_dir, max_pixels=max_pixels)
    return dataclasses.replace(split, name=os.path.basename(split_dir))
