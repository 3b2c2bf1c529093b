"""Weights: keras.applications files (legacy HDF5 layout), download, and Keras files."""

import os

import h5py
import keras
import numpy as np
import pytest

import keras_resnet
from keras_resnet import preprocessing
from keras_resnet import weights as weights_lib
from tests.helpers import FolderServer
from tests.helpers import md5


def _randomise(model, seed):
    """Random weights everywhere, BN statistics and conv biases included."""
    rng = np.random.RandomState(seed)
    for layer in model.layers:
        for v in layer.weights:
            shape = tuple(v.shape)
            if v.name == "moving_variance":
                value = rng.uniform(0.5, 1.5, shape)
            elif v.name == "gamma":
                value = rng.uniform(0.5, 1.0, shape)
            elif v.name in ("moving_mean", "beta", "bias"):
                value = rng.uniform(-0.2, 0.2, shape)
            else:
                value = keras.ops.convert_to_numpy(v)
            v.assign(value.astype("float32"))


def write_legacy(model, path):
    """Writes `model`'s weights as the published keras.applications files are laid out."""
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [l.name.encode() for l in model.layers]
        for layer in model.layers:
            group = f.create_group(layer.name)
            names = [f"{layer.name}/{v.name}:0" for v in layer.weights]
            group.attrs["weight_names"] = [n.encode() for n in names]
            for name, v in zip(names, layer.weights):
                group.create_dataset(name, data=keras.ops.convert_to_numpy(v))


@pytest.fixture(scope="module")
def applications_files(tmp_path_factory):
    """keras.applications ResNet50 (top and no top) with random weights, as files."""
    root = tmp_path_factory.mktemp("published")
    reference = keras.applications.ResNet50(weights=None, classifier_activation=None)
    _randomise(reference, seed=0)
    top = str(root / "resnet50_weights_tf_dim_ordering_tf_kernels.h5")
    notop = str(root / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5")
    write_legacy(reference, top)
    body = keras.Model(reference.input, reference.get_layer("conv5_block3_out").output)
    write_legacy(body, notop)
    return reference, top, notop


def _images(n=2, size=224, seed=3):
    x = np.random.RandomState(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")
    return preprocessing.preprocess_input(x)


def test_legacy_file_reproduces_keras_applications(applications_files):
    reference, top, _ = applications_files
    ours = keras_resnet.ResNet50(weights=top, classifier_activation=None)
    x = _images()
    expected = reference.predict(x, verbose=0)
    got = ours.predict(x, verbose=0)
    # Logits differ only by float rounding: biases and epsilon fold exactly.
    np.testing.assert_allclose(got, expected, atol=1e-4 * max(1.0, np.abs(expected).max()))
    softmax = lambda z: keras.ops.convert_to_numpy(keras.ops.softmax(z))
    assert np.abs(softmax(got) - softmax(expected)).max() <= 1e-4
    # The bias really was folded: without it the outputs would differ.
    assert np.abs(reference.get_layer("conv1_conv").bias.numpy()).max() > 0.1


def test_legacy_notop_file_and_top_file_into_feature_extractor(applications_files):
    reference, top, notop = applications_files
    x = _images(n=1, size=96)
    features = keras.Model(reference.input, reference.get_layer("conv5_block3_out").output)
    expected = features.predict(keras.ops.image.resize(x, (224, 224)), verbose=0)
    for path in (notop, top):  # the head of a top file is not needed, nor refused
        ours = keras_resnet.ResNet50(weights=path, include_top=False, input_shape=(224, 224, 3))
        got = ours.predict(keras.ops.image.resize(x, (224, 224)), verbose=0)
        np.testing.assert_allclose(got, expected, atol=1e-4 * np.abs(expected).max())


def test_legacy_file_for_another_model_is_refused(applications_files, tmp_path):
    _, top, notop = applications_files
    with pytest.raises(ValueError, match="layer 'predictions' is missing"):
        keras_resnet.ResNet50(weights=notop, include_top=True)
    with pytest.raises(ValueError, match="layer 'conv4_block7_1_conv' is missing"):
        keras_resnet.ResNet101(weights=notop, include_top=False)
    # A deeper model's file must not load silently into the first layers.
    with pytest.raises(ValueError, match="the file has layer 'conv2_block1_0_conv', which the model lacks"):
        keras_resnet.ResNet34(weights=notop, include_top=False)
    four_channels = keras.applications.ResNet50(
        weights=None, include_top=False, input_shape=(64, 64, 4)
    )
    path = str(tmp_path / "four_channels.h5")
    write_legacy(four_channels, path)
    with pytest.raises(ValueError, match=r"'conv1_conv' weight 'kernel' has shape \(7, 7, 3, 64\)"):
        keras_resnet.ResNet50(weights=path, include_top=False)


def test_keras_weights_file_round_trip_and_mismatch(tmp_path):
    source = keras_resnet.ResNet20()
    _randomise(source, seed=1)
    x = np.random.RandomState(4).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    for name in ("r20.weights.h5", "r20.keras"):
        path = str(tmp_path / name)
        source.save_weights(path) if name.endswith(".weights.h5") else source.save(path)
        loaded = keras_resnet.ResNet20(weights=path)
        np.testing.assert_array_equal(loaded.predict(x, verbose=0), source.predict(x, verbose=0))
    path = str(tmp_path / "r20.weights.h5")
    with pytest.raises(ValueError, match="layer 'conv2_block4_1_conv' expects shape"):
        keras_resnet.ResNet32(weights=path)
    with pytest.raises(ValueError, match="layer 'predictions' expects shape"):
        keras_resnet.ResNet20(weights=path, classes=100)
    with pytest.raises(ValueError, match="weights the model lacks"):
        keras_resnet.ResNet20(weights=path, include_top=False)
    other = tmp_path / "weights.npz"
    other.write_bytes(b"not weights")
    with pytest.raises(ValueError, match="Unrecognised weights file"):
        keras_resnet.ResNet20(weights=str(other))


@pytest.fixture
def served(applications_files, tmp_path, monkeypatch):
    _, top, notop = applications_files
    server = FolderServer(os.path.dirname(notop))
    monkeypatch.setattr(weights_lib, "BASE_URL", server.url)
    monkeypatch.setattr(weights_lib, "CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setitem(weights_lib.PUBLISHED, "resnet50", (md5(top), md5(notop)))
    yield server
    server.close()


def test_imagenet_weights_download_cache_and_verify(applications_files, served, tmp_path):
    reference, _, notop = applications_files
    model = keras_resnet.ResNet50(weights="imagenet", include_top=False)
    cached = tmp_path / "cache" / "models" / os.path.basename(notop)
    assert served.requests == 1 and md5(cached) == md5(notop)
    keras_resnet.ResNet50(weights="imagenet", include_top=False)
    assert served.requests == 1  # the second build reads the cache
    x = _images(n=1, size=64)
    features = keras.Model(reference.input, reference.get_layer("conv5_block3_out").output)
    expected = features.predict(keras.ops.image.resize(x, (224, 224)), verbose=0)
    got = model.predict(keras.ops.image.resize(x, (224, 224)), verbose=0)
    np.testing.assert_allclose(got, expected, atol=1e-4 * np.abs(expected).max())


def test_imagenet_weights_with_wrong_md5_are_rejected_and_deleted(served, tmp_path, monkeypatch):
    monkeypatch.setitem(weights_lib.PUBLISHED, "resnet50", ("0" * 32, "0" * 32))
    with pytest.raises(ValueError, match="does not have the expected md5 0{32}; it was deleted"):
        keras_resnet.ResNet50(weights="imagenet", include_top=False)
    assert served.requests == 1
    assert not os.listdir(tmp_path / "cache" / "models")


def test_imagenet_weights_download_failure_is_clear(served, monkeypatch):
    monkeypatch.setattr(weights_lib, "BASE_URL", served.url + "missing/")
    with pytest.raises(OSError, match="Could not download .*missing/resnet50_weights"):
        keras_resnet.ResNet50(weights="imagenet", include_top=False)
