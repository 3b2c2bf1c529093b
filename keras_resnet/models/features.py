"""Backbone features: the output of every stage, for detection and segmentation.

The paper's detectors (Sec. 4.3, Appendix A: Faster R-CNN) read a ResNet's
stages, conv2_x to conv5_x of Table 1; feature pyramids read all four.
`feature_model` gives them as one `keras.Model` whose output is a dict keyed by
stage, "conv2" to "conv5" (CIFAR nets, Sec. 4.2: "conv2" to "conv4"), each the
output of the stage's last block (`conv{k}_block{n}_out`), as keras-hub's
`pyramid_outputs` and timm's `features_only=True` do. `feature_info` says each
stage's layer, stride and channels without building anything, as timm's
`feature_info`.
"""

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

import keras

from keras_resnet.models import resnet
from keras_resnet.models.layers import channel_axis

# Every block ends in a ReLU named `{name}_out` (blocks.py), its name being
# `conv{stage}_block{i}` (resnet._stages, stages numbered from 2 as in Table 1).
_BLOCK_OUT = re.compile(r"conv(\d+)_block(\d+)_out")
# The last layer of the ImageNet stem (resnet._stem); CIFAR nets have no pool.
_IMAGENET_STEM = "pool1_pool"
_FIRST_STAGE = 2


@dataclasses.dataclass(frozen=True, kw_only=True)
class FeatureInfo:
    """One stage's output.

    Attributes:
        stage: the key of `feature_model`'s output dict, e.g. "conv3".
        layer: the layer it is the output of, e.g. "conv3_block4_out".
        stride: input size / feature size: an H x W input gives a
            ceil(H / stride) x ceil(W / stride) feature map.
        channels: the feature map's depth.
    """

    stage: str
    layer: str
    stride: int
    channels: int


def feature_info(
    model_or_name: keras.Model | str, stages: Sequence[str] | str | None = None
) -> list[FeatureInfo]:
    """The stages `feature_model` gives for the same arguments, first to last.

    Args:
        model_or_name: a name of `list_models()` ("resnet50"), read from the
            table without building the network, or a model as `feature_model`
            takes it (a feature model too).
        stages: stage names ("conv2", ...), one or several; None: all.
    """
    if isinstance(model_or_name, str):
        every = _table_info(model_or_name)
        owner = resnet.canonical_name(model_or_name)
    else:
        every = _model_info(model_or_name)
        owner = model_or_name.name
    return _selected(every, stages, owner)


def feature_model(
    model_or_name: keras.Model | str, stages: Sequence[str] | str | None = None, **kwargs: Any
) -> keras.Model:
    """A model whose output is a dict: {stage name: that stage's last block's output}.

    Args:
        model_or_name: one of our networks (any builder, with or without the
            top, any weights; or keras.applications' ResNet50/101/152, whose
            layer names ours share), or a name of `list_models()`. The feature
            model shares its layers and weights (nothing is copied) and takes
            its inputs: a network built for a fixed `input_shape` keeps it.
        stages: stage names, one or several: "conv2" to "conv5" (strides 4,
            8, 16, 32) for the ImageNet family, "conv2" to "conv4" (strides
            1, 2, 4) for CIFAR; None: all. Output keys keep the network's order.
        **kwargs: with a name only: the arguments of `get_model` (`weights=`,
            `shortcut=`, ...). `include_top` defaults to False, so the input
            takes any size (`input_shape=(None, None, 3)`).

    Returns:
        A `keras.Model` named "{network name}_features".
    """
    if isinstance(model_or_name, str):
        feature_info(model_or_name, stages)  # refuses a bad stage before building anything
        model = resnet.get_model(model_or_name, **{"include_top": False, **kwargs})
    elif kwargs:
        raise ValueError(
            "Builder arguments go with a model name, not a built model. Received: "
            + ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        )
    else:
        model = model_or_name
    info = feature_info(model, stages)
    outputs = {stage.stage: model.get_layer(stage.layer).output for stage in info}
    # Keras walks the graph recursively: ResNet-1202 is 4,000 layers deep.
    with resnet._recursion_limit(10 * len(model.layers) + 1000):
        return keras.Model(model.input, outputs, name=f"{model.name}_features")


def _stride(family: resnet.Family, stage: int) -> int:
    """The stride of stage `stage` (2 = conv2): each stage after the first
    halves the resolution, down to the family's total stride (Table 1:
    conv2_x at 56x56, conv5_x at 7x7 of 224; Sec. 4.2: 32, 16, 8 of 32)."""
    last = _FIRST_STAGE + len(family.widths) - 1
    return family.min_size // 2 ** (last - stage)


def _table_info(name: str) -> list[FeatureInfo]:
    """Every stage of the variant `name`, from the table."""
    spec = resnet.VARIANTS[resnet.canonical_name(name)]
    family = resnet.FAMILIES[spec.family]
    expansion = 4 if spec.block == "bottleneck" else 1  # Fig. 5 right: 1x1 to 4 * width.
    return [
        FeatureInfo(stage=f"conv{k}", layer=f"conv{k}_block{blocks}_out",
                    stride=_stride(family, k), channels=width * expansion)
        for k, (width, blocks) in enumerate(
            zip(family.widths, spec.blocks_per_stage), start=_FIRST_STAGE)
    ]


def _model_info(model: Any) -> list[FeatureInfo]:
    """Every stage of `model`, from its layers' names and shapes."""
    if not isinstance(model, keras.Model):
        raise ValueError(
            "Expected a keras.Model or a name of keras_resnet.list_models(). "
            f"Received: {model!r}"
        )
    last_block: dict[int, int] = {}
    for layer in model.layers:
        found = _BLOCK_OUT.fullmatch(layer.name)
        if found:
            stage, block = int(found[1]), int(found[2])
            last_block[stage] = max(last_block.get(stage, 0), block)
    if not last_block:
        raise ValueError(_not_a_resnet(model))
    names = {layer.name for layer in model.layers}
    family = resnet.FAMILIES["imagenet" if _IMAGENET_STEM in names else "cifar"]
    info = []
    for stage, block in sorted(last_block.items()):
        layer = f"conv{stage}_block{block}_out"
        channels = model.get_layer(layer).output.shape[channel_axis()]
        info.append(FeatureInfo(stage=f"conv{stage}", layer=layer,
                                stride=_stride(family, stage), channels=channels))
    output = model.output
    if isinstance(output, dict) and set(output) <= {stage.stage for stage in info}:
        info = [stage for stage in info if stage.stage in output]  # a feature model's own
    return info


def _not_a_resnet(model: keras.Model) -> str:
    """Why `model` has no features, and the network inside it if it wraps one."""
    message = (
        f"Model {model.name!r} has no ResNet stages (layers named "
        "conv2_block1_out, ...): backbone features need a keras_resnet network "
        "(or keras.applications' ResNet50/101/152) or a name of list_models()."
    )
    inner = [layer.name for layer in model.layers
             if isinstance(layer, keras.Model) and any(
                 _BLOCK_OUT.fullmatch(sub.name) for sub in layer.layers)]
    if inner:
        message += (
            f" Its layer {inner[0]!r} is one: pass model.get_layer({inner[0]!r}), "
            "whose inputs are the preprocessed images."
        )
    return message


def _selected(
    every: list[FeatureInfo], stages: Sequence[str] | str | None, owner: str
) -> list[FeatureInfo]:
    """The stages of `every` named in `stages` (all if None), in `every`'s order."""
    if stages is None:
        return every
    wanted = [stages] if isinstance(stages, str) else list(stages)
    known = [info.stage for info in every]
    for stage in wanted:
        if stage not in known:
            raise ValueError(
                f"Unknown stage {stage!r} of {owner}. Available: {', '.join(known)}. "
                f"Received: stages={stages!r}"
            )
    if not wanted:
        raise ValueError(f"`stages` names no stage. Available: {', '.join(known)}. "
                         f"Received: stages={stages!r}")
    return [info for info in every if info.stage in wanted]
