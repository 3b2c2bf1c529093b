"""The splits every reader yields: `Split` (one split of a data set) and
`Source` (a training run's train, validation and test splits), and what the
readers share: the share held out to validate, image decoding, index names.
"""

import dataclasses

import tensorflow as tf

# Held out of train/ to validate when a folder has no val/: Sec. 4.2's 5k of 50k.
VAL_FRACTION = 0.1


@dataclasses.dataclass(frozen=True, kw_only=True)
class Split:
    """One split of a data set."""

    examples: tf.data.Dataset  # (uint8 image [H, W, 3], int32 label)
    count: int
    class_names: tuple[str, ...]  # label -> name
    skipped: int = 0  # files left out: unreadable, or above max_pixels
    decoded_bytes: int | None = None  # of all images decoded; None: unknown
    name: str | None = None  # what evaluation scored: "test", "val", "validation", ...


@dataclasses.dataclass(frozen=True)
class Source:
    """A training run's data before any augmentation."""

    train: Split
    val: Split  # picks the best model
    test: Split | None = None  # scored apart, never used to choose
    splits: dict[str, str] = dataclasses.field(default_factory=dict)  # where each came from


def index_names(num_classes: int) -> tuple[str, ...]:
    """The names of classes that have none: "0", "1", ..."""
    return tuple(str(i) for i in range(num_classes))


def decode_bytes(image_bytes: tf.Tensor) -> tf.Tensor:
    """Encoded JPEG/PNG (also GIF, BMP) to uint8 RGB [H, W, 3]."""
    return tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
