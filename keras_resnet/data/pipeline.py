"""A training run's tf.data pipelines: a source, augmented, batched.

Pipelines yield float32 RGB images in [0, 255] and one-hot labels: the mean
subtraction lives inside the model (keras_resnet.models.preprocessing), so the saved
model takes the same raw images. Sources: keras_resnet.data.sources; augmentations
and test views: keras_resnet.data.augment.
"""

import dataclasses

import numpy as np
import tensorflow as tf
from absl import logging

from keras_resnet.data import augment as augment_lib
from keras_resnet.data import sources
from keras_resnet.data.images import MAX_PIXELS
from keras_resnet.errors import ArgumentError
from keras_resnet.models.preprocessing import compute_pixel_mean

AUTOTUNE = tf.data.AUTOTUNE
CACHE_LIMIT_BYTES = 4 << 30  # decoded training sets up to this size are cached.
SHUFFLE_BUFFER_BYTES = 1 << 30


@dataclasses.dataclass(kw_only=True)
class Data:
    """A training run's data: batched pipelines and what the model needs."""

    train: tf.data.Dataset  # repeated, augmented, (images, one-hot labels)
    val: tf.data.Dataset  # one pass, (images, one-hot labels); picks the best model
    test: tf.data.Dataset | None = None  # as val; scored after training, never to choose
    num_train: int
    num_val: int
    num_test: int = 0
    class_names: list
    pixel_mean: np.ndarray | None = None  # (H, W, 3) of the training images
    skipped: int = 0  # files left out: unreadable, or above max_pixels
    splits: dict[str, str] = dataclasses.field(default_factory=dict)  # where each split came from

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def make_datasets(
    dataset: str,
    *,
    image_size: int,
    batch_size: int,
    augment: str,
    seed: int = 0,
    data_dir: str | None = None,
    manual_dir: str | None = None,
    num_classes: int = 10,
    synthetic_examples: int = 1024,
    pixel_mean: bool = True,
    options: augment_lib.AugmentOptions | None = None,
    replicas: int = 1,
    val_fraction: float = sources.VAL_FRACTION,
    max_pixels: int = MAX_PIXELS,
) -> Data:
    """Builds the training, validation and test pipelines of `dataset`.

    Args:
        dataset: "synthetic", a folder (train/ with val/, test/ or both), or a TFDS name.
        image_size: side of the square images the model sees.
        batch_size: global batch size.
        augment: a key of `augment.AUGMENTATIONS`.
        num_classes: of "synthetic" (other sources have their own).
        pixel_mean: compute the training images' per-pixel mean (at
            image_size, un-augmented) for mean subtraction.
        options: the recipe's `AugmentOptions`. With a pixel mean, padding
            uses its per-channel mean unless `pad_value` is given.
        replicas: replicas the batches are split across.
        val_fraction: of a folder's train/ held out to validate, drawn with
            `seed`, when it has test/ but no val/ (folders.folder_source).
        max_pixels: images of more pixels (width x height, by their headers)
            are skipped, undecoded.
    """
    augmentation = augment_lib.get_augmentation(augment)
    _check_arguments(val_fraction, max_pixels)
    if dataset == "synthetic":  # before allocating it
        _check_batch_size(batch_size, synthetic_examples)
    source = sources.training_source(
        dataset, image_size=image_size, num_classes=num_classes,
        synthetic_examples=synthetic_examples,
        synthetic_val_examples=max(batch_size, synthetic_examples // 8),
        seed=seed, data_dir=data_dir, manual_dir=manual_dir,
        val_fraction=val_fraction, max_pixels=max_pixels,
    )
    train = source.train
    _check_batch_size(batch_size, train.count)
    for name, origin in source.splits.items():
        logging.info("%s split: %s", name, origin)
    train_bytes = train.decoded_bytes or train.count * image_size * image_size * 3
    examples = train.examples.cache() if train_bytes <= CACHE_LIMIT_BYTES else train.examples
    view = augment_lib.one_view(augmentation.test_view)
    mean = _pixel_mean(examples, view, image_size) if pixel_mean else None
    options = options or augment_lib.AugmentOptions()
    if mean is not None and options.pad_value is None:
        options = dataclasses.replace(options, pad_value=mean.mean(axis=(0, 1)))
    num_classes = len(train.class_names)
    buffer = min(train.count, 50000, max(1000, SHUFFLE_BUFFER_BYTES * train.count // train_bytes))
    train_batches = _train_batches(
        examples, lambda x, s: augmentation.train(x, s, image_size, options),
        buffer, batch_size, num_classes, seed,
    )

    def in_test_view(split: sources.Split, name: str) -> tuple[tf.data.Dataset, int]:
        examples, count = _eval_examples(split, batch_size, replicas, name)
        examples = examples.map(lambda x, y: (view(x, image_size), y), num_parallel_calls=AUTOTUNE)
        return _batches(examples, batch_size, num_classes), count

    val, num_val = in_test_view(source.val, "validation")
    test, num_test = in_test_view(source.test, "test") if source.test else (None, 0)
    read = [train, source.val] + ([source.test] if source.test else [])
    return Data(train=train_batches, val=val, test=test, num_train=train.count, num_val=num_val,
                num_test=num_test, class_names=list(train.class_names), pixel_mean=mean,
                skipped=sum(split.skipped for split in read), splits=source.splits)


def _check_arguments(val_fraction: float, max_pixels: int) -> None:
    """Refuses bad arguments before any file is read."""
    if not 0 < val_fraction < 1:
        raise ArgumentError("val_fraction", val_fraction, "must be > 0 and < 1")
    if max_pixels < 1:
        raise ArgumentError("max_pixels", max_pixels, "must be >= 1")


def _check_batch_size(batch_size: int, num_train: int) -> None:
    """Training drops a last partial batch: less than a batch of images is none."""
    if num_train < batch_size:
        raise ArgumentError(
            "batch_size", batch_size, f"must be at most the number of training images, {num_train}"
        )


def _pixel_mean(examples: tf.data.Dataset, view, image_size: int) -> np.ndarray:
    """The per-pixel mean of the training images, un-augmented, at image_size."""
    return compute_pixel_mean(
        examples.map(lambda x, y: view(x, image_size), num_parallel_calls=AUTOTUNE)
        .batch(256)
        .prefetch(AUTOTUNE)
    )


def _batches(examples: tf.data.Dataset, batch_size: int, num_classes: int,
             drop_remainder: bool = False) -> tf.data.Dataset:
    return (
        examples.batch(batch_size, drop_remainder=drop_remainder)
        .map(lambda x, y: (x, tf.one_hot(y, num_classes)), num_parallel_calls=AUTOTUNE)
        .prefetch(AUTOTUNE)
    )


def _train_batches(examples, train_fn, buffer, batch_size, num_classes, seed) -> tf.data.Dataset:
    """Shuffled, repeated, augmented batches; `train_fn(image, seed)`.

    A whole small data set (CIFAR) is shuffled at once; for large images the
    buffer holds about SHUFFLE_BUFFER_BYTES of decoded images.
    """
    # Every iterator shuffles from the seed's first order on. A data set's
    # own reshuffling shuffle draws each new iterator's order from one
    # generator shared by all of them, so a run's images would hang on how
    # many iterators tf.data had made before its own, which varies with load.
    # Built in flat_map's function, the shuffle (and its generator) is new
    # with every iterator.
    shuffled = tf.data.Dataset.from_tensors(0).flat_map(
        lambda _: examples.shuffle(buffer, seed=seed).repeat())
    # One seed pair per example, drawn across passes so every pass differs.
    seeds = tf.data.Dataset.random(seed=seed).batch(2)
    augmented = tf.data.Dataset.zip((shuffled, seeds)).map(
        lambda xy, s: (train_fn(xy[0], s), xy[1]), num_parallel_calls=AUTOTUNE
    )
    return _batches(augmented, batch_size, num_classes, drop_remainder=True)


def _eval_examples(split: sources.Split, batch_size: int, replicas: int,
                   name: str) -> tuple[tf.data.Dataset, int]:
    """The examples of a validation or test `split` and their count, so
    every replica gets one image of the last batch."""
    count, short = split.count, split.count % batch_size
    if 0 < short < replicas:
        # A last batch with fewer images than replicas leaves a replica an
        # empty batch, which MirroredStrategy cannot run on TF 2.21.
        logging.warning("Leaving out the last %d %s image(s) of %d so "
                        "every replica gets one.", short, name, count)
        return split.examples.take(count - short), count - short
    return split.examples, count
