"""The networks, on any Keras backend: this package imports only Keras (and
TensorFlow's fused BN kernel where TensorFlow is the backend, fused.py).

variants.py: the table of networks (paper Table 1, Sec. 4.2); resnet.py: the
generic builder; arguments.py: the checks of its arguments; applications.py: the
per-variant builders with keras.applications' signature; blocks.py,
layers.py: blocks, shortcuts A/B/C and our layers; folding.py: BN folded into
the convolutions; complexity.py: parameters and FLOPs; pretrained.py: every
named set of published weights, in one table; weights.py, downloads.py:
weights files and their verified download; finite.py: the check of every
loader that refuses non-finite weights; convert.py, state_dicts.py,
torch_files.py, torch_pickle.py: torchvision/timm state dicts (.safetensors,
torch.save files); features.py:
the stages' outputs; preprocessing.py: the normalisations and per-pixel
means, decode_predictions; metadata.py: `ModelInfo`, what every saved model
says about itself.
"""

import importlib

# The table and the builders, as `keras_resnet.models.get_model` and the
# like: given on first use (PEP 562), so that importing a module of this
# package (downloads.py, for the programs' start-up) does not import Keras.
__all__ = ["FAMILIES", "VARIANTS", "Family", "ResNet", "Variant", "canonical_name", "classifier",
           "get_model", "list_models"]


def __getattr__(name):
    if name in __all__:
        return getattr(importlib.import_module("keras_resnet.models.resnet"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
