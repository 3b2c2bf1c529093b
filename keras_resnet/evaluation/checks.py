"""The checks that refuse a broken model before it is scored or exported.

keras_resnet.evaluation.artefacts runs them as it loads an artefact, and
keras_resnet.export against what it exports:
- `check_weights`: every weight of a Keras model is finite (the check
  every weights loader makes, keras_resnet.models.weights.check_finite);
- `check_finite`: its outputs are, and (`check_unfolded`) those of both the
  model and its BN-folded copy, as either can hide what the other shows;
- `check_info`: the metadata agrees with the model (class count, input size,
  preprocessing layer: `preprocessing_of`, found in nested models too).

`pixel_mean_size` tells the image size a per-pixel mean fits (CIFAR, Sec. 4.2).
"""

from typing import TYPE_CHECKING

import keras
import numpy as np

from keras_resnet.models import preprocessing
from keras_resnet.models import weights as weights_lib

if TYPE_CHECKING:
    from keras_resnet.evaluation.artefacts import Artefact


def check_finite(outputs: np.ndarray, what: str) -> None:
    """Refuses (ValueError) a model whose `outputs` (a row per image) hold NaN
    or inf: a diverged run's NaN weights, an overflow; not scored or exported."""
    outputs = np.asarray(outputs)
    bad = ~np.isfinite(outputs.reshape(len(outputs), -1)).all(axis=1)
    if bad.any():
        raise ValueError(
            f"{what} gives non-finite outputs (NaN or inf) for {int(bad.sum())} of "
            f"{len(bad)} images; its weights may hold NaN (a diverged run) or overflow"
        )


def check_weights(model: keras.Model, what: str) -> None:
    """Refuses (ValueError) a model with a NaN or infinite weight, naming the
    variable: outputs alone do not show it, as oneDNN's convolutions on some
    CPUs turn a NaN kernel's outputs finite."""
    for variable in model.variables:
        weights_lib.check_finite(keras.ops.convert_to_numpy(variable), what, variable.path,
                                 "not scored or exported")


def check_info(artefact: "Artefact") -> None:
    """Refuses (ValueError, naming the file) metadata that contradicts the
    model it came with: a wrong class count, input size or preprocessing
    would be scored or served wrongly without an error."""
    info, path = artefact.info, artefact.path
    if info is None:
        return
    if info.num_classes != artefact.num_classes:
        raise ValueError(f"{path}: its metadata names {info.num_classes} classes; the model "
                         f"has {artefact.num_classes} outputs")
    if artefact.image_size is not None and info.image_size != artefact.image_size:
        raise ValueError(f"{path}: its metadata says image_size {info.image_size}; the model "
                         f"takes {artefact.image_size}x{artefact.image_size} images")
    if artefact.model is not None:
        found = preprocessing_of(artefact.model)
        if found != info.preprocessing:
            raise ValueError(f"{path}: its metadata says preprocessing {info.preprocessing!r}; "
                             f"the model has {found or 'no MeanSubtraction layer'}")


def _layers(model: keras.Model):
    """Every layer of `model`, those of nested models included."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _layers(layer)


def _mean_subtraction(model: keras.Model) -> preprocessing.MeanSubtraction | None:
    return next((l for l in _layers(model) if isinstance(l, preprocessing.MeanSubtraction)), None)


def preprocessing_of(model: keras.Model) -> str | None:
    """The normalisation of the model's MeanSubtraction ("caffe",
    "torchvision": pretrained.NORMALIZATIONS) or "pixel_mean" (a training
    set's mean); None without one."""
    layer = _mean_subtraction(model)
    return None if layer is None else layer.normalization


def pixel_mean_size(model: keras.Model) -> tuple[int, int] | None:
    """(height, width) of a per-pixel mean inside `model` (CIFAR, Sec. 4.2),
    which fits images of that size only; None for a per-channel one."""
    layer = _mean_subtraction(model)
    if layer is None or len(layer.mean_shape) != 3:
        return None
    shape = layer.mean_shape[1:] if layer.data_format == "channels_first" else layer.mean_shape[:2]
    return tuple(shape)


def check_unfolded(model: keras.Model, folded: keras.Model, size: int, path: str) -> None:
    """Refuses a model whose outputs are not finite on two seeded images
    although its BN-folded copy's are: finite weights can still overflow
    (every kernel x 1e30 gives NaN), and the folded copy can hide it (its
    fused conv, bias and ReLU gave uniform scores there), so that evaluation
    would score what export refuses. Both are checked, on the same images."""
    probe = np.random.RandomState(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
    check_finite(model.predict_on_batch(probe), f"{path} (with its BatchNormalization)")
    check_finite(folded.predict_on_batch(probe), path)
