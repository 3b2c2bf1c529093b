"""What an artefact says about itself, so evaluation and serving need not guess.

Every artefact keras_resnet writes (train.py's `model.keras` and checkpoints,
SavedModels, `.tflite` files) carries a `ModelInfo`: the model, the input
size, how a test image becomes an input (the test view of
keras_resnet.data.augment), the class names and the preprocessing inside the
model, and the package version that wrote it. In a `.keras` file it is the
"keras_resnet" entry of the archive's own `metadata.json`, which Keras writes
(Keras version, date) and does not read back: the archive keeps Keras' three
members, so Keras loads it as fast as any (a fourth member would make it
unpack the whole archive to a temporary folder on every load).
keras_resnet.export stores the same JSON in SavedModels (an asset file named
FILE_NAME) and `.tflite` files (a metadata entry).
"""

import dataclasses
import io
import json
import zipfile
from typing import Any

from keras_resnet.models.pretrained import NORMALIZATIONS

FILE_NAME = "keras_resnet.json"
KERAS_METADATA = "metadata.json"  # the member of a .keras archive that holds it
KEY = "keras_resnet"
FAMILY_NAMES = ("cifar", "imagenet")
# The training set's per-pixel mean, or a published weights' normalisation.
PREPROCESSINGS = ("pixel_mean", *NORMALIZATIONS)


def _package_version() -> str:
    from keras_resnet import __version__  # the package imports this module.

    return __version__


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelInfo:
    """What evaluating or serving an artefact needs to know."""

    model: str  # the variant, e.g. "resnet20" (keras_resnet.list_models())
    family: str  # "cifar" or "imagenet" (paper Sec. 4.2 or Sec. 3.4)
    image_size: int  # side of the square input
    test_view: str  # a key of keras_resnet.data.augment.VIEWS: "single" or "center"
    class_names: tuple[str, ...]  # index -> name of the model's outputs
    # Inside the model, on RGB in [0, 255]: "pixel_mean" subtracts the
    # training set's per-pixel mean (Sec. 4.2); "caffe" is keras.applications'
    # weights' (RGB -> BGR, ImageNet's channel means), "torchvision"
    # torchvision's and timm's (keras_resnet.models.pretrained.NORMALIZATIONS).
    preprocessing: str
    package_version: str = dataclasses.field(default_factory=_package_version)

    def __post_init__(self):
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        if self.family not in FAMILY_NAMES:
            raise ValueError(f"family must be one of {', '.join(FAMILY_NAMES)}. Received: family={self.family!r}")
        if self.preprocessing not in PREPROCESSINGS:
            raise ValueError(
                f"preprocessing must be one of {', '.join(PREPROCESSINGS)}. "
                f"Received: preprocessing={self.preprocessing!r}"
            )
        if not (isinstance(self.image_size, int) and self.image_size > 0):
            raise ValueError(f"image_size must be a positive integer. Received: image_size={self.image_size!r}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str | bytes, source: str) -> "ModelInfo":
        """Parses what `to_json` wrote; `source` names the artefact in errors.
        Keys a later version added are ignored."""
        try:
            fields: dict[str, Any] = json.loads(text)
            known = {f.name for f in dataclasses.fields(cls)}
            return cls(**{k: v for k, v in fields.items() if k in known})
        except (ValueError, TypeError) as e:  # JSONDecodeError is a ValueError.
            raise ValueError(f"{source} holds unreadable keras_resnet metadata ({e})") from None


def write_keras(path: str, info: ModelInfo) -> None:
    """Records `info` in the `.keras` file at `path`, which Keras just wrote.

    A zip member cannot be changed in place, so the archive is rewritten
    whole, in memory, then over `path`: call it on the staging file, before
    it is renamed into place (keras_resnet.files.atomic_path).
    """
    rewritten = io.BytesIO()
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(rewritten, "w") as target:
        for member in source.infolist():
            content = source.read(member)
            if member.filename == KERAS_METADATA:
                fields = json.loads(content)
                fields[KEY] = dataclasses.asdict(info)
                content = json.dumps(fields, indent=2).encode()
            target.writestr(member, content)
    with open(path, "wb") as f:
        f.write(rewritten.getbuffer())


def read_keras(path: str) -> ModelInfo | None:
    """The `ModelInfo` of a `.keras` file, or None if it has none (a file
    keras_resnet did not write, e.g. a user's own `model.save`)."""
    with zipfile.ZipFile(path) as archive:
        if KERAS_METADATA not in archive.namelist():
            return None
        content = archive.read(KERAS_METADATA)
    try:
        fields = json.loads(content)
    except ValueError as e:  # JSONDecodeError (or a UnicodeDecodeError)
        raise ValueError(f"{path} holds an unreadable {KERAS_METADATA} ({e}); Keras "
                         "writes it whole, so the file is damaged") from None
    if not isinstance(fields, dict) or KEY not in fields:
        return None
    return ModelInfo.from_json(json.dumps(fields[KEY]), path)
