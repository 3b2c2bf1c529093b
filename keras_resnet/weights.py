"""Pretrained weights: the published keras.applications files, and weight files.

keras.applications' ResNet50/101/152 (converted from the authors' Caffe models)
have a bias on every conv and BN epsilon 1.001e-5. Our convs have no bias (BN
follows, as in the authors' models) and epsilon 1e-5. Both differences fold
exactly into the BN statistics:
    BN(conv(x) + b)  with mean m      ==  BN(conv(x))  with mean m - b
    (var + eps_file) with epsilon eps ==  (var + eps_file - eps) + eps
Every format is matched to the model by layer name and loaded this way: the
legacy HDF5 layout of the published files, and Keras 3 `.weights.h5`/`.keras`
files (of keras.applications models or of ours).

Downloads go to Keras' own cache, as `keras.utils.get_file` picks it:
`$KERAS_HOME/models`, else `~/.keras/models` (`/tmp/.keras/models` where that
is not writable). A file is streamed to a staging file and md5-checked before
it is renamed into place, so the cache never holds a partial or unverified
file. `keras.utils.get_file` is not used: it has no timeout (a stalled server
hangs it), writes into the cache directly and keeps a file whose hash is wrong.
"""

import dataclasses
import hashlib
import http.client
import io
import json
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile

import h5py
import keras
import numpy as np

from keras_resnet import files

# Where keras.applications publishes the ResNet weights.
WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
# A base URL (http, https or file) used instead of the published locations:
# every file, weights and imagenet_class_index.json, is looked up there by name.
URL_VARIABLE = "KERAS_RESNET_WEIGHTS_URL"
# Seconds a download may wait for the server (per connection or read).
TIMEOUT_VARIABLE = "KERAS_RESNET_DOWNLOAD_TIMEOUT"
DEFAULT_TIMEOUT_S = 15.0
# Models with published 'imagenet' weights.
PUBLISHED = ("resnet50", "resnet101", "resnet152")
# md5 of each published file, as keras.applications lists them.
PUBLISHED_MD5 = {
    "resnet50_weights_tf_dim_ordering_tf_kernels.h5": "2cb95161c43110f7111970584f804107",
    "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5": "4d473c1dd8becc155b73f8504c6f6626",
    "resnet101_weights_tf_dim_ordering_tf_kernels.h5": "f1aeb4b969a6efcfb50fad2f0c20cfc5",
    "resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5": "88cf7a10940856eca736dc7b7e228a21",
    "resnet152_weights_tf_dim_ordering_tf_kernels.h5": "100835be76be38e30d865e96f2aaae62",
    "resnet152_weights_tf_dim_ordering_tf_kernels_notop.h5": "ee4c566cf9a93f14d82f913c2dc6dd0c",
    "imagenet_class_index.json": "c2c37ea517e94d9795004a39431a14cb",
}
# BN epsilon of keras.applications' ResNets, which wrote the published files.
LEGACY_BN_EPSILON = 1.001e-5
# Head layers a file may hold that a model built with include_top=False lacks.
HEAD_LAYERS = ("predictions",)
ACCEPTED_FILES = (
    "Accepted: a Keras '.weights.h5' or '.keras' file, or an HDF5 file in the "
    "keras.applications layout."
)


class DownloadError(OSError):
    """A file could not be downloaded; nothing was cached."""


class _NotWeights(Exception):
    """A readable file that is no weights file (the reason, without the path)."""


class _Interrupted(Exception):
    """A network failure, raised with no OSError in its chain, so that
    `files.atomic_path` does not report it as a failed write."""


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


# Downloads -----------------------------------------------------------------


def cache_dir() -> str:
    """Keras' download folder for models, read when a file is needed."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    home = os.path.expanduser(home)
    try:
        os.makedirs(os.path.join(home, "models"), exist_ok=True)
    except OSError:
        pass
    if not os.access(home, os.W_OK):  # where keras.utils.get_file falls back to
        home = os.path.join("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir(), ".keras")
    return os.path.join(home, "models")


def base_url(default: str) -> str:
    """`$KERAS_RESNET_WEIGHTS_URL` if set, else `default`; ends with "/"."""
    url = os.environ.get(URL_VARIABLE) or default
    if urllib.parse.urlsplit(url).scheme not in ("http", "https", "file"):
        raise ValueError(
            f"{URL_VARIABLE} must be an http://, https:// or file:// URL of a "
            f"folder. Received: {URL_VARIABLE}={url!r}"
        )
    return url if url.endswith("/") else url + "/"


def _timeout() -> float:
    value = os.environ.get(TIMEOUT_VARIABLE) or DEFAULT_TIMEOUT_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ValueError(
            f"{TIMEOUT_VARIABLE} must be a number of seconds > 0. "
            f"Received: {TIMEOUT_VARIABLE}={value!r}"
        )
    return seconds


def fetch(name: str, include_top: bool) -> str:
    """The published weights of `name`: downloaded once, md5-verified."""
    suffix = "" if include_top else "_notop"
    fname = f"{name}_weights_tf_dim_ordering_tf_kernels{suffix}.h5"
    builder = name.replace("resnet", "ResNet")
    top = "" if include_top else ", include_top=False"
    return download(fname, WEIGHTS_URL, f"{builder}(weights='/path/to/{fname}'{top})")


def download(fname: str, default_base: str, local_use: str) -> str:
    """The cached copy of the published file `fname`, downloaded if absent.

    The file comes from `$KERAS_RESNET_WEIGHTS_URL` (else `default_base`) +
    `fname` and must have the md5 `PUBLISHED_MD5[fname]`; a cached copy that
    does not is removed and downloaded again, as keras.utils.get_file does.
    `local_use` shows how to pass a local copy instead, for error messages.
    """
    url = base_url(default_base) + fname
    expected = PUBLISHED_MD5[fname]
    path = os.path.join(cache_dir(), fname)
    if os.path.exists(path):
        if _md5(path) == expected:
            return path
        os.remove(path)
    instead = (
        f"Download it where you can and pass its path: {local_use}; or set "
        f"{URL_VARIABLE} to a folder (http://, https:// or file://) that holds it."
    )
    timeout = _timeout()
    try:
        with files.atomic_path(path) as staging:
            got = _stream(url, staging, timeout)
            if got != expected:
                raise ValueError(
                    f"The file downloaded from {url} has md5 {got}, not the "
                    f"expected {expected}: it was refused and not cached. {instead}"
                )
    except _Interrupted as e:
        raise DownloadError(f"Could not download {url}: {e}. {instead}") from None
    return path


def _md5(path: str) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _stream(url: str, path: str, timeout: float) -> str:
    """Copies `url` into `path` and returns its md5."""
    response = _network(timeout, urllib.request.urlopen, url, timeout=timeout)
    digest, received = hashlib.md5(), 0
    with response, open(path, "wb") as out:
        length = response.headers.get("Content-Length")
        while chunk := _network(timeout, response.read, 1 << 20):
            out.write(chunk)
            digest.update(chunk)
            received += len(chunk)
    if length is not None and received != int(length):
        raise _Interrupted(f"the connection closed after {received} of {length} bytes")
    return digest.hexdigest()


def _network(seconds: float, call, *args, **kwargs):
    """`call(...)`, its network errors raised as `_Interrupted`; `seconds`
    is the timeout, for the message."""
    try:
        return call(*args, **kwargs)
    except (OSError, http.client.HTTPException) as e:
        reason = _reason(e, seconds)
    raise _Interrupted(reason)  # outside `except`: no OSError context


def _reason(error: Exception, timeout: float) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP error {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError) and isinstance(error.reason, Exception):
        error = error.reason
    if isinstance(error, TimeoutError):
        return f"no answer within {timeout:g} s (see {TIMEOUT_VARIABLE})"
    if isinstance(error, http.client.RemoteDisconnected):
        return "the server closed the connection without answering"
    return str(error) or type(error).__name__


# Weight files ----------------------------------------------------------------


@dataclasses.dataclass
class StoredWeights:
    """What a weights file holds, by layer name.

    `layers` maps a layer name to {weight name: array} (legacy files name
    their weights) or to its arrays in creation order (Keras 3 files).
    `epsilons` maps BN layer names to the epsilon of the model that wrote
    the file, where the file says (`.keras` configs; legacy files).
    """

    layers: dict
    epsilons: dict


def load(model, weights, variant_name, include_top):
    """Loads `weights` ("imagenet" or a path) into `model`, all or nothing."""
    path = fetch(variant_name, include_top) if weights == "imagenet" else weights
    assign(model, path, read_weights(path, model))


def read_weights(path: str, model=None) -> StoredWeights:
    """Reads any accepted weights file; ValueError naming it if it cannot.

    `model` maps the groups of Keras 3 files from before Keras stored layer
    names in them (its own files: same layer order).
    """
    try:
        if zipfile.is_zipfile(path):
            return _read_keras_archive(path, model)
        if h5py.is_hdf5(path):
            with h5py.File(path, "r") as f:
                if "layer_names" in f.attrs or "model_weights" in f:
                    return _read_legacy(f)
                if "layers" in f or "vars" in f:
                    return StoredWeights(_read_keras_h5(f, model), {})
            raise _NotWeights("an HDF5 file with neither Keras layout")
        reason = "neither an HDF5 file nor a zip archive"
    except _NotWeights as e:
        raise ValueError(f"Weights file {path} is not usable: {e}. {ACCEPTED_FILES}") from None
    except (OSError, EOFError, KeyError, RuntimeError, zipfile.BadZipFile, json.JSONDecodeError) as e:
        reason = str(e).split("\n")[0] or type(e).__name__
    raise ValueError(f"Weights file {path} is corrupt or unreadable: {reason}. {ACCEPTED_FILES}")


def _decode(names):
    return [n.decode("utf8") if isinstance(n, bytes) else str(n) for n in names]


def _read_legacy(f) -> StoredWeights:
    """The legacy layout: root attribute `layer_names`; one group per layer
    whose attribute `weight_names` lists its datasets ("conv1_conv/kernel:0").
    Whole-model files keep the same under the group `model_weights`."""
    root = f if "layer_names" in f.attrs else f["model_weights"]
    layers = {}
    for layer_name in _decode(root.attrs["layer_names"]):
        group = root[layer_name]
        names = _decode(group.attrs.get("weight_names", []))
        if names:
            layers[layer_name] = {
                n.split("/")[-1].split(":")[0]: np.asarray(group[n]) for n in names
            }
    return StoredWeights(layers, dict.fromkeys(layers, LEGACY_BN_EPSILON))


def _read_keras_archive(path, model) -> StoredWeights:
    """A `.keras` zip: `model.weights.h5`, and BN epsilons from `config.json`."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        if "model.weights.h5" not in names:
            raise _NotWeights("a zip archive without model.weights.h5, so no .keras file")
        data = io.BytesIO(archive.read("model.weights.h5"))
        config = json.loads(archive.read("config.json")) if "config.json" in names else {}
    epsilons = {}

    def walk(node):  # the config nests models in models
        if isinstance(node, dict):
            if node.get("class_name") == "BatchNormalization":
                epsilons[node["config"]["name"]] = node["config"]["epsilon"]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    with h5py.File(data, "r") as f:
        return StoredWeights(_read_keras_h5(f, model), epsilons)


def _read_keras_h5(f, model) -> dict:
    """{layer name: [arrays]} of a Keras 3 weights file.

    Keras 3 stores a layer's variables as `layers/<class>_<n>/vars/<i>`; since
    Keras 3.x (3.15 does) the `vars` group carries the layer's name as an
    attribute, nested models included. Older files are mapped through the
    groups `model.save_weights` would write.
    """
    by_position = _keras_groups(model) if model is not None else {}
    layers = {}

    def visit(key, item):  # returns None, or visititems would stop
        if not (isinstance(item, h5py.Group) and key.startswith("layers/") and key.endswith("/vars")):
            return
        name = item.attrs.get("name")
        name = name.decode() if isinstance(name, bytes) else name
        name = name or by_position.get(key[: -len("/vars")])
        values = [np.asarray(item[k]) for k in sorted(item, key=int)]
        if name is None or not values:
            return
        if name in layers:
            raise _NotWeights(f"it has two layers named {name!r}")
        layers[name] = values

    f.visititems(visit)
    return layers


def _snake_case(name):
    """Keras' group name for a class: "Conv2D" -> "conv2d"."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _keras_groups(model) -> dict:
    """{group path: layer name} of what `model.save_weights` writes: Keras
    names a layer's group by its class and position (`layers/conv2d_3`)."""
    groups, used = {}, {}
    for layer in model.layers:
        base = _snake_case(type(layer).__name__)
        groups[base if base not in used else f"{base}_{used[base]}"] = layer.name
        used[base] = used.get(base, 0) + 1
    return {f"layers/{group}": name for group, name in groups.items()}


def _mismatch(path, message):
    return ValueError(f"Weights file {path} does not fit the model: {message}")


def _blocks_per_stage(names) -> tuple:
    """Blocks per stage, from keras.applications-style names `conv3_block4_...`."""
    stages = {}
    for name in names:
        match = re.match(r"conv(\d+)_block(\d+)_", name)
        if match:
            stage, block = int(match.group(1)), int(match.group(2))
            stages[stage] = max(stages.get(stage, 0), block)
    return tuple(stages[s] for s in sorted(stages))


def assign(model, path: str, stored: StoredWeights):
    """Assigns `stored` to `model` by layer name, folding conv biases and BN
    epsilon; refuses (assigning nothing) unless every weight fits."""
    weighted = [layer for layer in model.layers if layer.weights]
    ours, theirs = _blocks_per_stage(l.name for l in weighted), _blocks_per_stage(stored.layers)
    if theirs and ours != theirs:
        raise _mismatch(
            path, f"the file is for another depth: its stages have {theirs} "
            f"blocks, the model's have {ours}."
        )
    names = {layer.name for layer in weighted}
    extra = [n for n in stored.layers if n not in names and n not in HEAD_LAYERS]
    if extra:
        raise _mismatch(
            path, f"the file has layer {extra[0]!r}, which the model lacks "
            f"({len(extra)} such layers)."
        )
    assignments = []
    for layer in weighted:
        if layer.name not in stored.layers:
            hint = " (the file has no top: use include_top=False)" if layer.name in HEAD_LAYERS else ""
            raise _mismatch(path, f"layer {layer.name!r} is missing from the file{hint}.")
        values = _named(layer, stored.layers[layer.name], path)
        if isinstance(layer, keras.layers.BatchNormalization):
            _fold_into_bn(layer, values, stored)
        elif isinstance(layer, keras.layers.Conv2D) and not layer.use_bias and "bias" in values:
            if _bn_name(layer.name) not in names:
                raise _mismatch(
                    path, f"layer {layer.name!r} has a conv bias in the file, which "
                    "the model's bias-free conv cannot take (no BN follows to fold it into)."
                )
            del values["bias"]  # folded into the BN that follows
        for variable in layer.weights:
            value = values.pop(variable.name, None)
            if value is None:
                raise _mismatch(path, f"layer {layer.name!r} weight {variable.name!r} is missing from the file.")
            if tuple(value.shape) != tuple(variable.shape):
                raise _mismatch(
                    path, f"layer {layer.name!r} weight {variable.name!r} has shape "
                    f"{tuple(variable.shape)}, the file has {tuple(value.shape)}."
                )
            assignments.append((variable, value))
        if values:
            raise _mismatch(path, f"layer {layer.name!r} has no weight {sorted(values)[0]!r}, which the file has.")
    for variable, value in assignments:
        variable.assign(value.astype(variable.dtype))


def _named(layer, values, path) -> dict:
    """{weight name: array}; Keras 3 files list a layer's arrays in the order
    its build() creates them: a conv's kernel, then its bias."""
    if isinstance(values, dict):
        return dict(values)
    names = [v.name for v in layer.weights]
    if isinstance(layer, keras.layers.Conv2D) and len(values) == len(names) + 1:
        names.append("bias")
    if len(values) != len(names):
        raise _mismatch(
            path, f"layer {layer.name!r} has {len(names)} weights "
            f"({', '.join(names)}), the file has {len(values)}."
        )
    return dict(zip(names, values))


def _bn_name(conv_name):
    return conv_name[: -len("_conv")] + "_bn" if conv_name.endswith("_conv") else None


def _fold_into_bn(bn, values, stored):
    """Moves the preceding conv's bias and the file's epsilon into BN stats.

    The file's epsilon is what it says (legacy files, `.keras` configs); for
    a `.weights.h5` file, keras.applications' where the conv has a bias.
    """
    conv_name = bn.name[: -len("_bn")] + "_conv" if bn.name.endswith("_bn") else None
    conv = stored.layers.get(conv_name)
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
