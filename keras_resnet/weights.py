"""Pretrained weights: the published keras.applications files, and weight files.

keras.applications' ResNet50/101/152 (converted from the authors' Caffe models)
have a bias on every conv and BN epsilon 1.001e-5. Our convs have no bias (BN
follows, as in the authors' models) and epsilon 1e-5. Both differences fold
exactly into the BN statistics:
    BN(conv(x) + b)  with mean m      ==  BN(conv(x))  with mean m - b
    (var + eps_file) with epsilon eps ==  (var + eps_file - eps) + eps
"""

import io
import os
import re
import tempfile
import zipfile

import h5py
import keras
import numpy as np

BASE_URL = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
# md5 of (with top, without top), as keras.applications publishes them.
PUBLISHED = {
    "resnet50": ("2cb95161c43110f7111970584f804107", "4d473c1dd8becc155b73f8504c6f6626"),
    "resnet101": ("f1aeb4b969a6efcfb50fad2f0c20cfc5", "88cf7a10940856eca736dc7b7e228a21"),
    "resnet152": ("100835be76be38e30d865e96f2aaae62", "ee4c566cf9a93f14d82f913c2dc6dd0c"),
}
# Where downloads are cached; None is Keras' cache (~/.keras, or $KERAS_HOME).
CACHE_DIR = None
# BN epsilon of the models that wrote legacy (keras.applications) files.
LEGACY_BN_EPSILON = 1.001e-5
# Head layers a file may hold that a model built with include_top=False lacks.
HEAD_LAYERS = ("predictions",)


def exists(path):
    return os.path.exists(path)


def check_published(name, kw):
    """Raises ValueError unless `weights="imagenet"` fits the model `kw` builds."""
    if name not in PUBLISHED:
        raise ValueError(
            f"No published 'imagenet' weights for {name}; models that have them: "
            f"{', '.join(PUBLISHED)}. Use weights=None or the path to a weights file."
        )
    if kw["include_top"] and kw["classes"] != 1000:
        raise ValueError(
            "If using weights='imagenet' with include_top=True, `classes` "
            f"should be 1000. Received: classes={kw['classes']}"
        )
    if kw["shortcut"] != "B" or kw["version"] != "v1":
        raise ValueError(
            f"The published {name} weights are for shortcut='B', version='v1'. "
            f"Received: shortcut={kw['shortcut']!r}, version={kw['version']!r}"
        )


def fetch(name, include_top):
    """Downloads (once) and md5-verifies the published weights of `name`."""
    suffix = "" if include_top else "_notop"
    fname = f"{name}_weights_tf_dim_ordering_tf_kernels{suffix}.h5"
    return download(fname, BASE_URL + fname, PUBLISHED[name][0 if include_top else 1])


def download(fname, origin, md5):
    """`origin`, downloaded once into the Keras cache and md5-verified."""
    cache_dir = _cache_dir()
    try:
        return keras.utils.get_file(
            fname,
            origin,
            cache_subdir="models",
            file_hash=md5,
            hash_algorithm="md5",
            cache_dir=cache_dir,
        )
    except ValueError as e:
        # keras leaves the corrupt download in its cache: never keep it.
        bad = os.path.join(cache_dir, "models", fname)
        if os.path.exists(bad):
            os.remove(bad)
        raise ValueError(
            f"The file downloaded from {origin} does not have the expected md5 "
            f"{md5}; it was deleted. ({e})"
        ) from e
    except Exception as e:
        raise OSError(
            f"Could not download {origin} ({e}). Download it by hand and pass "
            "its path instead."
        ) from e


def _cache_dir():
    """The download cache; created first, as Keras skips a missing folder."""
    cache = os.path.expanduser(CACHE_DIR or keras.config.keras_home())
    try:
        os.makedirs(cache, exist_ok=True)
    except OSError:
        pass
    if not os.access(cache, os.W_OK):  # where Keras itself falls back to
        cache = os.path.join(tempfile.gettempdir(), ".keras")
    return cache


def load(model, weights, variant_name, include_top):
    """Loads `weights` ("imagenet" or a path) into `model`, all or nothing."""
    path = fetch(variant_name, include_top) if weights == "imagenet" else weights
    if is_legacy_file(path):
        load_legacy(model, path)
    else:
        load_keras_file(model, path)


def is_legacy_file(path):
    """Whether `path` is an HDF5 file in the legacy Keras weights layout."""
    if not h5py.is_hdf5(path):
        return False
    with h5py.File(path, "r") as f:
        return "layer_names" in f.attrs or (
            "model_weights" in f and "layer_names" in f["model_weights"].attrs
        )


def _decode(names):
    return [n.decode("utf8") if isinstance(n, bytes) else str(n) for n in names]


def read_legacy(path):
    """{layer name: {weight name ("kernel", "gamma", ...): array}} of a file.

    The layout: root attribute `layer_names`; one group per layer whose
    attribute `weight_names` lists its datasets ("conv1_conv/kernel:0", ...).
    Whole-model files keep the same under the group `model_weights`.
    """
    with h5py.File(path, "r") as f:
        root = f if "layer_names" in f.attrs else f["model_weights"]
        layers = {}
        for layer_name in _decode(root.attrs["layer_names"]):
            group = root[layer_name]
            names = _decode(group.attrs.get("weight_names", []))
            if names:
                layers[layer_name] = {
                    n.split("/")[-1].split(":")[0]: np.asarray(group[n]) for n in names
                }
    return layers


def _mismatch(path, message):
    return ValueError(f"Weights file {path} does not fit the model: {message}")


def load_legacy(model, path, source_epsilon=LEGACY_BN_EPSILON):
    """Loads a legacy-layout file by layer name, folding biases and epsilon."""
    stored = read_legacy(path)
    weighted = [layer for layer in model.layers if layer.weights]
    extra = [n for n in stored if n not in {l.name for l in weighted}]
    extra = [n for n in extra if n not in HEAD_LAYERS]
    if extra:
        raise _mismatch(
            path, f"the file has layer {extra[0]!r}, which the model lacks "
            f"({len(extra)} such layers; is the file for another depth?)."
        )
    assignments = []
    for layer in weighted:
        if layer.name not in stored:
            raise _mismatch(path, f"layer {layer.name!r} is missing from the file.")
        values = dict(stored[layer.name])
        if isinstance(layer, keras.layers.BatchNormalization):
            _fold_into_bn(layer, values, stored, source_epsilon)
        elif isinstance(layer, keras.layers.Conv2D) and not layer.use_bias:
            values.pop("bias", None)  # folded into the BN that follows
        names = [v.name for v in layer.weights]
        if sorted(names) != sorted(values):
            raise _mismatch(
                path, f"layer {layer.name!r} has weights {sorted(names)}, "
                f"the file has {sorted(values)}."
            )
        for variable in layer.weights:
            value = values[variable.name]
            if tuple(value.shape) != tuple(variable.shape):
                raise _mismatch(
                    path, f"layer {layer.name!r} weight {variable.name!r} has shape "
                    f"{tuple(variable.shape)}, the file has {tuple(value.shape)}."
                )
            assignments.append((variable, value))
    for variable, value in assignments:
        variable.assign(value.astype(variable.dtype))


def _fold_into_bn(bn, values, stored, source_epsilon):
    """Moves the preceding conv's bias and the file's epsilon into BN stats."""
    conv_name = bn.name[: -len("_bn")] + "_conv" if bn.name.endswith("_bn") else None
    bias = stored.get(conv_name, {}).get("bias")
    if "moving_mean" in values and bias is not None:
        values["moving_mean"] = values["moving_mean"] - bias
    if "moving_variance" in values:
        values["moving_variance"] = values["moving_variance"] + (
            source_epsilon - bn.epsilon
        )


def _snake_case(name):
    """Keras' group name for a class: "Conv2D" -> "conv2d"."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _keras_layout(path):
    """{dataset path: shape} of the weights in a `.weights.h5`/`.keras` file."""
    if path.endswith(".keras"):
        with zipfile.ZipFile(path) as archive:
            if "model.weights.h5" not in archive.namelist():
                return {}
            data = io.BytesIO(archive.read("model.weights.h5"))
        return _keras_layout_of(h5py.File(data, "r"))
    return _keras_layout_of(h5py.File(path, "r"))


def _keras_layout_of(h5file):
    layout = {}

    def visit(key, item):  # returns None, or visititems would stop
        if isinstance(item, h5py.Dataset):
            layout[key] = tuple(item.shape)

    with h5file:
        h5file.visititems(visit)
    return layout


def _expected_keras_layout(model):
    """The layout `model.save_weights` writes, with each path's layer name.

    Keras names a layer's group by its class and position, not its name
    (`layers/conv2d_3/vars/0`); this maps those groups back to layer names.
    """
    layout, used = {}, {}
    for layer in model.layers:
        base = _snake_case(type(layer).__name__)
        group = base if base not in used else f"{base}_{used[base]}"
        used[base] = used.get(base, 0) + 1
        for i, variable in enumerate(layer.weights):
            layout[f"layers/{group}/vars/{i}"] = (layer.name, tuple(variable.shape))
    return layout


def load_keras_file(model, path):
    """Loads a Keras 3 `.weights.h5` or `.keras` file, refusing partial loads.

    Keras matches these files to a model by position, not by name, so the
    file's layout is checked against the model's first, layer by layer.
    """
    if not (path.endswith(".weights.h5") or path.endswith(".keras")):
        raise ValueError(
            f"Unrecognised weights file: {path}. Accepted: a Keras '.weights.h5' "
            "or '.keras' file, or an HDF5 file in the keras.applications layout."
        )
    found = _keras_layout(path)
    expected = _expected_keras_layout(model)
    for key, (layer_name, shape) in expected.items():
        if key not in found:
            raise _mismatch(path, f"no weights for layer {layer_name!r} ({key}).")
        if found[key] != shape:
            raise _mismatch(
                path, f"layer {layer_name!r} expects shape {shape}, the file "
                f"has {found[key]} at {key}."
            )
    extra = sorted(set(found) - set(expected))
    if extra:
        raise _mismatch(
            path, f"the file has weights the model lacks, first {extra[0]} "
            f"({len(extra)} in all; is the file for a deeper model?)."
        )
    model.load_weights(path)
