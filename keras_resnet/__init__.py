"""keras_resnet: the Deep Residual Networks of He et al. (2015) for Keras 3.

`import keras_resnet` defines the package's names and registers its Keras
objects (its layers and learning-rate schedule, which a saved model names):
it reads no flags, sets no environment variable and leaves the process's
streams alone. In the package's own programs (keras_resnet.launch says which
processes those are) each name is imported on first use instead (PEP 562):
Keras and TensorFlow come only after the program has prepared its process
(keras_resnet.programs.cli.prepare_program).
"""

import importlib
import importlib.util
from typing import TYPE_CHECKING

from keras_resnet import launch
from keras_resnet.version import __version__

# The public names by the module that defines them.
_PUBLIC = {
    "models.applications": (
        "Plain110", "Plain18", "Plain20", "Plain32", "Plain34", "Plain44", "Plain56", "ResNet101",
        "ResNet110", "ResNet1202", "ResNet152", "ResNet18", "ResNet20", "ResNet32", "ResNet34",
        "ResNet44", "ResNet50", "ResNet56",
    ),
    "models.complexity": ("count_flops", "count_params"),
    "models.convert": ("from_torchvision",),
    "models.features": ("FeatureInfo", "feature_info", "feature_model"),
    "models.folding": ("fold_batch_norm",),
    "models.layers": ("ZeroPadShortcut",),
    "models.preprocessing": (
        "MeanSubtraction", "caffe_preprocessing", "compute_pixel_mean", "decode_predictions",
        "get_preprocessing", "preprocess_input", "with_preprocessing",
    ),
    "models.pretrained": ("PretrainedWeights", "list_weights"),
    "models.resnet": ("FAMILIES", "ResNet", "VARIANTS", "canonical_name", "get_model", "list_models"),
    "training.recipes": ("RecipeSchedule",),
}
_MODULE_OF = {name: module for module, names in _PUBLIC.items() for name in names}

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

if not launch.is_program():
    for _module, _names in _PUBLIC.items():
        _defined = importlib.import_module(f"{__name__}.{_module}")
        globals().update({_name: getattr(_defined, _name) for _name in _names})
    del _module, _names, _defined


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


def __getattr__(name):
    """A public name on first use (in a program), from its module;
    `keras_resnet.export`, `keras_resnet.data`, ...: a subpackage on first
    use, so that `import keras_resnet` gives the models without importing
    what the others need (TensorFlow, for export)."""
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
    "__version__",
]
