"""`resolve_weights`: the one place that decides whether `weights` is a name
of the table, a file or None, and what goes with it (keras_resnet.models.resolved)."""

import os

import pytest

import keras_resnet
from keras_resnet.errors import ArgumentError
from keras_resnet.models import pretrained
from keras_resnet.models.resolved import EvalTransform
from keras_resnet.models.resolved import resolve_weights


@pytest.mark.parametrize("model, weights, name, state_dict, options, normalization, transform", [
    ("ResNet-50", "imagenet", "imagenet", False, {}, "caffe", (256, 224, "bilinear")),
    ("resnet18", "imagenet", "tv_in1k", True, {}, "torchvision", (256, 224, "bilinear")),
    ("resnet50", "tv2_in1k", "tv2_in1k", True, {"version": "v1.5"}, "torchvision",
     (232, 224, "bilinear")),
    ("resnet50", "a1_in1k", "a1_in1k", True, {"version": "v1.5"}, "torchvision",
     (235, 224, "bicubic")),
], ids=["resnet50_imagenet", "resnet18_imagenet", "tv2_in1k", "a1_in1k"])
def test_a_name_brings_its_table_entry(model, weights, name, state_dict, options, normalization,
                                       transform):
    resolved = resolve_weights(model, weights)
    assert resolved.named and resolved.entry.name == name and resolved.path is None
    assert resolved.model == keras_resnet.models.canonical_name(model) and resolved.given == weights
    assert resolved.entry is pretrained.find(resolved.model, weights)
    assert (resolved.state_dict, dict(resolved.options), resolved.normalization) == (
        state_dict, options, normalization)
    resize, crop, interpolation = transform
    assert resolved.transform == EvalTransform(resize=resize, crop=crop, interpolation=interpolation)
    assert resolved.transform.at(112) == EvalTransform(resize=round(resize / 2), crop=112,
                                                       interpolation=interpolation)


def test_a_file_or_none_brings_nothing_of_the_table(tmp_path, monkeypatch):
    none = resolve_weights("resnet20", None)
    assert (none.given, none.named, none.path, none.normalization, none.transform) == (
        None, False, None, None, None)
    path = str(tmp_path / "mine.weights.h5")
    keras_resnet.ResNet20().save_weights(path)
    mine = resolve_weights("resnet20", path)
    assert (mine.named, mine.path, mine.state_dict, dict(mine.options)) == (False, path, False, {})
    assert (mine.normalization, mine.transform, mine.info) == (None, None, None)
    # A file named as a set of the table does not hide it: names win.
    monkeypatch.chdir(tmp_path)
    os.rename(path, "imagenet")
    assert resolve_weights("resnet50", "imagenet").named


@pytest.mark.parametrize("weights, message", [
    ("nowhere.h5", "weights must be None (He initialisation), a name of list_weights('resnet18') "
                   "(tv_in1k, imagenet) or the path to an existing weights file. "
                   "Received: weights='nowhere.h5'"),
    ("a1_in1k", "weights must be None (He initialisation), a name of list_weights('resnet18') "
                "(tv_in1k, imagenet) or the path to an existing weights file ('a1_in1k' are "
                "weights of resnet50). Received: weights='a1_in1k'"),
    (3, "weights must be None (He initialisation), a name of list_weights('resnet18') "
        "(tv_in1k, imagenet) or the path to an existing weights file. Received: weights=3"),
])
def test_anything_else_is_refused_in_one_line_naming_what_is_accepted(weights, message):
    with pytest.raises(ArgumentError) as error:
        resolve_weights("resnet18", weights)
    assert str(error.value) == message
    with pytest.raises(ArgumentError) as error:  # the builder's check is this one
        keras_resnet.ResNet18(weights=weights)
    assert str(error.value) == message


def test_weights_resolved_for_one_model_do_not_build_another():
    with pytest.raises(ValueError, match="weights resolved for resnet20 cannot build resnet32"):
        keras_resnet.get_model("resnet32", weights=resolve_weights("resnet20", None))
