"""Backbone features (keras_resnet.models.features): each stage's last block,
the paper's strides and widths (Table 1, Sec. 4.2), shared weights, refusals."""

import re

import keras
import numpy as np
import pytest

import keras_resnet

# Each stage's last block, written out from Table 1 / Sec. 4.2 (not from the code).
LAST_BLOCKS = {
    "resnet18": {"conv2": "conv2_block2_out", "conv3": "conv3_block2_out",
                 "conv4": "conv4_block2_out", "conv5": "conv5_block2_out"},
    "resnet50": {"conv2": "conv2_block3_out", "conv3": "conv3_block4_out",
                 "conv4": "conv4_block6_out", "conv5": "conv5_block3_out"},
    "resnet20": {"conv2": "conv2_block3_out", "conv3": "conv3_block3_out",
                 "conv4": "conv4_block3_out"},
}
# Output channels of conv2_x .. conv5_x: Table 1 (basic: the width; bottleneck: 4x).
BASIC = {"conv2": 64, "conv3": 128, "conv4": 256, "conv5": 512}
BOTTLENECK = {"conv2": 256, "conv3": 512, "conv4": 1024, "conv5": 2048}
IMAGENET_STRIDES = {"conv2": 4, "conv3": 8, "conv4": 16, "conv5": 32}


def _images(*shape):
    return np.random.RandomState(0).uniform(0, 255, shape).astype("float32")


def _numpy(outputs):
    return {k: keras.ops.convert_to_numpy(v) for k, v in outputs.items()}


@pytest.mark.parametrize("name,size", [("resnet18", 64), ("resnet50", 64), ("resnet20", 32)])
def test_features_equal_the_classifiers_intermediate_outputs(name, size):
    # A classifier with its top, as users have it; weights random but fixed (seeded).
    model = keras_resnet.get_model(name, input_shape=(size, size, 3))
    x = _images(2, size, size, 3)
    features = _numpy(keras_resnet.feature_model(model)(x, training=False))
    assert list(features) == list(LAST_BLOCKS[name])
    for stage, layer in LAST_BLOCKS[name].items():
        reference = keras.Model(model.input, model.get_layer(layer).output)
        expected = keras.ops.convert_to_numpy(reference(x, training=False))
        np.testing.assert_allclose(features[stage], expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name,channels", [("resnet18", BASIC), ("resnet50", BOTTLENECK)],
                         ids=["resnet18", "resnet50"])
def test_shapes_and_strides_at_two_sizes(name, channels):
    model = keras_resnet.feature_model(name)  # include_top=False: any input size.
    assert model.input_shape == (None, None, None, 3)
    for height, width in [(64, 96), (96, 64)]:
        features = model(_images(1, height, width, 3), training=False)
        shapes = {k: tuple(v.shape) for k, v in features.items()}
        assert shapes == {k: (1, height // s, width // s, channels[k])
                          for k, s in IMAGENET_STRIDES.items()}
    info = keras_resnet.feature_info(name)
    assert [(i.stage, i.stride, i.channels) for i in info] == [
        (k, IMAGENET_STRIDES[k], channels[k]) for k in IMAGENET_STRIDES]
    assert info == keras_resnet.feature_info(model)


def test_cifar_nets_have_three_stages():
    # Sec. 4.2: feature maps of 32, 16, 8 with 16, 32, 64 filters.
    model = keras_resnet.feature_model(keras_resnet.ResNet20())
    assert model.input_shape == (None, 32, 32, 3)  # the given network's own input
    shapes = {k: tuple(v.shape) for k, v in model(_images(1, 32, 32, 3)).items()}
    assert shapes == {"conv2": (1, 32, 32, 16), "conv3": (1, 16, 16, 32), "conv4": (1, 8, 8, 64)}
    info = keras_resnet.feature_info("resnet20")
    assert [(i.stage, i.layer, i.stride, i.channels) for i in info] == [
        ("conv2", "conv2_block3_out", 1, 16), ("conv3", "conv3_block3_out", 2, 32),
        ("conv4", "conv4_block3_out", 4, 64)]
    assert info == keras_resnet.feature_info(model)


@pytest.mark.parametrize("name,kwargs", [
    ("plain18", {}), ("resnet50", {"version": "v1.5"}), ("resnet34", {"shortcut": "C"}),
    ("plain20", {}), ("resnet32", {"shortcut": "B"}),
], ids=["plain18", "resnet50-v1.5", "resnet34-C", "plain20", "resnet32-B"])
def test_every_family_twin_and_option_has_the_tables_stages(name, kwargs):
    # The table's stages (read without building) are the built network's.
    model = keras_resnet.feature_model(name, **kwargs)
    info = keras_resnet.feature_info(name)
    assert info == keras_resnet.feature_info(model)
    assert [i.stage for i in info] == list(model.output)
    for stage in info:
        assert model.output[stage.stage].shape[-1] == stage.channels


def test_features_share_the_networks_weights():
    network = keras_resnet.ResNet20()
    model = keras_resnet.feature_model(network)
    assert model.get_layer("conv1_conv") is network.get_layer("conv1_conv")
    x = _images(1, 32, 32, 3)
    before = _numpy(model(x, training=False))
    kernel = network.get_layer("conv1_conv").kernel
    kernel.assign(2 * kernel)
    after = _numpy(model(x, training=False))
    assert not np.allclose(before["conv2"], after["conv2"])


def test_stage_subsets_keep_the_networks_order():
    network = keras_resnet.ResNet18(include_top=False)
    model = keras_resnet.feature_model(network, stages=["conv5", "conv3"])
    assert list(model.output) == ["conv3", "conv5"]
    shapes = {k: tuple(v.shape) for k, v in model(_images(1, 64, 64, 3)).items()}
    assert shapes == {"conv3": (1, 8, 8, 128), "conv5": (1, 2, 2, 512)}
    assert [i.stage for i in keras_resnet.feature_info(model)] == ["conv3", "conv5"]
    single = keras_resnet.feature_model(network, stages="conv4")
    assert list(single.output) == ["conv4"]
    assert [(i.stage, i.stride) for i in keras_resnet.feature_info("resnet152", ["conv4"])] == [
        ("conv4", 16)]


@pytest.mark.parametrize("stages,message", [
    (["conv3", "conv6"], "Unknown stage 'conv6' of resnet18. Available: conv2, conv3, conv4, "
                         "conv5. Received: stages=['conv3', 'conv6']"),
    (["P3"], "Unknown stage 'P3' of resnet18. Available: conv2, conv3, conv4, conv5. "
             "Received: stages=['P3']"),
    ([], "`stages` names no stage. Available: conv2, conv3, conv4, conv5. Received: stages=[]"),
], ids=["conv6", "P3", "none"])
def test_a_bad_stage_is_refused_naming_it(stages, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        keras_resnet.feature_model("resnet18", stages=stages)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        keras_resnet.feature_info("resnet18", stages=stages)


def test_cifar_nets_have_no_conv5():
    message = ("Unknown stage 'conv5' of resnet20. Available: conv2, conv3, conv4. "
               "Received: stages=('conv4', 'conv5')")
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        keras_resnet.feature_model(keras_resnet.ResNet20(), stages=("conv4", "conv5"))


def test_a_model_that_is_not_a_resnet_is_refused():
    inputs = keras.Input((32, 32, 3))
    other = keras.Model(inputs, keras.layers.Conv2D(4, 3, name="conv2_block1")(inputs),
                        name="mine")
    message = ("Model 'mine' has no ResNet stages (layers named conv2_block1_out, ...): backbone "
               "features need a keras_resnet network (or keras.applications' ResNet50/101/152) "
               "or a name of list_models().")
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        keras_resnet.feature_model(other)
    # One wrapping a network (train.py's model.keras) is told which layer to pass.
    network = keras_resnet.ResNet20()
    mean = keras_resnet.MeanSubtraction(np.full((32, 32, 3), 120.0, "float32"))
    wrapped = keras_resnet.with_preprocessing(network, mean)
    hint = ("Its layer 'resnet20' is one: pass model.get_layer('resnet20'), whose inputs are "
            "the preprocessed images.")
    with pytest.raises(ValueError, match=f"{re.escape(hint)}$"):
        keras_resnet.feature_model(wrapped)
    with pytest.raises(ValueError, match=r"^Expected a keras.Model or a name of .*Received: 3$"):
        keras_resnet.feature_model(3)
    with pytest.raises(ValueError, match=r"^Unknown model name: 'resnet19'"):
        keras_resnet.feature_model("resnet19")


def test_builder_arguments_go_with_a_name_only():
    message = ("Builder arguments go with a model name, not a built model. Received: "
               "weights='imagenet'")
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        keras_resnet.feature_model(keras_resnet.ResNet20(), weights="imagenet")


def test_keras_applications_resnet_gives_the_same_stages():
    # The layer names are keras.applications' (test_models.py), so its nets work too.
    theirs = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(64, 64, 3))
    assert keras_resnet.feature_info(theirs) == keras_resnet.feature_info("resnet50")


def test_save_and_load_give_equal_features(tmp_path):
    model = keras_resnet.feature_model("resnet20", stages=["conv3", "conv4"])
    path = str(tmp_path / "features.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = _images(2, 40, 48, 3)  # any size: include_top=False
    expected, got = _numpy(model(x, training=False)), _numpy(loaded(x, training=False))
    assert list(got) == ["conv3", "conv4"]
    for stage in expected:
        np.testing.assert_allclose(got[stage], expected[stage], rtol=1e-6, atol=1e-6)
    assert keras_resnet.feature_info(loaded) == keras_resnet.feature_info(model)
