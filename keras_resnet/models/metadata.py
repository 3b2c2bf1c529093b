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

Every reader of a `.keras` file opens it with `open_keras`, which refuses,
by what the members declare and before any is inflated, an archive that
would make it allocate past the bounds below (a zip bomb); its JSON is parsed
by `parse_json`, which bounds the nesting.
"""

import dataclasses
import io
import json
import os
import re
import sys
import typing
import zipfile
from typing import Any

import numpy as np

from keras_resnet.models.pretrained import NORMALIZATIONS
from keras_resnet.version import __version__

FILE_NAME = "keras_resnet.json"
KERAS_METADATA = "metadata.json"  # the member of a .keras archive that holds it
KERAS_CONFIG = "config.json"  # the model's config, which Keras reads whole
KERAS_WEIGHTS = "model.weights.h5"
# The class of the input preprocessing train.py puts in front of the network
# (keras_resnet.models.preprocessing): not the network's, so never loaded into one.
INPUT_LAYER_CLASS = "MeanSubtraction"
KEY = "keras_resnet"
FAMILY_NAMES = ("cifar", "imagenet")
# The training set's per-pixel mean, or a published weights' normalisation.
PREPROCESSINGS = ("pixel_mean", *NORMALIZATIONS)

# Bounds of what a `.keras` file may make a reader allocate. Keras writes its
# members stored, not deflated: metadata.json is ~100 bytes (ours adds the
# class names: KBs), config.json ~0.5 MB for ResNet-152 (its own nesting 11
# deep, 3 more per model inside a model), model.weights.h5 the weights'
# bytes. A member may expand at most MAX_EXPANSION times over its stored
# bytes (Keras' own bound; DEFLATE reaches ~1032x only on constant data),
# except one of at most EXPANSION_FLOOR bytes.
MAX_METADATA_BYTES = 1 << 20
MAX_CONFIG_BYTES = 16 << 20
MAX_MEMBERS = 10_000
MAX_EXPANSION = 100
EXPANSION_FLOOR = 1 << 20
MAX_JSON_DEPTH = 100
_MEMBER_CAPS = {KERAS_METADATA: MAX_METADATA_BYTES, KERAS_CONFIG: MAX_CONFIG_BYTES}
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_JSON_TYPES = {dict: "object", list: "array", str: "string", int: "integer", float: "number",
               bool: "boolean", type(None): "null"}


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
    package_version: str = __version__

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
            fields = parse_json(text)
        except ValueError as e:
            raise ValueError(f"{source} holds unreadable keras_resnet metadata ({e})") from None
        return cls.from_fields(fields, source)

    @classmethod
    def from_fields(cls, fields: Any, source: str) -> "ModelInfo":
        """The ModelInfo of `to_json`'s parsed JSON, each field of its exact
        JSON type (the file controls what it holds); ValueError naming `source`."""
        try:
            if type(fields) is not dict:
                raise TypeError(f"a JSON {_JSON_TYPES[type(fields)]}; accepted: a JSON object")
            known = {k: v for k, v in fields.items() if k in _FIELD_TYPES}
            for key, value in known.items():
                if type(value) is not _FIELD_TYPES[key]:
                    raise TypeError(f"{key} is a JSON {_JSON_TYPES[type(value)]}; accepted: "
                                    f"a JSON {_JSON_TYPES[_FIELD_TYPES[key]]}")
            if not all(type(c) is str for c in known.get("class_names", ())):
                raise TypeError("class_names holds a value that is not a JSON string")
            return cls(**known)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{source} holds unreadable keras_resnet metadata ({e})") from None


# The exact JSON type of each field of a file's ModelInfo (a tuple is an array).
_FIELD_TYPES = {f.name: list if typing.get_origin(f.type) is tuple else f.type
                for f in dataclasses.fields(ModelInfo)}


def parse_json(text: str | bytes) -> Any:
    """`text` parsed, if nested at most MAX_JSON_DEPTH deep: measured on the
    raw text, so the parser never recurses past it. ValueError saying why not."""
    raw = text.encode() if isinstance(text, str) else bytes(text)
    brackets = np.frombuffer(_JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS), np.uint8)
    steps = np.where((brackets == ord("[")) | (brackets == ord("{")), 1, -1).astype(np.int32)
    depth = int(np.cumsum(steps, dtype=np.int32).max(initial=0))
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"JSON nested {depth} deep; accepted: at most {MAX_JSON_DEPTH}")
    return json.loads(raw)  # JSONDecodeError (or UnicodeDecodeError) is a ValueError


def open_keras(path: str) -> zipfile.ZipFile:
    """The `.keras` (zip) archive at `path`, open, once `check_keras_archive`
    passed; zipfile's own errors (BadZipFile, OSError) are the caller's to word."""
    archive = zipfile.ZipFile(path)
    try:
        check_keras_archive(path, archive)
    except ValueError:
        archive.close()
        raise
    return archive


def check_keras_archive(path: str, archive: zipfile.ZipFile) -> None:
    """Refuses (ValueError naming `path`) an archive that reading would make
    allocate more than its bounds, by what its members declare, before any
    is inflated: too many members, metadata.json or config.json over their
    caps (Keras reads them whole), a member expanding over MAX_EXPANSION
    times its stored bytes (a zip bomb), or stored bytes beyond the file."""
    members = archive.infolist()
    if len(members) > MAX_MEMBERS:
        raise ValueError(f"{path}: a .keras archive of {len(members)} members; accepted: at "
                         f"most {MAX_MEMBERS} (Keras writes 3)")
    for member in members:
        cap = _MEMBER_CAPS.get(member.filename)
        if cap is not None and member.file_size > cap:
            raise ValueError(f"{path}: its {member.filename} declares {member.file_size} bytes; "
                             f"accepted: at most {cap}")
        if expands_too_much(member.file_size, member.compress_size):
            raise ValueError(
                f"{path}: its member {member.filename!r} declares {member.file_size} bytes from "
                f"{member.compress_size} stored (a zip bomb?); accepted: at most "
                f"{MAX_EXPANSION} times its stored bytes"
            )
    stored = sum(member.compress_size for member in members)
    if stored > os.path.getsize(path):
        raise ValueError(f"{path}: its members declare {stored} stored bytes, more than the "
                         f"file's {os.path.getsize(path)}: damaged or crafted")


def expands_too_much(declared: int, stored: int) -> bool:
    """Whether `declared` bytes from `stored` (a zip member's, an HDF5 dataset's)
    could be a compression bomb: over EXPANSION_FLOOR and MAX_EXPANSION times."""
    return declared > max(EXPANSION_FLOOR, MAX_EXPANSION * stored)


def read_member(path: str, archive: zipfile.ZipFile, name: str) -> bytes:
    """The member `name` of the checked archive, read whole: at most its
    cap (metadata.json, config.json) plus one byte, refused if over it."""
    cap = _MEMBER_CAPS[name]
    with archive.open(name) as f:
        content = f.read(cap + 1)
    if len(content) > cap:
        raise ValueError(f"{path}: its {name} holds over {cap} bytes; accepted: at most {cap}")
    return content


def read_keras_config(path: str, archive: zipfile.ZipFile) -> tuple[dict[str, float], list[str]]:
    """({BN layer name: epsilon}, [MeanSubtraction layer names]) of the
    `config.json` of the archive `open_keras(path)` opened ({}, []
    without one). ValueError naming `path` for a config Keras itself would
    fail on in a traceback: unparsable, nested too deep, a layer without a
    name, or a BN epsilon that is not a finite number > 0."""
    if KERAS_CONFIG not in archive.namelist():
        return {}, []
    try:
        config = parse_json(read_member(path, archive, KERAS_CONFIG))
    except ValueError as e:
        raise ValueError(f"{path} holds an unreadable {KERAS_CONFIG} ({e})") from None
    epsilons, inputs = {}, []

    def walk(node: Any) -> None:  # the config nests models in models (depth bounded by parse_json)
        if type(node) is dict:
            if node.get("class_name") in ("BatchNormalization", INPUT_LAYER_CLASS):
                layer = node.get("config")
                name = layer.get("name") if type(layer) is dict else None
                if type(name) is not str:
                    raise ValueError(f"{path}: its {KERAS_CONFIG} has a "
                                     f"{node['class_name']} layer without a name")
                if node["class_name"] == INPUT_LAYER_CLASS:
                    inputs.append(name)
                else:
                    epsilons[name] = _checked_epsilon(path, name, layer.get("epsilon"))
            for value in node.values():
                walk(value)
        elif type(node) is list:
            for value in node:
                walk(value)

    walk(config)
    return epsilons, inputs


def _checked_epsilon(path: str, layer: str, epsilon: Any) -> float:
    """A BN epsilon of a file's config, if it is a finite number > 0: a string
    would fail the first BN call, NaN or inf give NaN outputs."""
    if type(epsilon) not in (int, float) or not 0 < epsilon <= sys.float_info.max:  # NaN fails too
        raise ValueError(
            f"{path}: its {KERAS_CONFIG} gives BatchNormalization layer "
            f"{layer[:100]!r} epsilon {str(epsilon)[:50]!r}; accepted: a finite number > 0"
        )
    return float(epsilon)


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
    with open_keras(path) as archive:
        if KERAS_METADATA not in archive.namelist():
            return None
        content = read_member(path, archive, KERAS_METADATA)
    try:
        fields = parse_json(content)
    except ValueError as e:
        raise ValueError(f"{path} holds an unreadable {KERAS_METADATA} ({e}); Keras "
                         "writes it whole, so the file is damaged") from None
    if type(fields) is not dict or KEY not in fields:
        return None
    return ModelInfo.from_fields(fields[KEY], path)
