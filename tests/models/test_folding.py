"""BN folded into the convolutions (keras_resnet.models.folding) against the plain model."""

import keras
import numpy as np
import pytest

import keras_resnet
from tests.helpers import with_trained_statistics


def _images(shape, seed=1):
    return np.random.default_rng(seed).uniform(0, 255, (2, *shape)).astype("float32") / 64


def _bn_channels(model):
    return sum(layer.moving_mean.shape[0] for layer in model.layers
               if isinstance(layer, keras.layers.BatchNormalization))


@pytest.mark.parametrize("builder, options", [
    ("ResNet20", {}),  # option A: the zero-padded shortcut
    ("ResNet18", dict(input_shape=(64, 64, 3), classes=10)),  # B: projection shortcuts
])
def test_folded_network_computes_what_the_plain_one_does(builder, options):
    plain = with_trained_statistics(
        getattr(keras_resnet, builder)(classifier_activation=None, **options))
    folded = keras_resnet.fold_batch_norm(plain)

    images = _images(plain.input_shape[1:])
    expected, got = plain.predict_on_batch(images), folded.predict_on_batch(images)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    assert (got.argmax(-1) == expected.argmax(-1)).all()
    # Every BN went into its conv: 4 values per channel gave way to 1 bias.
    assert not [l for l in folded.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert folded.count_params() == plain.count_params() - 3 * _bn_channels(plain)
    convs = lambda m: [l.name for l in m.layers if isinstance(l, keras.layers.Conv2D)]
    assert convs(folded) == convs(plain)
    assert all(l.use_bias for l in folded.layers if isinstance(l, keras.layers.Conv2D))
    assert folded.layers[0].name == plain.layers[0].name
    # The source model is untouched.
    assert _bn_channels(plain) > 0 and not plain.get_layer("conv1_conv").use_bias


def test_a_bfloat16_model_folds_into_bfloat16_convolutions():
    # The fast path of bfloat16 inference (TensorFlow fuses no bfloat16 BN
    # into its conv): the folded model keeps the policy and its numerics.
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        plain = with_trained_statistics(keras_resnet.ResNet20(classifier_activation=None))
        folded = keras_resnet.fold_batch_norm(plain)
    finally:
        keras.config.set_dtype_policy(previous)
    convs = [l for l in folded.layers if isinstance(l, keras.layers.Conv2D)]
    assert {(l.compute_dtype, l.variable_dtype) for l in convs} == {("bfloat16", "float32")}
    images = _images(plain.input_shape[1:])
    expected, got = plain.predict_on_batch(images), folded.predict_on_batch(images)
    assert got.dtype == expected.dtype
    # bfloat16 keeps 8 bits of mantissa: a few parts in a hundred after 20 layers.
    np.testing.assert_allclose(got, expected, atol=0.05 * np.abs(expected).max())


def _mixed_model():
    """One BN of each kind: foldable, and four that must stay."""
    inputs = keras.Input((8, 8, 3), name="pixels")
    x = keras.layers.Conv2D(4, 3, padding="same", name="biased_conv")(inputs)
    x = keras.layers.BatchNormalization(name="folds_with_bias")(x)
    activated = keras.layers.Conv2D(4, 1, activation="relu", name="relu_conv")(x)
    x = keras.layers.BatchNormalization(name="after_activation")(activated)
    shared = keras.layers.Conv2D(4, 1, use_bias=False, name="shared_conv")(x)
    x = keras.layers.BatchNormalization(name="conv_read_twice")(shared)
    x = keras.layers.Add(name="add")([x, shared])
    x = keras.layers.Conv2D(4, 1, name="height_conv")(x)
    x = keras.layers.BatchNormalization(axis=1, name="other_axis")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(5, name="dense")(x)
    outputs = keras.layers.BatchNormalization(name="after_dense")(x)
    return keras.Model(inputs, outputs)


def test_only_a_bn_right_after_an_unshared_linear_conv_is_folded():
    plain = with_trained_statistics(_mixed_model())
    folded = keras_resnet.fold_batch_norm(plain)

    kept = [l.name for l in folded.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert kept == ["after_activation", "conv_read_twice", "other_axis", "after_dense"]
    # The conv's own bias went through the BN's scale and shift too.
    images = _images((8, 8, 3))
    np.testing.assert_allclose(folded.predict_on_batch(images), plain.predict_on_batch(images),
                               rtol=1e-5, atol=1e-5)
    assert folded.input.name == plain.input.name == "pixels"


def test_nested_backbone_is_folded_and_the_result_saves_and_loads(tmp_path):
    backbone = with_trained_statistics(keras_resnet.ResNet20(include_top=False, pooling="avg"))
    inputs = keras.Input((32, 32, 3))
    head = keras.layers.Dense(3, name="head")
    plain = keras.Model(inputs, head(backbone(inputs)))
    folded = keras_resnet.fold_batch_norm(plain)

    nested = folded.layers[1]
    assert isinstance(nested, keras.Model) and nested.name == backbone.name
    assert not [l for l in nested.layers if isinstance(l, keras.layers.BatchNormalization)]
    images = _images((32, 32, 3))
    expected = plain.predict_on_batch(images)
    np.testing.assert_allclose(folded.predict_on_batch(images), expected, rtol=1e-4, atol=1e-4)

    folded.save(tmp_path / "folded.keras")
    loaded = keras.models.load_model(tmp_path / "folded.keras", safe_mode=True)
    np.testing.assert_array_equal(loaded.predict_on_batch(images), folded.predict_on_batch(images))


def test_a_sequential_model_is_refused_with_its_type():
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 1),
                              keras.layers.BatchNormalization()])
    with pytest.raises(TypeError, match="functional keras.Model.*Received: Sequential"):
        keras_resnet.fold_batch_norm(model)
