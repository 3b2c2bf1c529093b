"""The paper's constants, pinned on what the code builds and runs.

Each expected value is written here as the source states it, never read from
the package's own constants, so that changing one in the code fails here:
- He et al. 2015 ("Deep Residual Learning for Image Recognition"): Sec. 3.3
  (shortcuts A/B/C, BN after each conv, no dropout), Sec. 3.4 (ImageNet:
  shorter side in [256, 480], 224 crops, test at 256/224, 10-crop, Table 4's
  scales), Sec. 4.2 (CIFAR: batch 128, lr 0.1 / 10 at 32k and 48k, 64k,
  weight decay 1e-4, momentum 0.9, 4-pixel padding);
- the authors' Caffe models: BN epsilon 1e-5, no conv biases (BN follows),
  the caffe mean [103.939, 116.779, 123.68] (BGR) of keras.applications;
- He init (He et al. 2015, "Delving Deep into Rectifiers"): zero-mean normal
  of variance 2 / fan_in, Keras' "he_normal";
- BN momentum 0.1 in PyTorch's and Caffe's sense, 0.9 in Keras'.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_resnet
from keras_resnet.data import augment
from keras_resnet.models.preprocessing import caffe_preprocessing
from keras_resnet.training import recipes


def _layers(model, kind):
    return [layer for layer in model.layers if isinstance(layer, kind)]


@pytest.fixture(scope="module")
def nets():
    return {name: keras_resnet.get_model(name, weights=None, input_shape=shape)
            for name, shape in (("resnet20", (32, 32, 3)), ("resnet50", (64, 64, 3)),
                                ("plain20", (32, 32, 3)))}


@pytest.mark.parametrize("name", ["resnet20", "resnet50", "plain20"])
def test_every_bn_has_the_papers_epsilon_and_momentum(nets, name):
    bns = _layers(nets[name], keras.layers.BatchNormalization)
    assert len(bns) == {"resnet20": 19, "resnet50": 53, "plain20": 19}[name]
    for bn in bns:
        assert (bn.epsilon, bn.momentum, bn.center, bn.scale) == (1e-5, 0.9, True, True), bn.name


@pytest.mark.parametrize("name", ["resnet20", "resnet50", "plain20"])
def test_every_conv_is_bias_free_and_he_initialised(nets, name):
    convs = _layers(nets[name], keras.layers.Conv2D)
    assert convs
    for conv in convs:
        init = conv.kernel_initializer
        assert not conv.use_bias, conv.name
        assert isinstance(init, keras.initializers.VarianceScaling), conv.name
        assert (init.scale, init.mode) == (2.0, "fan_in"), (conv.name, init.scale, init.mode)
    # The fc layer that follows global pooling keeps its bias (Table 1's "fc").
    assert nets[name].get_layer("predictions").use_bias


def test_he_init_has_the_variance_of_2_over_fan_in():
    # A 3x3x64 -> 64 conv: fan_in 576; its kernel's standard deviation is
    # sqrt(2 / 576) = 0.0589 (Keras truncates at 2 sigma and rescales).
    keras.utils.set_random_seed(0)
    model = keras_resnet.get_model("resnet34", weights=None, input_shape=(64, 64, 3))
    kernel = model.get_layer("conv2_block1_2_conv").kernel.numpy()
    assert kernel.shape == (3, 3, 64, 64)
    assert abs(kernel.mean()) < 0.003
    assert kernel.std() == pytest.approx(np.sqrt(2 / 576), rel=0.03)


@pytest.mark.parametrize("version,strides", [("v1", ((2, 2), (1, 1))), ("v1.5", ((1, 1), (2, 2)))])
def test_bottleneck_downsampling_is_on_the_first_1x1_in_v1_and_the_3x3_in_v1_5(version, strides):
    model = keras_resnet.get_model("resnet50", weights=None, version=version, input_shape=(64, 64, 3))
    for stage in (3, 4, 5):
        first = (model.get_layer(f"conv{stage}_block1_1_conv").strides,
                 model.get_layer(f"conv{stage}_block1_2_conv").strides)
        assert first == strides, (stage, first)
        assert model.get_layer(f"conv{stage}_block1_0_conv").strides == (2, 2)
        assert model.get_layer(f"conv{stage}_block2_2_conv").strides == (1, 1)
    assert model.get_layer("conv2_block1_1_conv").strides == (1, 1)  # after the max pool


@pytest.mark.parametrize("name,shortcut,projections", [
    ("resnet20", None, 0),  # CIFAR: option A, parameter-free (Sec. 4.2)
    ("resnet20", "B", 2),  # where the dimensions grow: stages 2 and 3
    ("resnet34", None, 3),  # ImageNet: option B (Sec. 3.3, Table 3's B)
    ("resnet50", None, 4),  # every stage's first block (conv2's widens 64 -> 256)
    ("resnet34", "C", 16),  # every block
])
def test_shortcut_options_project_where_the_paper_says(name, shortcut, projections):
    options = {} if shortcut is None else {"shortcut": shortcut}
    model = keras_resnet.get_model(name, weights=None, **options)
    assert len([layer for layer in model.layers if layer.name.endswith("_0_conv")]) == projections


def test_the_cifar_recipe_is_section_4_2():
    recipe = recipes.get_recipe("cifar_paper")
    assert (recipe.batch_size, recipe.learning_rate, recipe.boundaries, recipe.train_steps) == (
        128, 0.1, (32000, 48000), 64000)
    assert (recipe.decay, recipe.decay_rate, recipe.weight_decay, recipe.momentum) == (
        "step", 0.1, 1e-4, 0.9)
    assert (recipe.augment, recipe.mean, recipe.label_smoothing, recipe.nesterov) == (
        "cifar", "pixel_mean", 0.0, False)
    # ResNet-110 warms up at 0.01 until the training error is below 80%
    # (about 400 iterations), then goes back to 0.1.
    warm = recipes.get_recipe("cifar_paper", "resnet110")
    assert (warm.warmup, warm.warmup_steps, warm.warmup_learning_rate) == ("constant", 400, 0.01)
    rates = recipes.schedule(warm, recipes.plan(warm))
    assert [float(rates(s)) for s in (0, 399, 400, 31999, 32000, 48000)] == pytest.approx(
        [0.01, 0.01, 0.1, 0.1, 0.01, 0.001])


def test_the_imagenet_recipe_is_section_3_4():
    recipe = recipes.get_recipe("imagenet_paper")
    assert (recipe.batch_size, recipe.learning_rate, recipe.train_steps) == (256, 0.1, 600000)
    assert (recipe.decay_rate, recipe.weight_decay, recipe.momentum, recipe.pca_lighting) == (
        0.1, 1e-4, 0.9, 0.1)
    assert (recipe.augment, recipe.mean) == ("imagenet", "caffe")


def _ramp(height, width):
    """An image whose values grow by 0.25 a column, so a crop's column step
    tells the scale it was resized to: 0.25 * width / shorter side."""
    row = np.arange(width, dtype="float32") * 0.25
    return tf.constant(np.repeat(np.repeat(row[None, :, None], height, 0), 3, 2))


def test_imagenet_training_scales_the_shorter_side_to_256_480():
    # Sec. 3.4: shorter side sampled in [256, 480] for 224 crops. A 1000x1000
    # ramp resized to S has a column step of 250 / S: from 0.52 to 0.98.
    image = _ramp(1000, 1000)
    steps = []
    for i in range(120):
        crop = augment.scale_crop_flip(image, tf.constant([i, 0]), 224).numpy()
        steps.append(np.abs(np.diff(crop[..., 0], axis=1)).mean())
    assert 250 / 480 * 0.98 < min(steps) < 250 / 480 * 1.1
    assert 250 / 256 * 0.9 < max(steps) < 250 / 256 * 1.02


def test_cifar_training_pads_4_pixels_and_crops_32():
    # Sec. 4.2: 4 pixels padded on each side, a random 32x32 crop. An image of
    # ones, padded with 0: every crop keeps at least 28 columns of ones, and
    # the crops together reach offsets of -4 and +4.
    image = tf.ones([32, 32, 3])
    shifts = set()
    for i in range(200):
        crop = augment.pad_crop_flip(image, tf.constant([i, 0]), 32).numpy()[..., 0]
        rows, cols = crop.sum(1) > 0, crop.sum(0) > 0
        assert rows.sum() >= 28 and cols.sum() >= 28
        shifts.add(int(32 - rows.sum()))
    assert shifts == {0, 1, 2, 3, 4}


def test_test_views_are_256_center_224_and_ten_crops():
    # A 512x768 ramp: the test resize makes the shorter side 256 (scale 0.5),
    # so the centre 224 crop starts at column (384 - 224) / 2 = 80.
    image = _ramp(512, 768)
    center = augment.VIEWS["center"](image, 224).numpy()
    assert center.shape == (1, 224, 224, 3)
    assert center[0, 0, 0, 0] == pytest.approx(0.25 * 2 * 80.5, abs=0.3)
    crops = augment.VIEWS["10crop"](image, 224).numpy()
    assert crops.shape == (10, 224, 224, 3)
    lefts = [c[0, 0, 0] for c in crops[:5]]
    assert lefts == pytest.approx([0.25 * 2 * x for x in (0.5, 160.5, 0.5, 160.5, 80.5)], abs=0.3)
    np.testing.assert_array_equal(crops[5:], crops[:5, :, ::-1])  # their flips


def test_multiscale_uses_table_4s_scales():
    image = _ramp(300, 400)
    views = augment.multiscale_views(image, 224)
    assert [min(v.shape[1:3]) for v in views] == [224, 256, 384, 480, 640]


def test_the_caffe_mean_is_keras_applications():
    layer = caffe_preprocessing()
    rgb = np.zeros((1, 2, 2, 3), "float32")
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10.0, 20.0, 30.0
    out = keras.ops.convert_to_numpy(layer(rgb))
    np.testing.assert_allclose(out[0, 0, 0], [30 - 103.939, 20 - 116.779, 10 - 123.68], rtol=1e-6)
