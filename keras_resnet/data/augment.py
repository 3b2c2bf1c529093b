"""Augmentations (training) and test views (evaluation, serving), one table each.

Images enter as RGB in [0, 255] (uint8 or float) and leave as float32 in
[0, 255]: the mean subtraction lives inside the model.

Augmentations (paper): "cifar", Sec. 4.2: 4-pixel padding on each side, a
random 32x32 crop, a random horizontal flip; tested on the image itself
("single"). "imagenet", Sec. 3.4: shorter side resized to a random length in
[256, 480], a random 224x224 crop, a random flip, AlexNet's PCA colour noise;
tested on the shorter side resized to 256 and the centre 224x224 crop
("center"). "inception" (modern recipes): a random-area crop (8%-100%, aspect
3/4-4/3) resized to 224, a flip; tested as "imagenet".
Lengths scale with `image_size` (padding is image_size / 8, the scale range
image_size * [256, 480] / 224). Random ops are stateless, seeded per example,
so a pipeline is deterministic however many threads run it.

Test views (each protocol averages the scores of its views): "single", the
image at the model's size; "center", the centre crop above; "10crop", the four
corner and the centre crops of that resized image and their flips (Table 3;
AlexNet's protocol); `multiscale_views`, the whole image with its shorter side
at each of {224, 256, 384, 480, 640} scaled by size / 224 (Table 4).
"""

import dataclasses
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from keras_resnet.errors import ArgumentError

# AlexNet's PCA of ImageNet RGB pixels in [0, 1] (Krizhevsky et al. 2012; the
# values fb.resnet.torch uses).
PCA_EIGVAL = np.array([0.2175, 0.0188, 0.0045], "float32")
PCA_EIGVEC = np.array(
    [[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]],
    "float32",
)
SCALES = (224, 256, 384, 480, 640)  # Table 4's shorter sides, for 224 crops.


@dataclasses.dataclass(frozen=True, kw_only=True)
class AugmentOptions:
    """What a recipe (and the training data) adds to an augmentation."""

    pca_std: float = 0.0  # AlexNet colour noise's alpha std ("imagenet").
    # "cifar" pads with this value (per channel, or one for all); None: 0.
    # Padding the raw image with the training mean is padding the paper's
    # mean-subtracted image with zeros.
    pad_value: float | None = None


def scaled(length: int, image_size: int) -> int:
    """A length the paper gives for 224x224 crops, scaled to `image_size`."""
    return round(length * image_size / 224)


# ----------------------------------------------------------------- geometry


INTERPOLATIONS = ("bilinear", "bicubic")


def resize_shorter(image: tf.Tensor, length, method: str = "bilinear") -> tf.Tensor:
    shape = tf.cast(tf.shape(image)[:2], "float32")
    scale = tf.cast(length, "float32") / tf.reduce_min(shape)
    size = tf.cast(tf.round(shape * scale), "int32")
    return tf.image.resize(image, size, method=method, antialias=True)


def resize_to(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """The image as float32 at image_size x image_size (resized if needed)."""
    image = tf.cast(image, "float32")
    shape = tf.shape(image)
    return tf.cond(
        tf.logical_and(shape[0] == image_size, shape[1] == image_size),
        lambda: image,
        lambda: tf.image.resize(image, [image_size, image_size], antialias=True),
    )


def _crop(image: tf.Tensor, top, left, size: int) -> tf.Tensor:
    return image[top : top + size, left : left + size]


def _random_flip(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    return tf.image.stateless_random_flip_left_right(image, seed)


def _clip(image: tf.Tensor) -> tf.Tensor:
    return tf.clip_by_value(image, 0.0, 255.0)


# ------------------------------------------------------------ augmentations


def pad_crop_flip(image: tf.Tensor, seed: tf.Tensor, image_size: int, pad_value=0.0) -> tf.Tensor:
    """Paper Sec. 4.2: pad image_size/8 pixels, random crop, random flip."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    pad = image_size // 8
    image = resize_to(image, image_size) - pad_value
    image = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
    image = tf.image.stateless_random_crop(image, [image_size, image_size, 3], seeds[0])
    return _random_flip(image, seeds[1]) + pad_value


def pca_lighting(image: tf.Tensor, seed: tf.Tensor, alpha_std: float) -> tf.Tensor:
    """AlexNet colour augmentation: add PCA components with N(0, std) weights."""
    alpha = tf.random.stateless_normal([3], seed, stddev=alpha_std)
    return image + tf.linalg.matvec(PCA_EIGVEC, alpha * PCA_EIGVAL) * 255.0


def scale_crop_flip(image: tf.Tensor, seed: tf.Tensor, image_size: int, pca_std: float = 0.0) -> tf.Tensor:
    """Paper Sec. 3.4: shorter side in [256, 480], random crop, flip, PCA."""
    seeds = tf.random.experimental.stateless_split(seed, 4)
    low, high = scaled(256, image_size), scaled(480, image_size)
    length = tf.random.stateless_uniform([], seeds[0], low, high + 1, "int32")
    image = resize_shorter(tf.cast(image, "float32"), length)
    image = tf.image.stateless_random_crop(image, [image_size, image_size, 3], seeds[1])
    image = _random_flip(image, seeds[2])
    if pca_std:
        image = pca_lighting(image, seeds[3], pca_std)
    return _clip(image)


def inception_crop_flip(image: tf.Tensor, seed: tf.Tensor, image_size: int) -> tf.Tensor:
    """Random area (8%-100%) and aspect (3/4-4/3) crop, resized; flip."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), tf.zeros([1, 0, 4]), seed=seeds[0], min_object_covered=0.0,
        aspect_ratio_range=(3 / 4, 4 / 3), area_range=(0.08, 1.0), max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    image = tf.slice(image, begin, size)
    image = tf.image.resize(tf.cast(image, "float32"), [image_size, image_size], antialias=True)
    return _clip(_random_flip(image, seeds[1]))


# --------------------------------------------------------------- test views


def _test_resize(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """Sec. 3.4's test resize: the shorter side to 256/224 of the size."""
    return resize_shorter(tf.cast(image, "float32"), scaled(256, image_size))


def _center_crop(image: tf.Tensor, size: int) -> tf.Tensor:
    shape = tf.shape(image)
    top, left = (shape[0] - size) // 2, (shape[1] - size) // 2
    return _clip(_crop(image, top, left, size))


def resize_center_crop(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """Paper's ImageNet test view: the test resize, then the centre crop."""
    return _center_crop(_test_resize(image, image_size), image_size)


def weights_view(resize: int, crop: int, interpolation: str) -> Callable[[tf.Tensor], tf.Tensor]:
    """The evaluation transform published weights were scored with (the
    weights table's): the shorter side to `resize` by `interpolation`
    (antialiased, as torchvision's on tensors), the centre `crop` x `crop`;
    fn(image) -> float32 [1, crop, crop, 3]."""
    if interpolation not in INTERPOLATIONS:
        raise ArgumentError("interpolation", interpolation, f"must be one of {', '.join(INTERPOLATIONS)}")
    if not 0 < crop <= resize:
        raise ArgumentError("crop", crop, f"must be >= 1 and at most the resize ({resize})")
    return lambda image: _center_crop(
        resize_shorter(tf.cast(image, "float32"), resize, interpolation), crop)[None]


def ten_crops(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """The 4 corner and the centre crops of the resized image, and their flips."""
    image = _test_resize(image, image_size)
    shape = tf.shape(image)
    bottom, right = shape[0] - image_size, shape[1] - image_size
    corners = [(0, 0), (0, right), (bottom, 0), (bottom, right), (bottom // 2, right // 2)]
    crops = _clip(tf.stack([_crop(image, t, l, image_size) for t, l in corners]))
    return tf.concat([crops, tf.reverse(crops, axis=[2])], axis=0)


# name -> fn(image, image_size) -> float32 [views, size, size, 3].
VIEWS: dict[str, Callable[[tf.Tensor, int], tf.Tensor]] = {
    "single": lambda image, size: resize_to(image, size)[None],
    "center": lambda image, size: resize_center_crop(image, size)[None],
    "10crop": ten_crops,
}
SINGLE_VIEWS = ("single", "center")  # one image in, one out: what serving does.


def one_view(name: str) -> Callable[[tf.Tensor, int], tf.Tensor]:
    """The test view `name` ("single" or "center") as fn(image, size) ->
    float32 [size, size, 3]: a validation image's, a served image's."""
    if name not in SINGLE_VIEWS:
        raise ArgumentError("view", name, f"must be one of {', '.join(SINGLE_VIEWS)}")
    view = VIEWS[name]
    return lambda image, size: view(image, size)[0]


def multiscale_views(image: tf.Tensor, image_size: int, scales=SCALES) -> list[tf.Tensor]:
    """The whole image at each scale (shorter side scale * image_size / 224),
    each [1, H, W, 3]."""
    image = tf.cast(image, "float32")
    return [_clip(resize_shorter(image, scaled(s, image_size)))[None] for s in scales]


# ------------------------------------------------------------------- table


@dataclasses.dataclass(frozen=True, kw_only=True)
class Augmentation:
    """A training augmentation and the test view that goes with it."""

    train: Callable[[tf.Tensor, tf.Tensor, int, AugmentOptions], tf.Tensor]  # (image, seed, size, options)
    test_view: str  # a key of VIEWS


AUGMENTATIONS = {
    "cifar": Augmentation(
        train=lambda x, seed, size, o: pad_crop_flip(x, seed, size, 0.0 if o.pad_value is None else o.pad_value),
        test_view="single",
    ),
    "imagenet": Augmentation(
        train=lambda x, seed, size, o: scale_crop_flip(x, seed, size, o.pca_std),
        test_view="center",
    ),
    "inception": Augmentation(
        train=lambda x, seed, size, o: inception_crop_flip(x, seed, size),
        test_view="center",
    ),
}


def get_augmentation(name: str) -> Augmentation:
    """The augmentation `name` (a key of AUGMENTATIONS), or ArgumentError."""
    if name not in AUGMENTATIONS:
        raise ArgumentError("augment", name, f"must be one of {', '.join(AUGMENTATIONS)}")
    return AUGMENTATIONS[name]
