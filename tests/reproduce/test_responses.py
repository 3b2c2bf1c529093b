"""keras_resnet.reproduce.responses: the stds of the 3x3 layers' responses
(paper Fig. 7), checked against values worked out by hand."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_resnet
from keras_resnet.models import layers as kr_layers
from keras_resnet.reproduce import responses

EPS = 1e-3  # above TensorFlow's floor of 1.001e-5 for the fused BN


def _set_bn(bn, gamma, beta, mean, std):
    """BN weights such that sqrt(moving_variance + epsilon) == std."""
    bn.set_weights([np.asarray(v, "float32") for v in
                    (gamma, beta, mean, np.square(std) - bn.epsilon)])


def _small_model():
    """3x3 conv (keras_resnet) + BN, ReLU, 1x1 conv + BN (not a response),
    3x3 conv (Keras) + BN, and a 3x3 conv whose BN follows a ReLU (not one)."""
    inputs = keras.Input((5, 5, 1))
    x = kr_layers.Conv2D(2, 3, padding="valid", use_bias=False, name="conv_a")(inputs)
    x = kr_layers.BatchNormalization(epsilon=EPS, name="bn_a")(x)
    x = keras.layers.ReLU(name="relu_a")(x)
    x = keras.layers.Conv2D(1, 1, use_bias=False, name="conv_b")(x)
    x = keras.layers.BatchNormalization(epsilon=EPS, name="bn_b")(x)
    x = keras.layers.Conv2D(1, 3, padding="valid", name="conv_c")(x)
    c = keras.layers.BatchNormalization(epsilon=EPS, name="bn_c")(x)
    y = keras.layers.Conv2D(1, 3, padding="same", name="conv_d")(c)
    y = keras.layers.ReLU(name="relu_d")(y)
    y = keras.layers.BatchNormalization(epsilon=EPS, name="bn_d")(y)
    model = keras.Model(inputs, [keras.layers.ReLU(name="relu_c")(c), y], name="small")

    kernel = np.zeros((3, 3, 1, 2), "float32")
    kernel[..., 0, 0] = 1 / 9  # the mean of the 3x3 window
    kernel[0, 0, 0, 1] = 2.0  # twice its top-left pixel
    model.get_layer("conv_a").set_weights([kernel])
    _set_bn(model.get_layer("bn_a"), [1, 0.5], [0, 1], [15, 30], [2, 2])
    model.get_layer("conv_b").set_weights([np.ones((1, 1, 2, 1), "float32")])
    _set_bn(model.get_layer("bn_b"), [1], [0], [0], [1])
    model.get_layer("conv_c").set_weights([np.ones((3, 3, 1, 1), "float32"), np.float32([6])])
    _set_bn(model.get_layer("bn_c"), [2], [-1], [60], [3])
    return model


# Four constant images, of 0, 10, 20 and 30.
#   conv_a: channel 0 = c, channel 1 = 2c (3x3 each).
#   bn_a:   (c - 15) / 2 and 0.5 (2c - 30) / 2 + 1: {-7.5, -2.5, 2.5, 7.5} and
#           {-6.5, -1.5, 3.5, 8.5}, nine times each; mean 0.5, deviations
#           {-8, -3, 2, 7} and {-7, -2, 3, 8}: variance (126 + 126) / 8 = 31.5.
#   ReLU, conv_b (the channels' sum), bn_b (identity): {0, 0, 6, 16}.
#   conv_c: 9 v + 6 = {6, 6, 60, 150} (1x1); bn_c: (v - 60) * 2 / 3 - 1 =
#           {-37, -37, -1, 59}: mean -4, deviations {-33, -33, 3, 63},
#           variance (1089 + 1089 + 9 + 3969) / 4 = 1539.
CONSTANTS = np.float32([0, 10, 20, 30])
EXPECTED = [("bn_a", np.sqrt(31.5)), ("bn_c", np.sqrt(1539.0))]


def _constant_images(offset=0.0):
    return np.broadcast_to(CONSTANTS[:, None, None, None] + offset, (4, 5, 5, 1)).copy()


def _check(result, expected):
    assert [name for name, _ in result] == [name for name, _ in expected]
    np.testing.assert_allclose([s for _, s in result], [s for _, s in expected], rtol=1e-5)


def test_stds_of_the_3x3_responses_match_the_hand_computation():
    model = _small_model()
    _check(responses.response_stds(model, _constant_images()), EXPECTED)
    _check(responses.response_stds(model, _constant_images(), batch_size=1), EXPECTED)


def test_a_wrapped_model_gives_the_responses_of_the_one_inside():
    model = _small_model()
    wrapped = keras_resnet.with_preprocessing(model, keras_resnet.MeanSubtraction([10.0]))
    _check(responses.response_stds(wrapped, _constant_images(10.0), batch_size=3), EXPECTED)


def test_the_model_is_left_as_it_was():
    model = _small_model()
    responses.response_stds(model, _constant_images())
    # fold_batch_norm folds a BN only into a conv used once: the probe must
    # not have added uses to the model's layers.
    folded = keras_resnet.fold_batch_norm(model)
    kept = [layer.name for layer in folded.layers
            if isinstance(layer, keras.layers.BatchNormalization)]
    assert kept == ["bn_d"]


def _resnet20(**kwargs):
    model = keras_resnet.ResNet20(input_shape=(16, 16, 3), **kwargs)
    rng = np.random.RandomState(1)
    for layer in model.layers:  # moving statistics other than 0 and 1
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([gamma, beta, rng.normal(0, 5, mean.shape).astype("float32"),
                               rng.uniform(1, 100, variance.shape).astype("float32")])
    return model


def test_streaming_equals_one_shot():
    model = _resnet20()
    images = np.random.RandomState(0).uniform(0, 255, (10, 16, 16, 3)).astype("float32")
    probe, names = responses.response_probe(model)
    one_shot = [float(np.std(np.asarray(out, "float64")))
                for out in probe.predict_on_batch(images)]
    streamed = responses.response_stds(model, images, batch_size=3)
    assert [name for name, _ in streamed] == names
    np.testing.assert_allclose([s for _, s in streamed], one_shot, rtol=1e-6)
    labels = np.zeros(10, "int64")
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(4)
    np.testing.assert_allclose(
        [s for _, s in responses.response_stds(model, dataset)], one_shot, rtol=1e-6)


def test_cifar_networks_have_one_response_per_3x3_conv():
    mean = np.full((16, 16, 3), 120.0, "float32")
    images = np.random.RandomState(2).uniform(0, 255, (2, 16, 16, 3)).astype("float32")
    for build in (keras_resnet.ResNet20, keras_resnet.Plain20):
        model = keras_resnet.with_preprocessing(_resnet20() if build is keras_resnet.ResNet20
                                                else build(input_shape=(16, 16, 3)),
                                                keras_resnet.MeanSubtraction(mean))
        result = responses.response_stds(model, images)
        # The stem's 3x3 conv and the two of each of the 9 basic blocks;
        # option A shortcuts have no conv.
        assert len(result) == 1 + 2 * 9
        assert [name for name, _ in result[:3]] == [
            "conv1_bn", "conv2_block1_1_bn", "conv2_block1_2_bn"]
        assert result[-1][0] == "conv4_block3_2_bn"
        assert all(np.isfinite(s) and s > 0 for _, s in result)


def test_projection_shortcuts_are_not_responses():
    model = keras_resnet.ResNet20(input_shape=(16, 16, 3), shortcut="B")
    assert "conv3_block1_0_bn" in [layer.name for layer in model.layers]
    names = [name for name, _ in responses.response_stds(model, np.zeros((1, 16, 16, 3)))]
    assert len(names) == 19 and not any("_0_" in name for name in names)


def test_bad_arguments_are_refused():
    model = _small_model()
    with pytest.raises(ValueError, match="batch_size"):
        responses.response_stds(model, _constant_images(), batch_size=0)
    with pytest.raises(ValueError, match="no images"):
        responses.response_stds(model, _constant_images()[:0])
    inputs = keras.Input((5, 5, 1))
    plain = keras.Model(inputs, keras.layers.Conv2D(1, 1)(inputs))
    with pytest.raises(ValueError, match="no BatchNormalization"):
        responses.response_stds(plain, _constant_images())


def test_fig7_figure_plots_each_series_in_order_and_sorted():
    series = {"plain-20": [1.0, 3.0, 2.0, 0.5], "ResNet-20": [0.2, 0.9, 0.4]}
    figure = responses.fig7_figure(series)
    top, bottom = figure.axes
    assert top.get_xlabel() == "layer index (original)"
    assert bottom.get_xlabel() == "layer index (sorted by magnitude)"
    assert top.get_ylabel() == bottom.get_ylabel() == "std"
    assert [line.get_label() for line in top.lines] == list(series)
    assert [line.get_label() for line in bottom.lines] == list(series)
    for line, values in zip(top.lines, series.values()):
        np.testing.assert_array_equal(line.get_xdata(), np.arange(1, len(values) + 1))
        np.testing.assert_array_equal(line.get_ydata(), values)
    for line, values in zip(bottom.lines, series.values()):
        np.testing.assert_array_equal(line.get_ydata(), sorted(values, reverse=True))
