"""Pretrained weights: the published sets (keras_resnet.models.pretrained), and weight files.

keras.applications' ResNet50/101/152 (converted from the authors' Caffe models)
have a bias on every conv and BN epsilon 1.001e-5. Our convs have no bias (BN
follows, as in the authors' models) and epsilon 1e-5. Both differences fold
exactly into the BN statistics:
    BN(conv(x) + b)  with mean m      ==  BN(conv(x))  with mean m - b
    (var + eps_file) with epsilon eps ==  (var + eps_file - eps) + eps
Every format is matched to the model by layer name and loaded this way: the
legacy HDF5 layout of the published files, and Keras 3 `.weights.h5`/`.keras`
files (of keras.applications models or of ours).
"""

import dataclasses
import io
import re
import zipfile
import zlib
from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any

import h5py
import keras
import numpy as np

from keras_resnet.models import downloads
from keras_resnet.models import metadata
from keras_resnet.models import state_dicts
from keras_resnet.models.finite import check_finite
from keras_resnet.models.resolved import ACCEPTED_FILES
from keras_resnet.models.resolved import ResolvedWeights
from keras_resnet.models.resolved import check_not_directory
from keras_resnet.models.resolved import first_line
from keras_resnet.models.resolved import unreadable_error

# BN epsilon of keras.applications' ResNets, which wrote the published files.
LEGACY_BN_EPSILON = 1.001e-5
# The top's fc layer (keras.applications' name), and the head layers a file
# may hold that a model built with include_top=False lacks.
TOP_LAYER = "predictions"
HEAD_LAYERS = (TOP_LAYER,)


class _NotWeights(Exception):
    """A readable file that is no weights file (the reason, without the path)."""


# Weight files ----------------------------------------------------------------


@dataclasses.dataclass(kw_only=True)
class StoredWeights:
    """What a weights file holds, by layer name.

    `layers` maps a layer name to {weight name: array} (legacy files name
    their weights) or to its arrays in creation order (Keras 3 files).
    `epsilons` maps BN layer names to the epsilon of the model that wrote
    the file, where the file says (`.keras` configs; legacy files).
    `means` maps the input preprocessing layers of a model train.py wrote
    (MeanSubtraction, outside the network) to the mean each subtracts: kept
    apart from `layers`, so the network loads without them.
    """

    layers: Mapping[str, dict[str, np.ndarray] | list[np.ndarray]]
    epsilons: dict[str, float]
    means: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    @property
    def top_classes(self) -> int | None:
        """The class count of the file's top (its fc layer's outputs), or None
        if it has no top: a fine-tuning run keeps the top only if it fits."""
        top = self.layers.get(TOP_LAYER)
        if not top:
            return None
        kernel = top["kernel"] if isinstance(top, dict) else top[0]
        return int(kernel.shape[-1])


def load_weights(model: keras.Model, weights: ResolvedWeights, include_top: bool) -> None:
    """Loads `weights` (a published set, fetched, or a file) into `model`,
    all or nothing: Keras and keras.applications files by layer name,
    torchvision and timm state dicts through keras_resnet.models.state_dicts."""
    path = downloads.fetch(weights.entry, include_top) if weights.named else weights.path
    if weights.state_dict:
        state_dicts.load_state_dict(model, path, weights.model)
    else:
        assign(model, path, read_weights(path, model))


def read_weights(path: str, model: keras.Model | None = None) -> StoredWeights:
    """Reads any accepted weights file; ValueError naming it if it cannot.

    `model` maps the groups of Keras 3 files from before Keras stored layer
    names in them (its own files: same layer order).
    """
    check_not_directory(path)
    try:
        if zipfile.is_zipfile(path):
            return _read_keras_archive(path, model)
        if h5py.is_hdf5(path):
            with h5py.File(path, "r") as f:
                if "layer_names" in f.attrs or "model_weights" in f:
                    return _read_legacy(f)
                if "layers" in f or "vars" in f:
                    return StoredWeights(layers=_read_keras_h5(f, model), epsilons={})
            raise _NotWeights("an HDF5 file with neither Keras layout")
        reason = "neither an HDF5 file nor a zip archive"
    except _NotWeights as e:
        raise ValueError(f"Weights file {path} is not usable: {e}. {ACCEPTED_FILES}") from None
    except (OSError, EOFError, KeyError, RuntimeError, zipfile.BadZipFile, zlib.error) as e:
        reason = first_line(e)
    raise unreadable_error(path, reason)


def _as_strings(names: Iterable[Any]) -> list[str]:
    """HDF5 attributes as str: h5py gives bytes or numpy strings."""
    return [n.decode("utf8") if isinstance(n, bytes) else str(n) for n in names]


def _dataset(item: Any, name: str) -> np.ndarray:
    """The array of an HDF5 dataset of numbers; _NotWeights if `item` is none, or
    declares over MAX_EXPANSION times the bytes it stores (Keras' are not compressed)."""
    if not (isinstance(item, h5py.Dataset) and item.shape is not None and item.dtype.kind in "fiub"):
        raise _NotWeights(f"{name[:100]!r} is no dataset of numbers (integers or floats)")
    size, stored = item.size * item.dtype.itemsize, item.id.get_storage_size()
    if metadata.expands_too_much(size, stored):
        raise _NotWeights(f"dataset {name[:100]!r} declares {size} bytes from {stored} stored; "
                          f"accepted: at most {metadata.MAX_EXPANSION} times its stored bytes")
    return np.asarray(item)


def _read_legacy(f: h5py.File) -> StoredWeights:
    """The legacy layout: root attribute `layer_names`; one group per layer
    whose attribute `weight_names` lists its datasets ("conv1_conv/kernel:0").
    Whole-model files keep the same under the group `model_weights`."""
    root = f if "layer_names" in f.attrs else f["model_weights"]
    layers = {}
    for layer_name in _as_strings(root.attrs["layer_names"]):
        group = root[layer_name]
        names = _as_strings(group.attrs.get("weight_names", []))
        if names:
            layers[layer_name] = {
                n.split("/")[-1].split(":")[0]: _dataset(group[n], n) for n in names
            }
    return StoredWeights(layers=layers, epsilons=dict.fromkeys(layers, LEGACY_BN_EPSILON))


def _read_keras_archive(path: str, model: keras.Model | None) -> StoredWeights:
    """A `.keras` zip: `model.weights.h5`, and BN epsilons from `config.json`."""
    with metadata.open_keras(path) as archive:
        if metadata.KERAS_WEIGHTS not in archive.namelist():
            raise _NotWeights(f"a zip archive without {metadata.KERAS_WEIGHTS}, so no .keras file")
        epsilons, inputs = metadata.read_keras_config(path, archive)
        data = io.BytesIO(archive.read(metadata.KERAS_WEIGHTS))  # bounded by open_keras
    with h5py.File(data, "r") as f:
        layers = _read_keras_h5(f, model)
    means = {name: layers.pop(name)[0] for name in inputs if name in layers}
    for name, mean in means.items():  # train.py puts it in front of the network it starts
        check_finite(mean, f"Weights file {path}", f"{name} (its input mean)", "not loaded")
    return StoredWeights(layers=layers, epsilons=epsilons, means=means)


@dataclasses.dataclass(frozen=True, kw_only=True)
class WeightsSource:
    """What a run that starts from weights needs to know of them, besides
    the weights: whether their top fits its classes, and what the model they
    come from subtracted from its inputs."""

    name: str  # "imagenet" or the file's path, as given
    top_classes: int | None  # outputs of their top (TOP_LAYER); None: no top
    info: metadata.ModelInfo | None  # what a model train.py wrote says of itself
    mean: np.ndarray | None  # that model's input mean (its MeanSubtraction's)


def read_source(weights: ResolvedWeights) -> WeightsSource:
    """The `WeightsSource` of `weights`. The published weights need no
    download for it: their top has ImageNet's 1000 classes."""
    if weights.named:
        return WeightsSource(name=weights.given, top_classes=1000, info=None, mean=None)
    if weights.state_dict:
        return WeightsSource(name=weights.path, top_classes=state_dicts.top_classes(weights.path),
                             info=None, mean=None)
    stored = read_weights(weights.path)
    return WeightsSource(name=weights.path, top_classes=stored.top_classes, info=weights.info,
                         mean=next(iter(stored.means.values()), None))


def _read_keras_h5(f: h5py.File, model: keras.Model | None) -> dict[str, list[np.ndarray]]:
    """{layer name: [arrays]} of a Keras 3 weights file.

    Keras 3 stores a layer's variables as `layers/<class>_<n>/vars/<i>`; since
    Keras 3.x (3.15 does) the `vars` group carries the layer's name as an
    attribute, nested models included. Older files are mapped through the
    groups `model.save_weights` would write.
    """
    by_position = _keras_groups(model) if model is not None else {}
    layers = {}

    def visit(key: str, item: Any) -> None:  # returns None, or visititems would stop
        if not (isinstance(item, h5py.Group) and key.startswith("layers/") and key.endswith("/vars")):
            return
        name = item.attrs.get("name")
        name = name.decode() if isinstance(name, bytes) else name
        name = name or by_position.get(key[: -len("/vars")])
        index = next((k for k in item if not (k.isascii() and k.isdigit() and len(k) < 10)), None)
        if index is not None:  # int() of 4,301 digits raises
            raise _NotWeights(f"{key} holds {index[:100]!r}; accepted there: the variables' indices (0, 1, ...)")
        values = [_dataset(item[k], f"{key}/{k}") for k in sorted(item, key=int)]
        if name is None or not values:
            return
        if name in layers:
            raise _NotWeights(f"it has two layers named {name!r}")
        layers[name] = values

    f.visititems(visit)
    return layers


def _snake_case(name: str) -> str:
    """Keras' group name for a class: "Conv2D" -> "conv2d"."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _keras_groups(model: keras.Model) -> dict[str, str]:
    """{group path: layer name} of what `model.save_weights` writes: Keras
    names a layer's group by its class and position (`layers/conv2d_3`)."""
    groups: dict[str, str] = {}
    used: dict[str, int] = {}
    for layer in model.layers:
        base = _snake_case(type(layer).__name__)
        groups[base if base not in used else f"{base}_{used[base]}"] = layer.name
        used[base] = used.get(base, 0) + 1
    return {f"layers/{group}": name for group, name in groups.items()}


def _mismatch_error(path: str, message: str) -> ValueError:
    return ValueError(f"Weights file {path} does not fit the model: {message}")


def _blocks_per_stage(names: Iterable[str]) -> tuple[int, ...]:
    """Blocks per stage, from keras.applications-style names `conv3_block4_...`."""
    stages: dict[int, int] = {}
    for name in names:
        match = re.match(r"conv(\d{1,4})_block(\d{1,4})_", name)  # longer: no ResNet's, and int() raises
        if match:
            stage, block = int(match.group(1)), int(match.group(2))
            stages[stage] = max(stages.get(stage, 0), block)
    return tuple(stages[s] for s in sorted(stages))


def assign(model: keras.Model, path: str, stored: StoredWeights) -> None:
    """Assigns `stored` to `model` by layer name, folding conv biases and BN
    epsilon; refuses (assigning nothing) unless every weight fits."""
    weighted = [layer for layer in model.layers if layer.weights]
    ours, theirs = _blocks_per_stage(l.name for l in weighted), _blocks_per_stage(stored.layers)
    if theirs and ours != theirs:
        raise _mismatch_error(
            path, f"the file is for another depth: its stages have {theirs} "
            f"blocks, the model's have {ours}."
        )
    names = {layer.name for layer in weighted}
    extra = [n for n in stored.layers if n not in names and n not in HEAD_LAYERS]
    if extra:
        raise _mismatch_error(
            path, f"the file has layer {extra[0][:100]!r}, which the model lacks "
            f"({len(extra)} such layers)."
        )
    assignments = []
    for layer in weighted:
        if layer.name not in stored.layers:
            hint = " (the file has no top: use include_top=False)" if layer.name in HEAD_LAYERS else ""
            raise _mismatch_error(path, f"layer {layer.name!r} is missing from the file{hint}.")
        values = _weights_by_name(layer, stored.layers[layer.name], path)
        if isinstance(layer, keras.layers.BatchNormalization):
            _fold_into_bn(layer, values, stored)
        elif isinstance(layer, keras.layers.Conv2D) and not layer.use_bias and "bias" in values:
            if _bn_name(layer.name) not in names:
                raise _mismatch_error(
                    path, f"layer {layer.name!r} has a conv bias in the file, which "
                    "the model's bias-free conv cannot take (no BN follows to fold it into)."
                )
            del values["bias"]  # folded into the BN that follows
        for variable in layer.weights:
            value = values.pop(variable.name, None)
            if value is None:
                raise _mismatch_error(path, f"layer {layer.name!r} weight {variable.name!r} is missing from the file.")
            if tuple(value.shape) != tuple(variable.shape):
                raise _mismatch_error(
                    path, f"layer {layer.name!r} weight {variable.name!r} has shape "
                    f"{tuple(variable.shape)}, the file has {tuple(value.shape)}."
                )
            with np.errstate(over="ignore"):  # an overflow to inf is refused next, by name
                value = value.astype(variable.dtype, copy=False)
            check_finite(value, f"Weights file {path}", variable.path, "not loaded")
            assignments.append((variable, value))
        if values:
            raise _mismatch_error(path, f"layer {layer.name!r} has no weight {sorted(values)[0]!r}, which the file has.")
    for variable, value in assignments:
        variable.assign(value)


def _weights_by_name(
    layer: keras.layers.Layer, values: dict[str, np.ndarray] | list[np.ndarray], path: str
) -> dict[str, np.ndarray]:
    """{weight name: array}; Keras 3 files list a layer's arrays in the order
    its build() creates them: a conv's kernel, then its bias."""
    if isinstance(values, dict):
        return dict(values)
    names = [v.name for v in layer.weights]
    if isinstance(layer, keras.layers.Conv2D) and len(values) == len(names) + 1:
        names.append("bias")
    if len(values) != len(names):
        raise _mismatch_error(
            path, f"layer {layer.name!r} has {len(names)} weights "
            f"({', '.join(names)}), the file has {len(values)}."
        )
    return dict(zip(names, values))


def _bn_name(conv_name: str) -> str | None:
    return conv_name[: -len("_conv")] + "_bn" if conv_name.endswith("_conv") else None


def _fold_into_bn(
    bn: keras.layers.BatchNormalization, values: dict[str, np.ndarray], stored: StoredWeights
) -> None:
    """Moves the preceding conv's bias and the file's epsilon into BN stats.

    The file's epsilon is what it says (legacy files, `.keras` configs); for
    a `.weights.h5` file, keras.applications' where the conv has a bias.
    """
    conv = stored.layers.get(bn.name[: -len("_bn")] + "_conv") if bn.name.endswith("_bn") else None
    bias = None
    if isinstance(conv, dict):
        bias = conv.get("bias")
    elif conv is not None and len(conv) == 2:  # kernel, bias
        bias = conv[1]
    source_epsilon = stored.epsilons.get(
        bn.name, LEGACY_BN_EPSILON if bias is not None else bn.epsilon
    )
    if "moving_mean" in values and bias is not None:
        values["moving_mean"] = values["moving_mean"] - bias
    if "moving_variance" in values:
        values["moving_variance"] = values["moving_variance"] + (source_epsilon - bn.epsilon)
