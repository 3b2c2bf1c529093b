"""A training run's tf.data pipelines: a source, augmented, batched.

Pipelines yield float32 RGB images in [0, 255] and one-hot labels: the mean
subtraction lives inside the model (keras_resnet.preprocessing), so the saved
model takes the same raw images. Sources: keras_resnet.sources; augmentations
and test views: keras_resnet.augment.
"""

import dataclasses

import numpy as np
import tensorflow as tf
from absl import logging

from keras_resnet import augment as augment_lib
from keras_resnet import sources
from keras_resnet.errors import ArgumentError
from keras_resnet.preprocessing import compute_pixel_mean

AUTOTUNE = tf.data.AUTOTUNE
CACHE_LIMIT_BYTES = 4 << 30  # decoded training sets up to this size are cached.
SHUFFLE_BUFFER_BYTES = 1 << 30


@dataclasses.dataclass
class Data:
    """A training run's data: batched pipelines and what the model needs."""

    train: tf.data.Dataset  # repeated, augmented, (images, one-hot labels)
    val: tf.data.Dataset  # one pass, (images, one-hot labels)
    num_train: int
    num_val: int
    num_classes: int
    image_size: int
    class_names: list
    pixel_mean: np.ndarray | None = None  # (H, W, 3) of the training images
    skipped: int = 0  # unreadable files left out


def load(
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
) -> Data:
    """Builds the training and validation pipelines of `dataset`.

    Args:
        dataset: "synthetic", a folder (train/ and val/ or test/), or a TFDS name.
        image_size: side of the square images the model sees.
        batch_size: global batch size.
        augment: a key of `augment.AUGMENTATIONS`.
        num_classes: of "synthetic" (other sources have their own).
        pixel_mean: compute the training images' per-pixel mean (at
            image_size, un-augmented) for mean subtraction.
        options: the recipe's `AugmentOptions`. With a pixel mean, padding
            uses its per-channel mean unless `pad_value` is given.
        replicas: replicas the batches are split across.
    """
    augmentation = augment_lib.get_augmentation(augment)
    source = sources.training_source(
        dataset, image_size=image_size, num_classes=num_classes,
        synthetic_examples=synthetic_examples,
        synthetic_val_examples=max(batch_size, synthetic_examples // 8),
        seed=seed, data_dir=data_dir, manual_dir=manual_dir,
    )
    train = source.train
    if train.count < batch_size:
        raise ArgumentError(
            "batch_size", batch_size,
            f"must be at most the number of training images, {train.count}",
        )
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
    val, num_val = _val_examples(source.val, batch_size, replicas)
    val = _batches(val.map(lambda x, y: (view(x, image_size), y), num_parallel_calls=AUTOTUNE),
                   batch_size, num_classes)
    return Data(train_batches, val, train.count, num_val, num_classes, image_size,
                list(train.class_names), mean, train.skipped + source.val.skipped)


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
    # One seed pair per example, drawn after repeat() so every pass differs.
    seeds = tf.data.Dataset.random(seed=seed).batch(2)
    shuffled = examples.shuffle(buffer, seed=seed).repeat()
    augmented = tf.data.Dataset.zip((shuffled, seeds)).map(
        lambda xy, s: (train_fn(xy[0], s), xy[1]), num_parallel_calls=AUTOTUNE
    )
    return _batches(augmented, batch_size, num_classes, drop_remainder=True)


def _val_examples(val: sources.Split, batch_size: int, replicas: int) -> tuple[tf.data.Dataset, int]:
    """The validation examples and their count, so every replica gets one
    image of the last batch."""
    count, short = val.count, val.count % batch_size
    if 0 < short < replicas:
        # A last batch with fewer images than replicas leaves a replica an
        # empty batch, which MirroredStrategy cannot run on TF 2.21.
        logging.warning("Leaving out the last %d validation image(s) of %d so "
                        "every replica gets one.", short, count)
        return val.examples.take(count - short), count - short
    return val.examples, count
