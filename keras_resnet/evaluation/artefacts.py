"""One loader for every model evaluation and export start from.

An `Artefact` is a model that maps float32 RGB batches in [0, 255] to class
probabilities, with the `ModelInfo` (keras_resnet.models.metadata) it carries:
- a `.keras` file (train.py's carries its preprocessing and its ModelInfo; a
  user's own may carry none), checked whole before Keras reads it: its
  members' declared sizes (keras_resnet.models.metadata.check_keras_archive),
  their CRCs, its config's nesting and BN epsilons;
- a named model (`keras_resnet.list_models()`) with `weights`, their
  normalisation (the weights table's) put in front; its ModelInfo is built here;
- a SavedModel (keras_resnet.export's: the `metadata` signature) or a
  `.tflite` file (its "keras_resnet" metadata entry).

Loading checks (keras_resnet.evaluation.checks) what every program would
otherwise score or export wrongly: every weight of a Keras model is finite,
its outputs and its BN-folded copy's are, and the metadata agrees with the
model (class count, input size, preprocessing layer).
"""

import contextlib
import dataclasses
import glob
import os
import zipfile
import zlib
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from keras_resnet import models
from keras_resnet.data import augment
from keras_resnet.data import sources
from keras_resnet.evaluation import checks
from keras_resnet.models import folding
from keras_resnet.models import metadata
from keras_resnet.models import preprocessing
from keras_resnet.models.metadata import ModelInfo
from keras_resnet.models.resolved import EvalTransform
from keras_resnet.models.resolved import ResolvedWeights
from keras_resnet.models.resolved import resolve_weights
from keras_resnet.training import recipes

TFLITE_METADATA = "keras_resnet"  # the name of the .tflite metadata entry
METADATA_SIGNATURE = "metadata"  # the SavedModel signature that returns it


@dataclasses.dataclass(frozen=True, kw_only=True)
class Artefact:
    """A model to evaluate or export: `predict` maps RGB [0, 255] batches
    [N, H, W, 3] to probabilities [N, classes]."""

    path: str  # or "NAME:WEIGHTS" for a named model
    predict: Callable[[np.ndarray], np.ndarray]
    image_size: int | None  # the fixed input side; None: any size
    num_classes: int
    info: ModelInfo | None  # None: the artefact carries no metadata
    model: keras.Model | None = None  # a Keras artefact's model
    handle: Any = None  # keeps a SavedModel's objects alive
    # How its weights were scored where they are a named set (the table's):
    # the "weights" protocol (keras_resnet.evaluation.protocols).
    transform: EvalTransform | None = None


# -------------------------------------------------------------------- Keras


def load_keras_model(path: str) -> keras.Model:
    """The model in a `.keras` file, uncompiled (no optimizer is needed, nor
    its schedule's class).

    Raises ValueError naming the file if it is missing, not a `.keras` file,
    or corrupt or truncated (a `.keras` file is a zip archive: an incomplete
    copy or download has no central directory, a damaged one fails a CRC).
    """
    if not os.path.isfile(path):
        raise ValueError(f"Model file does not exist: {path!r}")
    if not path.endswith(".keras"):
        raise ValueError(f"Model file must be a .keras file (as train.py writes). Received: {path!r}")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        raise _corrupt_error(path, e) from None
    with archive:
        # What the members declare, before testzip inflates them all; the
        # config (BN epsilons, nesting) before Keras builds from it.
        metadata.check_keras_archive(path, archive)
        try:
            damaged = archive.testzip()
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
            raise _corrupt_error(path, e) from None
        if damaged is not None:
            raise ValueError(f"Model file {path!r} is corrupt: its member {damaged!r} fails its CRC check")
        metadata.read_keras_config(path, archive)
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # Keras raises many types for a bad file.
        reason = " ".join(str(e).split())[:300]
        raise ValueError(f"Cannot load model file {path!r} ({type(e).__name__}: {reason})") from None


def _corrupt_error(path: str, error: Exception) -> ValueError:
    return ValueError(f"Model file {path!r} is corrupt or truncated: not a complete .keras "
                      f"(zip) archive ({' '.join(str(error).split())})")


def _softmax_output(model: keras.Model) -> bool:
    last = model.layers[-1]
    while isinstance(last, keras.Model):
        last = last.layers[-1]
    return getattr(last, "activation", None) is keras.activations.softmax


def _with_any_input_size(model: keras.Model) -> keras.Model:
    """The same model and weights, taking images of any height and width."""
    config = model.get_config()

    def free(layer_configs):
        for layer in layer_configs:
            if layer["class_name"] == "InputLayer":
                shape = layer["config"]["batch_shape"]
                layer["config"]["batch_shape"] = [shape[0], None, None, shape[-1]]
            elif layer["class_name"] == "Functional":
                free(layer["config"]["layers"])

    free(config["layers"])
    clone = keras.Model.from_config(config)
    clone.set_weights(model.get_weights())
    return clone


def keras_artefact(model: keras.Model, path: str, info: ModelInfo | None, strategy=None) -> Artefact:
    """Runs a Keras model, on every replica of `strategy` if one is given.

    A batch is padded to a multiple of the replicas (MirroredStrategy cannot
    give a replica an empty batch on TF 2.21) and the padding dropped. On one
    device a functional model predicts with its BN folded into the
    convolutions (keras_resnet.models.folding): the same scores up to float
    rounding, 1.06x (ResNet-50) to 1.19x (ResNet-20) as fast on CPU as
    with BN (benchmarks/RESULTS.md). `Artefact.model` stays the model as given.
    """
    checks.check_weights(model, path)
    replicas = strategy.num_replicas_in_sync if strategy else 1
    softmax = _softmax_output(model)
    # Under a strategy the folded copy's variables would have to be made in
    # its scope, on every replica; multi-replica evaluation keeps BN.
    predictor = folding.fold_batch_norm(model) if (
        replicas == 1 and folding.is_functional(model)) else model

    def predict(images):
        n = len(images)
        pad = -n % replicas
        if pad:
            images = np.concatenate([images, np.repeat(images[-1:], pad, axis=0)])
        if replicas == 1:
            # A call of the compiled predict step: `predict` would also build
            # a tf.data pipeline for the batch and tear it down, which took
            # ResNet-20 twice as long on 100 CIFAR images (benchmarks/RESULTS.md).
            out = predictor.predict_on_batch(images)
        else:  # `predict` splits the batch across the replicas.
            out = model.predict(images, batch_size=len(images), verbose=0)[:n]
        return out if softmax else keras.ops.convert_to_numpy(keras.ops.softmax(out))

    size = model.input_shape[1] or (info.image_size if info else None)
    if predictor is not model and size:
        checks.check_unfolded(model, predictor, size, path)
    return Artefact(path=path, predict=predict, image_size=model.input_shape[1],
                    num_classes=model.output_shape[-1], info=info, model=model)


def _scope(strategy):
    return strategy.scope() if strategy else contextlib.nullcontext()


def load_keras(path: str, *, strategy=None, any_size: bool = False) -> Artefact:
    """A `.keras` file with its ModelInfo (None if it has none)."""
    with _scope(strategy):
        model = load_keras_model(path)
        if any_size:
            model = _with_any_input_size(model)
    return keras_artefact(model, path, metadata.read_keras(path), strategy)


def named_info(name: str, image_size: int | None = None, num_classes: int | None = None,
               weights: ResolvedWeights | None = None) -> ModelInfo:
    """The ModelInfo of `get_model(name, weights=weights)` with its weights'
    preprocessing in front (caffe mode where unknown, for He initialisation
    too): the family's default size and classes (unnamed), the test view of
    the family's default recipe's augmentation."""
    name = models.canonical_name(name)
    family = models.VARIANTS[name].family
    recipe = recipes.get_recipe(recipes.DEFAULT_RECIPES[family])
    return ModelInfo(
        model=name, family=family,
        image_size=image_size or models.FAMILIES[family].default_size,
        test_view=augment.get_augmentation(recipe.augment).test_view,
        class_names=sources.index_names(num_classes or models.FAMILIES[family].classes),
        preprocessing=(weights and weights.normalization) or "caffe",
    )


def load_named(name: str, weights: str | None = None, *, image_size: int | None = None,
               strategy=None, any_size: bool = False) -> Artefact:
    """`get_model(name, weights=weights)` (He initialisation for None) with
    its weights' preprocessing (`named_info`), at `image_size`
    (default: the family's) or, `any_size`, taking any size; the options
    that named weights need (e.g. version="v1.5") are theirs, and so is the
    artefact's evaluation transform."""
    resolved = resolve_weights(name, weights)
    shape = (None, None, 3) if any_size else None if image_size is None else (image_size, image_size, 3)
    with _scope(strategy):
        model = models.get_model(name, weights=resolved, input_shape=shape, **resolved.options)
        info = named_info(name, image_size, model.output_shape[-1], resolved)
        model = preprocessing.with_preprocessing(
            model, preprocessing.normalization_layer(info.preprocessing))
    artefact = keras_artefact(model, f"{name}:{weights}", info, strategy)
    return dataclasses.replace(artefact, transform=resolved.transform)


# ------------------------------------------------------ SavedModel, TFLite


def _saved_model_dir(path: str) -> str:
    """`path`, or its newest numbered version (TF Serving layout)."""
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        return path
    versions = _versions(path)
    if not versions:
        held = {name: _versions(os.path.join(path, name)) for name in sorted(os.listdir(path))}
        held = ", ".join(f"{os.path.join(path, name)!r} (version{'s' * (len(v) > 1)} "
                         f"{', '.join(map(str, v))})"
                         for name, v in held.items() if v)
        raise ValueError(f"No SavedModel in {path!r} (no saved_model.pb, nor version folders)"
                         + (f"; it holds the model folders {held}: give one of them" if held else ""))
    return os.path.join(path, str(versions[-1]))


def _versions(folder: str) -> list[int]:
    """The numbers of `folder`'s SavedModel versions (TF Serving layout), in order."""
    return sorted(
        int(os.path.basename(d)) for d in glob.glob(os.path.join(folder, "*"))
        if os.path.basename(d).isdigit() and os.path.exists(os.path.join(d, "saved_model.pb"))
    )


def saved_model_info(loaded, path: str) -> ModelInfo | None:
    """The ModelInfo a loaded SavedModel returns from its `metadata`
    signature, or None if it has none."""
    import tensorflow as tf

    if METADATA_SIGNATURE not in loaded.signatures:
        return None
    try:
        text = loaded.signatures[METADATA_SIGNATURE]()[METADATA_SIGNATURE].numpy()
    except tf.errors.NotFoundError:  # its signature reads the asset file
        raise ValueError(
            f"SavedModel {path!r} lacks its metadata file assets/{metadata.FILE_NAME} (copied "
            "without its assets/ folder?): copy the whole version folder, assets/ included"
        ) from None
    return ModelInfo.from_json(text, path)


def load_saved_model(path: str) -> Artefact:
    import tensorflow as tf

    loaded = tf.saved_model.load(_saved_model_dir(path))
    if "serving_default" not in loaded.signatures:
        raise ValueError(f"SavedModel {path!r} has no serving_default signature")
    serve = loaded.signatures["serving_default"]
    (key, spec), = serve.structured_input_signature[1].items()

    def predict(images):
        return serve(**{key: tf.constant(images, tf.float32)})["probabilities"].numpy()

    return Artefact(path=path, predict=predict, image_size=spec.shape[1],
                    num_classes=serve.structured_outputs["probabilities"].shape[-1],
                    info=saved_model_info(loaded, path), handle=loaded)


def tflite_info(content: bytes, path: str) -> ModelInfo | None:
    """The ModelInfo in a `.tflite` flatbuffer's "keras_resnet" metadata
    entry, or None if it has none."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(content, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() == TFLITE_METADATA.encode():
            return ModelInfo.from_json(model.Buffers(entry.Buffer()).DataAsNumpy().tobytes(), path)
    return None


def load_tflite(path: str) -> Artefact:
    with open(path, "rb") as f:
        return tflite_artefact(f.read(), path)


def tflite_artefact(content: bytes, path: str) -> Artefact:
    """The `.tflite` model `content` (read from `path`), run by LiteRT."""
    from ai_edge_litert.interpreter import Interpreter

    # LiteRT's default is one thread: all cores run int8 ResNet-50 ~1.9x faster (benchmarks/bench_tflite.py).
    try:
        interpreter = Interpreter(model_content=content, num_threads=os.cpu_count())
    except (ValueError, RuntimeError) as e:  # "The model is not a valid Flatbuffer buffer"
        raise ValueError(f"{path!r} is not a readable .tflite model, corrupt or truncated? "
                         f"({' '.join(str(e).split())})") from None
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()

    def predict(images):
        interpreter.resize_tensor_input(inp["index"], list(images.shape))
        interpreter.allocate_tensors()
        x = images
        scale, zero = inp["quantization"]
        if scale:
            x = np.round(x / scale + zero)
        interpreter.set_tensor(inp["index"], x.astype(inp["dtype"]))
        interpreter.invoke()
        y = interpreter.get_tensor(out["index"]).astype("float32")
        scale, zero = out["quantization"]
        return (y - zero) * scale if scale else y

    return Artefact(path=path, predict=predict, image_size=int(inp["shape"][1]),
                    num_classes=int(out["shape"][-1]), info=tflite_info(content, path))


# ---------------------------------------------------------------- any kind


def load_artefact(path: str | None = None, model: str | None = None, weights: str | None = None, *,
         image_size: int | None = None, strategy=None, any_size: bool = False) -> Artefact:
    """The artefact at `path` (.keras, SavedModel folder, .tflite), or the
    model named `model` with `weights` at `image_size`."""
    if (path is None) == (model is None):
        raise ValueError(
            "Give a model path (a .keras file, a SavedModel folder or a .tflite "
            f"file) or a model name, not both and not neither. Received: path={path!r}, model={model!r}"
        )
    if model is not None:
        return load_named(model, weights, image_size=image_size, strategy=strategy, any_size=any_size)
    if weights is not None or image_size is not None:
        raise ValueError(
            "weights and image_size go with a model name; a model file has its own. "
            f"Received: weights={weights!r}, image_size={image_size!r}"
        )
    artefact = _load_path(path, strategy, any_size)
    checks.check_info(artefact)
    return artefact


def _load_path(path: str, strategy, any_size: bool) -> Artefact:
    if path.endswith(".keras"):
        return load_keras(path, strategy=strategy, any_size=any_size)
    if not os.path.exists(path):
        raise ValueError(f"Model path does not exist: {path!r}")
    if path.endswith(".tflite"):
        return load_tflite(path)
    if os.path.isdir(path):
        return load_saved_model(path)
    raise ValueError(
        f"Unrecognised model path {path!r}: expected a .keras file, a SavedModel folder or a .tflite file"
    )
