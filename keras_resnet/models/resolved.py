"""What a `weights` argument means, decided once: `resolve_weights`.

`weights` is None (He initialisation), a name of the weights table
(keras_resnet.models.pretrained: "imagenet", "tv2_in1k", ...) or the path to a
weights file. `resolve_weights(model, weights)` decides which, here and nowhere
else, checks it (one error, naming the value and what is accepted), and
returns a `ResolvedWeights` that carries what every later step needs: the
table's entry or the file, the architecture options the weights were trained
with (version="v1.5" for torchvision's bottleneck nets), their normalisation,
the evaluation transform they were scored with, and what a `.keras` file
train.py wrote says of itself. The builder, train.py's run, evaluation and
export take it instead of the string (as torchvision's `Weights` entries and
timm's `PretrainedCfg` are taken).
"""

import dataclasses
import os
import zipfile
import zlib
from collections.abc import Mapping
from typing import Any

from keras_resnet.errors import ArgumentError
from keras_resnet.models import metadata
from keras_resnet.models import pretrained
from keras_resnet.models import state_dicts
from keras_resnet.models.variants import VARIANTS
from keras_resnet.models.variants import canonical_name

FILE_KINDS = (
    "a Keras '.weights.h5' or '.keras' file, or an HDF5 file in the "
    "keras.applications layout"
)
ACCEPTED_FILES = f"Accepted: {FILE_KINDS}."


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvalTransform:
    """How a set of weights was scored: the shorter side resized to `resize`
    (by `interpolation`), then the centre `crop` x `crop`."""

    resize: int
    crop: int
    interpolation: str  # "bilinear" or "bicubic"

    def at(self, image_size: int) -> "EvalTransform":
        """The same transform for `image_size` crops: the resize scaled with it."""
        return dataclasses.replace(self, resize=round(self.resize * image_size / self.crop),
                                   crop=image_size)

    def describe(self) -> str:
        return (f"shorter side resized to {self.resize} ({self.interpolation}), "
                f"centre {self.crop}x{self.crop} crop")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ResolvedWeights:
    """One `weights` argument of one model, resolved (`resolve_weights`)."""

    model: str  # the variant's canonical name, e.g. "resnet50"
    given: str | None  # as the caller wrote it: a name, a path, or None
    entry: pretrained.PretrainedWeights | None = None  # a name's table entry
    path: str | None = None  # a file's path
    state_dict: bool = False  # torchvision's/timm's layout (keras_resnet.models.state_dicts)
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # e.g. version="v1.5"
    normalization: str | None = None  # a key of pretrained.NORMALIZATIONS; None: unknown
    transform: EvalTransform | None = None  # the table's, for a name
    info: metadata.ModelInfo | None = None  # what a .keras file train.py wrote says

    @property
    def named(self) -> bool:
        return self.entry is not None

    def check_fits(self, *, include_top: bool, classes: int, shortcut: str, version: str) -> None:
        """ValueError in one line unless a model of these arguments can take
        the weights: a published set's options, ImageNet's 1000 classes."""
        if self.entry is not None:
            pretrained.check(self.entry, include_top=include_top, classes=classes,
                             shortcut=shortcut, version=version)


def resolve_weights(model: str, weights: Any) -> ResolvedWeights:
    """`weights` for `model` (any spelling get_model takes), resolved; an
    ArgumentError naming the value and what is accepted if it is none of a
    name of list_weights(model), None, or the path to an existing file.
    Weights already resolved are returned as they are, if for `model`."""
    model = canonical_name(model)
    if isinstance(weights, ResolvedWeights):
        if weights.model != model:
            raise ValueError(f"weights resolved for {weights.model} cannot build {model}")
        return weights
    if weights is None:
        return ResolvedWeights(model=model, given=None)
    if pretrained.is_named(weights):
        entry = pretrained.find(model, weights)
        return ResolvedWeights(
            model=model, given=weights, entry=entry, state_dict=entry.format != "keras_h5",
            options=dict(entry.options), normalization=entry.normalization,
            transform=EvalTransform(resize=entry.resize, crop=entry.crop,
                                    interpolation=entry.interpolation),
        )
    if not isinstance(weights, str) or not os.path.exists(weights):
        raise pretrained.refused(model, weights)
    check_not_directory(weights)
    if state_dicts.is_state_dict_file(weights):
        bottleneck = VARIANTS[model].block == "bottleneck"
        return ResolvedWeights(model=model, given=weights, path=weights, state_dict=True,
                               options={"version": "v1.5"} if bottleneck else {},
                               normalization="torchvision")
    return ResolvedWeights(model=model, given=weights, path=weights, info=read_info(weights))


def check_not_directory(path: str) -> None:
    """Raises an ArgumentError for `weights` if `path` is a directory: a
    common slip (a run folder for its model.keras), which a reader would only
    call unreadable."""
    if os.path.isdir(path):
        raise ArgumentError("weights", path, f"must be a file, not a directory: {FILE_KINDS}")


def first_line(error: Exception) -> str:
    return str(error).split("\n")[0] or type(error).__name__


def unreadable_error(path: str, reason: str) -> ValueError:
    return ValueError(f"Weights file {path} is corrupt or unreadable: {reason}. {ACCEPTED_FILES}")


def read_info(path: str) -> metadata.ModelInfo | None:
    """The ModelInfo of a `.keras` file train.py wrote (its model, classes and
    preprocessing), or None for any other weights file; ValueError naming
    the file if it cannot be read."""
    try:
        return metadata.read_keras(path) if zipfile.is_zipfile(path) else None
    except (OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as e:
        raise unreadable_error(path, first_line(e)) from None
