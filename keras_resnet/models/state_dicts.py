"""torchvision and timm ResNet state dicts, read and assigned to our layers.

A state dict comes as a `.safetensors` file (timm's `model.safetensors`, or
`safetensors.torch.save_file(model.state_dict(), path)`), read through
safetensors' NumPy API, or as a `torch.save` file (torchvision's `.pth`,
keras_resnet.models.torch_files), so PyTorch is not needed. The names map one
to one onto keras.applications' layers:

    conv1, bn1                       conv1_conv, conv1_bn
    layer{s}.{i}.conv{k}, .bn{k}     conv{s+1}_block{i+1}_{k}_conv, _{k}_bn
    layer{s}.0.downsample.0, .1      conv{s+1}_block1_0_conv, _0_bn  (option B)
    fc                               predictions

Conv kernels go from PyTorch's (out, in, h, w) to Keras' (h, w, in, out), the fc
weight is transposed, and BN's weight, bias, running_mean and running_var are
gamma, beta, moving_mean and moving_variance; num_batches_tracked is ignored.
Both use BN epsilon 1e-5 and pad strided convs symmetrically, so the outputs
are the same. torchvision's (and timm's) ResNet-50/101/152 put the stride on
the 3x3 conv: they load into `version="v1.5"` nets. Building a model from a
state dict is keras_resnet.models.convert's `from_torchvision`.
"""

import os
import re
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from keras_resnet.errors import ArgumentError
from keras_resnet.models import torch_files
from keras_resnet.models.finite import check_finite
from keras_resnet.models.variants import VARIANTS
from keras_resnet.models.variants import canonical_name

# The torchvision ResNets by (blocks per stage, block type): Table 1's nets.
ARCHITECTURES = {
    (spec.blocks_per_stage, spec.block): name
    for name, spec in VARIANTS.items()
    if spec.family == "imagenet" and spec.residual
}
_BN = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
       "moving_variance": "running_var"}
_IGNORED = ".num_batches_tracked"
_PARAMETERS = {"weight": 0, "bias": 1, "running_mean": 2, "running_var": 3}
_STAGE_LAYER = re.compile(r"conv(\d)_block(\d+)_(\d)_(conv|bn)$")
# A ResNet's block numbers have a few digits: a longer one is no block of one
# (and int() of 4,301 digits raises).
_MAX_DIGITS = 4
_BLOCK_KEY = re.compile(r"layer([1-4])\.(\d{1,%d})\." % _MAX_DIGITS)
# The safetensors dtypes read (NumPy has none for BF16 and the F8 types).
SAFETENSORS_DTYPES = ("F16", "F32", "F64", "I8", "I16", "I32", "I64", "U8", "U16", "U32", "U64",
                      "BOOL")


def is_state_dict_file(path: str) -> bool:
    """Whether `path` is a file this module reads: a `.safetensors` file or
    a `torch.save` file (keras_resnet.models.torch_files), or named as one
    (`.pth`, `.pt`: PyTorch's legacy format is refused there, by name)."""
    return os.path.isfile(path) and (path.endswith((".safetensors", ".pth", ".pt"))
                                     or torch_files.is_torch_file(path))


def top_classes(path: str) -> int | None:
    """The classes of the state dict's classifier (rows of `fc.weight`); None
    if it has none."""
    fc = read_tensors(path).get("fc.weight")
    return None if fc is None else int(fc.shape[0])


def load_state_dict(model: keras.Model, path: str, name: str) -> None:
    """Loads the state dict at `path` into `model`, a `name` ("resnet50")
    built with shortcut "B" (and version "v1.5" for bottleneck nets), all or
    nothing; its classifier only if `model` has one."""
    tensors = read_tensors(path)
    layers = {layer.name for layer in model.layers}
    if "predictions" not in layers:
        tensors = {k: v for k, v in tensors.items() if not k.startswith("fc.")}
    if VARIANTS[name].block == "bottleneck" and "conv3_block1_2_conv" in layers:
        if tuple(model.get_layer("conv3_block1_2_conv").strides) != (2, 2):
            raise ValueError(
                f"{path}: torchvision's and timm's {name} put the stride on the 3x3 conv: "
                "build the model with version='v1.5'"
            )
    assign_tensors(model, path, tensors, name, inferred=False)


def read_tensors(path: str) -> dict[str, np.ndarray]:
    """The state dict's tensors, without BN's num_batches_tracked."""
    return {k: v for k, v in _read(path).items() if not k.endswith(_IGNORED)}


def assign_tensors(model: keras.Model, path: str, tensors: dict[str, np.ndarray], name: str,
            inferred: bool) -> None:
    """Assigns `tensors` to `model`'s variables (all or nothing): ValueError
    naming the first tensor without a place, missing, or of another shape."""
    places = _places(model)
    for key in sorted(tensors, key=_natural):
        if key not in places:
            raise _no_place_error(path, key, name, inferred)
    for key, (variable, to_keras) in places.items():
        if key not in tensors:
            raise ValueError(
                f"{path}: tensor {key!r}, which {name} needs, is missing from the file"
            )
        expected = _torch_shape(variable.shape, to_keras)
        if tuple(tensors[key].shape) != expected:
            raise ValueError(
                f"{path}: tensor {key!r} has shape {tuple(tensors[key].shape)}, but "
                f"{name} needs {expected}; is the file a ResNet of other widths or input channels?"
            )
    values = {}
    for key, (variable, to_keras) in places.items():  # all checked before any is assigned
        with np.errstate(over="ignore"):  # an overflow to inf is refused next, by name
            values[key] = _to_keras(tensors[key], to_keras).astype(variable.dtype, copy=False)
        check_finite(values[key], path, f"tensor {key!r}", "not loaded")
    for key, (variable, _) in places.items():
        variable.assign(values[key])


def _read(path: str) -> dict[str, np.ndarray]:
    """The tensors of the safetensors or `torch.save` file `path`, as NumPy arrays."""
    if not os.path.isfile(path):
        kind = "is a directory" if os.path.isdir(path) else "does not exist"
        raise ArgumentError("path", path, f"{kind}: it must be a .safetensors or torch.save (.pth) file")
    if torch_files.is_torch_file(path) or path.endswith((".pth", ".pt")):
        return torch_files.read_state_dict(path)
    try:
        import safetensors
    except ImportError:
        raise ImportError(
            "Reading torchvision/timm checkpoints needs safetensors: pip install safetensors"
        ) from None
    try:
        with safetensors.safe_open(path, framework="np") as f:
            dtypes = {key: f.get_slice(key).get_dtype() for key in f.keys()}
            refused = [key for key, dtype in dtypes.items() if dtype not in SAFETENSORS_DTYPES]
            tensors = {} if refused else {key: f.get_tensor(key) for key in dtypes}
    except (safetensors.SafetensorError, OSError, ValueError, TypeError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(
            f"{path}: not a readable safetensors file ({reason}); save a state dict with "
            "safetensors.torch.save_file(model.state_dict(), path)"
        ) from None
    if refused:
        raise ValueError(
            f"{path}: tensor {refused[0][:100]!r} has dtype {dtypes[refused[0]]}; accepted: "
            f"{', '.join(SAFETENSORS_DTYPES)} (convert the state dict to float32 first)"
        )
    return tensors


def checked_name(name: str) -> str:
    """`name` as the table spells it, if it is one of torchvision's ResNets."""
    try:
        key = canonical_name(name)
    except ValueError:
        key = None
    if key not in ARCHITECTURES.values():
        raise ArgumentError(
            "name", name, f"must be None or one of {', '.join(ARCHITECTURES.values())}"
        )
    return key


def infer_name(path: str, tensors: dict[str, Any]) -> str:
    """The ResNet whose blocks per stage and block type the file's tensors have."""
    blocks = [0, 0, 0, 0]
    for key in tensors:
        match = _BLOCK_KEY.match(key)
        if match:
            stage = int(match[1]) - 1
            blocks[stage] = max(blocks[stage], int(match[2]) + 1)
    block = "bottleneck" if "layer1.0.conv3.weight" in tensors else "basic"
    name = ARCHITECTURES.get((tuple(blocks), block))
    if name is None:
        known = "; ".join(f"{n}: {b} {list(s)}" for (s, b), n in ARCHITECTURES.items())
        raise ValueError(
            f"{path}: its tensors have {block} blocks {blocks} in layer1 to layer4, which "
            f"is no torchvision/timm ResNet. Accepted: {known}"
        )
    return name


def _torch_prefix(layer_name: str) -> str | None:
    """The state dict's module name of our layer `layer_name` (None: none)."""
    fixed = {"conv1_conv": "conv1", "conv1_bn": "bn1", "predictions": "fc"}
    if layer_name in fixed:
        return fixed[layer_name]
    match = _STAGE_LAYER.match(layer_name)
    if match is None:
        return None
    stage, block, k, kind = match.groups()
    module = f"layer{int(stage) - 1}.{int(block) - 1}"
    if k == "0":  # the projection shortcut
        return f"{module}.downsample.{0 if kind == 'conv' else 1}"
    return f"{module}.{kind}{k}"


def _places(model: keras.Model) -> dict[str, tuple[Any, str | None]]:
    """State-dict name -> (our variable, how its tensor turns into it), in layer order."""
    places = {}
    for layer in model.layers:
        prefix = _torch_prefix(layer.name)
        if prefix is None or not layer.weights:
            continue
        for variable in layer.weights:
            short = variable.name.split("/")[-1]
            if isinstance(layer, keras.layers.BatchNormalization):
                places[f"{prefix}.{_BN[short]}"] = (variable, None)
            elif short == "kernel":
                kind = "conv" if len(variable.shape) == 4 else "dense"
                places[f"{prefix}.weight"] = (variable, kind)
            else:
                places[f"{prefix}.{short}"] = (variable, None)
    return places


def _to_keras(tensor: np.ndarray, kind: str | None) -> np.ndarray:
    """A PyTorch tensor in Keras' layout: conv (out, in, h, w) -> (h, w, in, out)."""
    if kind == "conv":
        return np.transpose(tensor, (2, 3, 1, 0))
    if kind == "dense":
        return np.transpose(tensor)
    return np.asarray(tensor)


def _torch_shape(shape: Sequence[int], kind: str | None) -> tuple[int, ...]:
    """The PyTorch shape of a tensor that becomes a Keras variable of `shape`."""
    if kind == "conv":
        return tuple(shape[i] for i in (3, 2, 0, 1))
    if kind == "dense":
        return tuple(reversed(shape))
    return tuple(shape)


def _natural(key: str) -> list[tuple[int, int, str]]:
    """Sort key of PyTorch's module order: layer3.9 before layer3.10, conv1,
    bn1, conv2, ..., downsample; weight, bias, running_mean, running_var."""
    order = []
    for part in key.split("."):
        module = re.fullmatch(r"(conv|bn)(\d)", part)
        if part.isdigit() and len(part) <= _MAX_DIGITS:
            order.append((int(part), 0, ""))
        elif module:
            order.append((int(module[2]), module[1] == "bn", ""))
        else:
            order.append((11 if part == "fc" else 10, _PARAMETERS.get(part, 4), part))
    return order


def _no_place_error(path: str, key: str, name: str, inferred: bool) -> ValueError:
    """The error for a tensor of the file that `name` has no variable for."""
    spec = VARIANTS[name]
    hint = ""
    match = _BLOCK_KEY.match(key)
    if match:
        stage = int(match[1])
        blocks = spec.blocks_per_stage[stage - 1]
        if int(match[2]) >= blocks:
            hint = f" (it has layer{stage}.0 to layer{stage}.{blocks - 1})"
        elif spec.block == "basic":
            hint = " (its blocks are basic: conv1/bn1 and conv2/bn2 only)"
    question = ("is the file a ResNet of another depth?" if not inferred
                else "is the file a torchvision/timm ResNet?")
    return ValueError(f"{path}: tensor {key[:100]!r} has no place in {name}{hint}; {question}")
