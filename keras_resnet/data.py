"""tf.data input pipelines (TFDS, image folder, synthetic) and augmentations.

Pipelines yield float32 RGB images in [0, 255] and one-hot labels: the mean
subtraction lives inside the model (keras_resnet.preprocessing), so the saved
model takes the same raw images.

Augmentations (paper): "cifar", Sec. 4.2: 4-pixel padding on each side, a
random 32x32 crop, a random horizontal flip; at test the image itself.
"imagenet", Sec. 3.4: shorter side resized to a random length in [256, 480], a
random 224x224 crop, a random flip, AlexNet's PCA colour noise; at test the
shorter side resized to 256 and the centre 224x224 crop. "inception" (modern
recipes): a random-area crop (8%-100%, aspect 3/4-4/3) resized to 224, a flip.
Sizes scale with `image_size` (e.g. padding is image_size / 8, the scale range
image_size * [256, 480] / 224). Random ops are stateless, seeded per example,
so a pipeline is deterministic however many threads run it.
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf
from absl import logging

from keras_resnet.preprocessing import compute_pixel_mean

AUTOTUNE = tf.data.AUTOTUNE
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
# AlexNet's PCA of ImageNet RGB pixels in [0, 1] (Krizhevsky et al. 2012; the
# values fb.resnet.torch uses).
PCA_EIGVAL = np.array([0.2175, 0.0188, 0.0045], "float32")
PCA_EIGVEC = np.array(
    [[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]],
    "float32",
)
# Paper Sec. 4.2: hyper-parameters chosen on a 45k/5k split of the 50k images.
TFDS_SPLITS = {"cifar10": ("train[:45000]", "train[45000:]")}
CACHE_LIMIT_BYTES = 4 << 30  # decoded training sets up to this size are cached.
SHUFFLE_BUFFER_BYTES = 1 << 30
DOWNLOAD_RETRIES = 2  # TFDS's are 10, with back-off.


class DatasetUnavailableError(ValueError):
    """The data set cannot be read or downloaded here."""


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
    pixel_mean: np.ndarray = None  # (H, W, 3) of the training images
    skipped: int = 0  # unreadable files left out


# ---------------------------------------------------------------- augmentation


def resize_shorter(image, length):
    shape = tf.cast(tf.shape(image)[:2], "float32")
    scale = tf.cast(length, "float32") / tf.reduce_min(shape)
    size = tf.cast(tf.round(shape * scale), "int32")
    return tf.image.resize(image, size, method="bilinear", antialias=True)


def _center_crop(image, size):
    shape = tf.shape(image)
    top, left = (shape[0] - size) // 2, (shape[1] - size) // 2
    return image[top : top + size, left : left + size]


def _random_flip(image, seed):
    return tf.image.stateless_random_flip_left_right(image, seed)


def pad_crop_flip(image, seed, image_size, pad_value=0.0):
    """Paper Sec. 4.2: pad image_size/8 pixels, random crop, random flip."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    image = resize_to(image, image_size)
    pad = image_size // 8
    # Padding the raw image with the mean is padding the paper's
    # mean-subtracted image with zeros.
    image = image - pad_value
    image = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
    image = tf.image.stateless_random_crop(image, [image_size, image_size, 3], seeds[0])
    return _random_flip(image, seeds[1]) + pad_value


def resize_to(image, image_size):
    """The image as float32 at image_size x image_size (resized if needed)."""
    image = tf.cast(image, "float32")
    shape = tf.shape(image)
    return tf.cond(
        tf.logical_and(shape[0] == image_size, shape[1] == image_size),
        lambda: image,
        lambda: tf.image.resize(image, [image_size, image_size], antialias=True),
    )


def pca_lighting(image, seed, alpha_std):
    """AlexNet colour augmentation: add PCA components with N(0, std) weights."""
    alpha = tf.random.stateless_normal([3], seed, stddev=alpha_std)
    rgb = tf.linalg.matvec(PCA_EIGVEC, alpha * PCA_EIGVAL) * 255.0
    return image + rgb


def scale_crop_flip(image, seed, image_size, pca_std=0.0):
    """Paper Sec. 3.4: shorter side in [256, 480], random crop, flip, PCA."""
    seeds = tf.random.experimental.stateless_split(seed, 4)
    low, high = round(image_size * 256 / 224), round(image_size * 480 / 224)
    length = tf.random.stateless_uniform([], seeds[0], low, high + 1, "int32")
    image = resize_shorter(tf.cast(image, "float32"), length)
    image = tf.image.stateless_random_crop(image, [image_size, image_size, 3], seeds[1])
    image = _random_flip(image, seeds[2])
    if pca_std:
        image = pca_lighting(image, seeds[3], pca_std)
    return tf.clip_by_value(image, 0.0, 255.0)


def inception_crop_flip(image, seed, image_size):
    """Random area (8%-100%) and aspect (3/4-4/3) crop, resized; flip."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        tf.zeros([1, 0, 4]),
        seed=seeds[0],
        min_object_covered=0.0,
        aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=(0.08, 1.0),
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    image = tf.slice(image, begin, size)
    image = tf.image.resize(tf.cast(image, "float32"), [image_size, image_size], antialias=True)
    return tf.clip_by_value(_random_flip(image, seeds[1]), 0.0, 255.0)


def resize_center_crop(image, image_size):
    """Paper's test view: shorter side to 256/224 of the size, centre crop."""
    image = resize_shorter(tf.cast(image, "float32"), round(image_size * 256 / 224))
    return tf.clip_by_value(_center_crop(image, image_size), 0.0, 255.0)


# name -> (train transform(image, seed, size, recipe), eval transform(image, size)).
AUGMENTATIONS = {
    "cifar": (
        lambda x, s, size, opts: pad_crop_flip(x, s, size, opts.get("pad_value", 0.0)),
        resize_to,
    ),
    "imagenet": (
        lambda x, s, size, opts: scale_crop_flip(x, s, size, opts.get("pca_std", 0.0)),
        resize_center_crop,
    ),
    "inception": (
        lambda x, s, size, opts: inception_crop_flip(x, s, size),
        resize_center_crop,
    ),
}


def check_augment(name):
    if name not in AUGMENTATIONS:
        raise ValueError(
            f"Unknown augmentation: {name!r}. Available: {', '.join(AUGMENTATIONS)}"
        )
    return AUGMENTATIONS[name]


# --------------------------------------------------------------------- sources


def synthetic(num_examples, image_size, num_classes, seed):
    """Learnable random images: a colour per class plus uniform noise.

    The class colours are the same for every `seed`, so a training set and a
    validation set drawn with two seeds pose the same task.
    """
    colours = np.random.RandomState(1234).uniform(20, 235, size=(num_classes, 3))
    rng = np.random.RandomState(seed)
    labels = rng.randint(0, num_classes, size=num_examples)
    noise = rng.uniform(-25, 25, size=(num_examples, image_size, image_size, 3))
    images = np.clip(colours[labels][:, None, None, :] + noise, 0, 255)
    return tf.data.Dataset.from_tensor_slices(
        (images.astype("uint8"), labels.astype("int32"))
    )


def list_images(split_dir, class_names):
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
        if not os.path.isdir(folder):
            continue
        for entry in sorted(os.listdir(folder)):
            if entry.lower().endswith(IMAGE_EXTENSIONS):
                paths.append(os.path.join(folder, entry))
                labels.append(label)
    return paths, labels


def decode_bytes(image_bytes):
    """Encoded JPEG/PNG (also GIF, BMP) to uint8 RGB [H, W, 3]."""
    return tf.io.decode_image(image_bytes, channels=3, expand_animations=False)


def decode(path):
    return decode_bytes(tf.io.read_file(path))


def class_folders(directory):
    """The sorted subfolder names of `directory`: one class each."""
    return sorted(
        d for d in os.listdir(directory) if os.path.isdir(os.path.join(directory, d))
    )


def readable(paths, labels, split_dir):
    """Drops files that cannot be decoded; logs how many and which."""
    if not paths:
        return [], [], 0, 0
    probe = tf.data.Dataset.from_tensor_slices((paths, tf.range(len(paths))))
    probe = probe.map(
        lambda p, i: (i, tf.reduce_prod(tf.shape(decode(p), out_type="int64"))),
        num_parallel_calls=AUTOTUNE,
    ).ignore_errors()
    sizes = dict(probe.as_numpy_iterator())
    skipped = [p for i, p in enumerate(paths) if i not in sizes]
    if skipped:
        logging.warning(
            "Skipped %d unreadable image(s) of %d in %s, e.g. %s",
            len(skipped), len(paths), split_dir, ", ".join(skipped[:5]),
        )
    keep = sorted(sizes)
    return [paths[i] for i in keep], [labels[i] for i in keep], len(skipped), sum(sizes.values())


def folder(root):
    """`root/train/<class>/*.jpg|png` and `root/val/` (or `root/test/`).

    Returns (train examples, val examples, class names, counts, skipped,
    decoded training bytes); examples are (uint8 image, int label).
    """
    if not os.path.isdir(root):
        raise ValueError(f"Dataset folder does not exist: {root!r}")
    train_dir = os.path.join(root, "train")
    val_dir = next(
        (os.path.join(root, s) for s in ("val", "test") if os.path.isdir(os.path.join(root, s))),
        None,
    )
    if not os.path.isdir(train_dir) or val_dir is None:
        raise ValueError(
            f"Dataset folder {root!r} must hold train/ and val/ (or test/), "
            "one subfolder per class."
        )
    class_names = class_folders(train_dir)
    splits, skipped, train_bytes = [], 0, 0
    for split_dir in (train_dir, val_dir):
        paths, labels = list_images(split_dir, class_names)
        if not paths:
            raise ValueError(
                f"No JPEG/PNG images in class subfolders of {split_dir!r} "
                f"(classes found in train/: {class_names or 'none'})"
            )
        paths, labels, bad, nbytes = readable(paths, labels, split_dir)
        if not paths:
            raise ValueError(f"None of the images in {split_dir!r} can be decoded")
        skipped += bad
        train_bytes = train_bytes or nbytes
        ds = tf.data.Dataset.from_tensor_slices((paths, tf.constant(labels, "int32")))
        ds = ds.map(lambda p, y: (decode(p), y), num_parallel_calls=AUTOTUNE)
        # A file that turns unreadable after the scan is skipped, not a crash.
        splits.append((ds.ignore_errors(), len(paths)))
    (train, num_train), (val, num_val) = splits
    return train, val, class_names, num_train, num_val, skipped, train_bytes


def is_folder(dataset):
    """Whether `dataset` names a folder (else a TFDS name or "synthetic")."""
    return os.sep in dataset or os.path.isdir(dataset) or dataset.startswith((".", "~"))


def normalize(dataset):
    """`dataset` as one spelling: "DIR/" and "DIR" are the same folder."""
    if not is_folder(dataset):
        return dataset
    path = os.path.normpath(dataset)
    return path if is_folder(path) else os.path.join(".", path)  # still a folder


def tfds_builder(name, data_dir=None, manual_dir=None):
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
        config = tfds.download.DownloadConfig(manual_dir=manual_dir)
        builder.download_and_prepare(download_config=config)
    except Exception as e:
        reason = " ".join(str(e).split())[:200]
        raise DatasetUnavailableError(
            f"Cannot download or prepare TFDS dataset {name!r} into "
            f"{builder.data_dir!r} ({type(e).__name__}: {reason}). Point "
            "--data_dir at a TFDS data directory that holds it (--manual_dir for "
            "manually downloaded archives), or pass --dataset=/path/to/folder "
            "with train/ and val/ subfolders of class folders."
        ) from None
    finally:
        downloader.MAX_RETRIES = retries
    return builder


def _open_split(builder, split, seed=0, shuffle=False):
    """(examples of (uint8 image, label), count) of one split."""
    import tensorflow_datasets as tfds

    examples = builder.as_dataset(
        split=split, as_supervised=True, shuffle_files=shuffle,
        read_config=tfds.ReadConfig(shuffle_seed=seed),
    )
    try:
        count = builder.info.splits[split].num_examples
    except (KeyError, ValueError):  # e.g. under tfds.testing.mock_data.
        count = int(examples.reduce(0, lambda n, _: n + 1))
    return examples, count


def _class_names(builder):
    label = builder.info.features["label"]
    return list(label.names) if label.names else [str(i) for i in range(label.num_classes)]


def tfds_split(name, split=None, data_dir=None, manual_dir=None):
    """(examples of (uint8 image, label), count, class names) of one split;
    by default "test", else "validation" (for evaluation)."""
    builder = tfds_builder(name, data_dir, manual_dir)
    if split is None:
        split = "test" if "test" in builder.info.splits else "validation"
    examples, count = _open_split(builder, split)
    return examples, count, _class_names(builder)


def tfds_source(name, data_dir=None, manual_dir=None, seed=0):
    """Training and validation splits of a TFDS data set (see TFDS_SPLITS).

    Returns (train examples, val examples, class names, num_train, num_val).
    """
    builder = tfds_builder(name, data_dir, manual_dir)
    val_split = "validation" if "validation" in builder.info.splits else "test"
    train_split, val_split = TFDS_SPLITS.get(name, ("train", val_split))
    train, num_train = _open_split(builder, train_split, seed, shuffle=True)
    val, num_val = _open_split(builder, val_split)
    return train, val, _class_names(builder), num_train, num_val


# ------------------------------------------------------------------- pipelines


def load(
    dataset,
    *,
    image_size,
    batch_size,
    augment,
    seed=0,
    data_dir=None,
    manual_dir=None,
    num_classes=10,
    synthetic_examples=1024,
    pixel_mean=True,
    augment_options=None,
    replicas=1,
):
    """Builds the training and validation pipelines of `dataset`.

    Args:
        dataset: "synthetic", a folder (train/ and val/ or test/), or a TFDS name.
        image_size: side of the square images the model sees.
        batch_size: global batch size.
        augment: a key of `AUGMENTATIONS`.
        pixel_mean: compute the training images' per-pixel mean (at
            image_size, un-augmented) for mean subtraction.
        augment_options: e.g. {"pca_std": 0.1}. With a pixel mean, padding
            uses its per-channel mean unless "pad_value" is given.
        replicas: replicas the batches are split across.
    """
    train_fn, eval_fn = check_augment(augment)
    skipped, train_bytes = 0, None
    if dataset == "synthetic":
        num_train = synthetic_examples
        num_val = max(batch_size, synthetic_examples // 8)
        train = synthetic(num_train, image_size, num_classes, seed)
        val = synthetic(num_val, image_size, num_classes, seed + 1)
        names = [str(i) for i in range(num_classes)]
    elif is_folder(dataset):
        train, val, names, num_train, num_val, skipped, train_bytes = folder(
            os.path.expanduser(dataset)
        )
    else:
        train, val, names, num_train, num_val = tfds_source(
            dataset, data_dir, manual_dir, seed
        )
    if num_train < batch_size:
        raise ValueError(
            f"The training set has {num_train} images, fewer than one batch "
            f"(batch_size={batch_size})"
        )
    if train_bytes is None:
        train_bytes = num_train * image_size * image_size * 3
    if train_bytes <= CACHE_LIMIT_BYTES:
        train = train.cache()
    num_classes = len(names)
    mean = None
    if pixel_mean:
        mean = compute_pixel_mean(
            train.map(lambda x, y: eval_fn(x, image_size), num_parallel_calls=AUTOTUNE)
            .batch(256)
            .prefetch(AUTOTUNE)
        )
    options = dict(augment_options or {})
    if mean is not None:
        options.setdefault("pad_value", mean.mean(axis=(0, 1)))

    def one_hot(images, labels):
        return images, tf.one_hot(labels, num_classes)

    # One seed pair per example, drawn after repeat() so every pass differs.
    seeds = tf.data.Dataset.random(seed=seed).batch(2)
    # A whole small data set (CIFAR) is shuffled at once; for large images the
    # buffer holds about SHUFFLE_BUFFER_BYTES of decoded images.
    buffer = min(num_train, 50000, max(1000, SHUFFLE_BUFFER_BYTES * num_train // train_bytes))
    shuffled = train.shuffle(buffer, seed=seed).repeat()
    train = (
        tf.data.Dataset.zip((shuffled, seeds))
        .map(
            lambda xy, s: (train_fn(xy[0], s, image_size, options), xy[1]),
            num_parallel_calls=AUTOTUNE,
        )
        .batch(batch_size, drop_remainder=True)
        .map(one_hot, num_parallel_calls=AUTOTUNE)
        .prefetch(AUTOTUNE)
    )
    short = num_val % batch_size
    if 0 < short < replicas:
        # A last batch with fewer images than replicas leaves a replica an
        # empty batch, which MirroredStrategy cannot run on TF 2.21.
        logging.warning("Leaving out the last %d validation image(s) of %d so "
                        "every replica gets one.", short, num_val)
        num_val -= short
        val = val.take(num_val)
    val = (
        val.map(lambda x, y: (eval_fn(x, image_size), y), num_parallel_calls=AUTOTUNE)
        .batch(batch_size)
        .map(one_hot, num_parallel_calls=AUTOTUNE)
        .prefetch(AUTOTUNE)
    )
    return Data(train, val, num_train, num_val, num_classes, image_size, names,
                mean, skipped)
