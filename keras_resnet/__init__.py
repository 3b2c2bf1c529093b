"""keras_resnet: the Deep Residual Networks of He et al. (2015) for Keras 3."""

import importlib
import importlib.util
import os

# TensorFlow runs its CPU convolutions through oneDNN by default only on CPUs
# with AVX-512 VNNI/BF16 or AMX; on others (AVX2 hosts) its own kernels train
# a ResNet about 2x slower (benchmarks/RESULTS.md). Asking for oneDNN changes
# nothing where it is on already, and nothing once TensorFlow is imported; a
# user's own TF_ENABLE_ONEDNN_OPTS wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

# train.py, evaluate.py, export and their console scripts: their logging, and
# one line if TensorFlow is missing, before Keras imports it just below.
from keras_resnet.programs import cli  # noqa: E402  (imports neither Keras nor TensorFlow)

cli.prepare_program()

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
# Registers the learning-rate schedule that train.py's .keras files refer to.
from keras_resnet.training.recipes import RecipeSchedule

__version__ = "0.1.0"


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
    """`keras_resnet.export`, `keras_resnet.data`, ...: a subpackage on first
    use (PEP 562), so that `import keras_resnet` gives the models without
    importing what the others need (TensorFlow, for export)."""
    if name in _MOVED:
        return importlib.import_module(f"{__name__}.{_MOVED[name]}")
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
