"""keras_resnet: the Deep Residual Networks of He et al. (2015) for Keras 3.

Importing the package defines its names and does nothing else: each name is
imported from its module on first use (PEP 562), so `import keras_resnet`
imports neither Keras nor TensorFlow, reads no flags and leaves the process's
streams alone; each program (keras_resnet.programs) prepares its own process.

A `model.keras` that train.py wrote holds this package's layers and learning
rate schedule: load it with `keras_resnet.load_model(path)`, which registers
them with Keras first.
"""

import importlib
import importlib.util
import os
from typing import TYPE_CHECKING

from keras_resnet.version import __version__

# TensorFlow runs its CPU convolutions through oneDNN by default only on CPUs
# with AVX-512 VNNI/BF16 or AMX; on others (AVX2 hosts) its own kernels train
# a ResNet about 2x slower (benchmarks/RESULTS.md). Asking for oneDNN changes
# nothing where it is on already, and nothing once TensorFlow is imported; a
# user's own TF_ENABLE_ONEDNN_OPTS wins. It is the one setting the import
# makes, as it must come before TensorFlow is imported.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

# The public names by the module that defines them.
_PUBLIC = {
    "models.applications": (
        "Plain110", "Plain18", "Plain20", "Plain32", "Plain34", "Plain44", "Plain56", "ResNet101",
        "ResNet110", "ResNet1202", "ResNet152", "ResNet18", "ResNet20", "ResNet32", "ResNet34",
        "ResNet44", "ResNet50", "ResNet56"
    ),
    "models.complexity": ("count_flops", "count_params"),
    "models.convert": ("from_torchvision",),
    "models.features": ("FeatureInfo", "feature_info", "feature_model"),
    "models.folding": ("fold_batch_norm",),
    "models.layers": ("ZeroPadShortcut",),
    "models.preprocessing": (
        "MeanSubtraction", "caffe_preprocessing", "compute_pixel_mean", "decode_predictions",
        "get_preprocessing", "preprocess_input", "with_preprocessing"
    ),
    "models.pretrained": ("PretrainedWeights", "list_weights"),
    "models.resnet": (
        "FAMILIES", "ResNet", "VARIANTS", "canonical_name", "get_model", "list_models"
    ),
    "training.recipes": ("RecipeSchedule",),
}
_MODULE_OF = {name: module for module, names in _PUBLIC.items() for name in names}
# The modules whose import registers this package's Keras objects (layers,
# the learning-rate schedule): a saved model refers to them by name.
_REGISTERING = ("models.applications", "models.preprocessing", "training.recipes")

if TYPE_CHECKING:  # what a type checker sees: the same names, imported
    from keras_resnet.models.applications import Plain110
    from keras_resnet.models.applications import Plain18
    from keras_resnet.models.applications import Plain20
    from keras_resnet.models.applications import Plain32
    from keras_resnet.models.applications import Plain34
    from keras_resnet.models.applications import Plain44
    from keras_resnet.models.applications import Plain56
    from keras_resnet.models.applications import ResNet101
    from keras_resnet.models.applications import ResNet110
    from keras_resnet.models.applications import ResNet1202
    from keras_resnet.models.applications import ResNet152
    from keras_resnet.models.applications import ResNet18
    from keras_resnet.models.applications import ResNet20
    from keras_resnet.models.applications import ResNet32
    from keras_resnet.models.applications import ResNet34
    from keras_resnet.models.applications import ResNet44
    from keras_resnet.models.applications import ResNet50
    from keras_resnet.models.applications import ResNet56
    from keras_resnet.models.complexity import count_flops
    from keras_resnet.models.complexity import count_params
    from keras_resnet.models.convert import from_torchvision
    from keras_resnet.models.features import FeatureInfo
    from keras_resnet.models.features import feature_info
    from keras_resnet.models.features import feature_model
    from keras_resnet.models.folding import fold_batch_norm
    from keras_resnet.models.layers import ZeroPadShortcut
    from keras_resnet.models.preprocessing import MeanSubtraction
    from keras_resnet.models.preprocessing import caffe_preprocessing
    from keras_resnet.models.preprocessing import compute_pixel_mean
    from keras_resnet.models.preprocessing import decode_predictions
    from keras_resnet.models.preprocessing import get_preprocessing
    from keras_resnet.models.preprocessing import preprocess_input
    from keras_resnet.models.preprocessing import with_preprocessing
    from keras_resnet.models.pretrained import PretrainedWeights
    from keras_resnet.models.pretrained import list_weights
    from keras_resnet.models.resnet import FAMILIES
    from keras_resnet.models.resnet import ResNet
    from keras_resnet.models.resnet import VARIANTS
    from keras_resnet.models.resnet import canonical_name
    from keras_resnet.models.resnet import get_model
    from keras_resnet.models.resnet import list_models
    from keras_resnet.training.recipes import RecipeSchedule


# Where the modules of releases before the layout of subpackages went: the old
# names still give them (`keras_resnet.augment` is keras_resnet.data.augment).
_MOVED = {
    "applications": "models.applications", "blocks": "models.blocks", "layers": "models.layers",
    "fused": "models.fused", "folding": "models.folding", "complexity": "models.complexity",
    "weights": "models.weights", "downloads": "models.downloads",
    "preprocessing": "models.preprocessing", "metadata": "models.metadata",
    "sources": "data.sources", "images": "data.images", "augment": "data.augment",
    "pipeline": "data.pipeline", "run": "training.run", "recipes": "training.recipes",
    "callbacks": "training.callbacks", "backup": "training.backup",
    "distribute": "training.distribute", "artefacts": "evaluation.artefacts",
    "cli": "programs.cli", "commands": "programs",
}


def load_model(path: str | os.PathLike, **kwargs):
    """`keras.saving.load_model(path, **kwargs)`, this package's Keras
    objects registered first: a model.keras that train.py wrote holds them."""
    for module in _REGISTERING:
        importlib.import_module(f"{__name__}.{module}")
    import keras

    return keras.saving.load_model(path, **kwargs)


def __getattr__(name):
    """A public name on first use, from its module; `keras_resnet.export`,
    `keras_resnet.data`, ...: a subpackage on first use, so that the import
    of one needs only what that one needs (TensorFlow, for export)."""
    if name in _MODULE_OF:
        return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    if name in _MOVED:
        return importlib.import_module(f"{__name__}.{_MOVED[name]}")
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_MODULE_OF))


# The public API; a static type checker re-exports only what this lists (PEP 561).
__all__ = [
    "Plain18",
    "Plain20",
    "Plain32",
    "Plain34",
    "Plain44",
    "Plain56",
    "Plain110",
    "ResNet18",
    "ResNet20",
    "ResNet32",
    "ResNet34",
    "ResNet44",
    "ResNet50",
    "ResNet56",
    "ResNet101",
    "ResNet110",
    "ResNet152",
    "ResNet1202",
    "count_flops",
    "count_params",
    "from_torchvision",
    "FeatureInfo",
    "feature_info",
    "feature_model",
    "fold_batch_norm",
    "ZeroPadShortcut",
    "FAMILIES",
    "VARIANTS",
    "ResNet",
    "canonical_name",
    "get_model",
    "list_models",
    "MeanSubtraction",
    "caffe_preprocessing",
    "compute_pixel_mean",
    "decode_predictions",
    "get_preprocessing",
    "list_weights",
    "PretrainedWeights",
    "preprocess_input",
    "with_preprocessing",
    "RecipeSchedule",
    "load_model",
    "__version__",
]
