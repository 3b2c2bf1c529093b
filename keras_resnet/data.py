"""Deprecated: the former input module, now keras_resnet.sources (readers),
keras_resnet.augment (augmentations, test views) and keras_resnet.pipeline
(the training pipelines). Kept only until training.py has moved over."""

from keras_resnet import augment as _augment
from keras_resnet import pipeline as _pipeline
from keras_resnet.pipeline import Data  # noqa: F401
from keras_resnet.sources import DatasetUnavailableError
from keras_resnet.sources import normalize  # noqa: F401


def check_augment(name):
    augmentation = _augment.get_augmentation(name)
    return augmentation.train, _augment.one_view(augmentation.test_view)


def load(dataset, *, augment_options=None, **kwargs):
    """`pipeline.load` with the former dict of augmentation options and the
    former message (with train.py's flags) for an unavailable data set."""
    options = _augment.AugmentOptions(**(augment_options or {}))
    try:
        return _pipeline.load(dataset, options=options, **kwargs)
    except DatasetUnavailableError as e:
        raise ValueError(
            f"{e.cause}. Point --data_dir at a TFDS data directory that holds it "
            "(--manual_dir for manually downloaded archives), or pass "
            "--dataset=/path/to/folder with train/ and val/ subfolders of class folders."
        ) from None
