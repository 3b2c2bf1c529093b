"""Preprocessing (keras.applications "caffe" mode, CIFAR per-pixel mean) and decoding."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_resnet
from keras_resnet import preprocessing
from keras_resnet import weights as weights_lib
from tests.helpers import FolderServer
from tests.helpers import md5


def _images(shape=(2, 6, 5, 3), seed=0):
    return np.random.RandomState(seed).uniform(0, 255, shape).astype("float32")


@pytest.mark.parametrize("data_format,shape", [("channels_last", (2, 6, 5, 3)), ("channels_first", (2, 3, 6, 5))])
def test_preprocess_input_equals_keras_applications(data_format, shape):
    x = _images(shape)
    original = x.copy()
    expected = keras.applications.resnet.preprocess_input(x.copy(), data_format=data_format)
    np.testing.assert_allclose(keras_resnet.preprocess_input(x, data_format), expected, atol=1e-5)
    tensor = keras_resnet.preprocess_input(tf.constant(x), data_format)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(tensor), expected, atol=1e-5)
    np.testing.assert_array_equal(x, original)  # never modified in place
    uint8 = keras_resnet.preprocess_input(x.astype("uint8"), data_format)
    assert uint8.dtype == np.float32 and uint8.min() < 0


def test_caffe_layer_inside_a_model_round_trips(tmp_path):
    x = _images((2, 32, 32, 3))
    model = preprocessing.with_preprocessing(
        keras_resnet.ResNet20(), preprocessing.caffe_preprocessing()
    )
    layer_out = model.get_layer("preprocessing")(x)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer_out), keras_resnet.preprocess_input(x), atol=1e-5
    )
    path = str(tmp_path / "m.keras")
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(restored.predict(x, verbose=0), model.predict(x, verbose=0))


def test_pixel_mean_from_array_and_batches_and_subtraction():
    x = _images((10, 4, 4, 3), seed=1)
    mean = preprocessing.compute_pixel_mean(x)
    assert mean.shape == (4, 4, 3) and mean.dtype == np.float32
    np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-6)
    batches = tf.data.Dataset.from_tensor_slices((x, np.arange(10))).batch(3)
    np.testing.assert_allclose(preprocessing.compute_pixel_mean(batches), mean, rtol=1e-6)
    layer = keras_resnet.MeanSubtraction(mean)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer(x)), preprocessing.preprocess_cifar(x, mean), atol=1e-5
    )
    assert abs(preprocessing.preprocess_cifar(x, mean).mean()) < 1e-4
    with pytest.raises(ValueError, match="no images"):
        preprocessing.compute_pixel_mean(tf.data.Dataset.from_tensor_slices(x).take(0).batch(2))


def test_decode_predictions_with_class_names():
    preds = np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]], "float32")
    decoded = keras_resnet.decode_predictions(preds, top=2, class_names=["cat", "dog", "emu"])
    assert [[(i, n) for i, n, _ in row] for row in decoded] == [
        [(1, "dog"), (2, "emu")],
        [(0, "cat"), (2, "emu")],
    ]
    assert decoded[0][0][2] == pytest.approx(0.6)
    with pytest.raises(ValueError, match=r"shape \(samples, 3\). Received array with shape: \(2, 4\)"):
        keras_resnet.decode_predictions(np.zeros((2, 4)), class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="top=4"):
        keras_resnet.decode_predictions(preds, top=4, class_names=["a", "b", "c"])


def test_decode_predictions_imagenet_index_downloaded_once(tmp_path, monkeypatch):
    index = {str(i): [f"n{i:08d}", f"class_{i}"] for i in range(1000)}
    served = tmp_path / "served"
    served.mkdir()
    (served / "imagenet_class_index.json").write_text(json.dumps(index))
    server = FolderServer(served)
    try:
        monkeypatch.setattr(preprocessing, "CLASS_INDEX_URL", server.url + "imagenet_class_index.json")
        monkeypatch.setattr(preprocessing, "CLASS_INDEX_MD5", md5(served / "imagenet_class_index.json"))
        monkeypatch.setattr(preprocessing, "_class_index", None)
        monkeypatch.setattr(weights_lib, "CACHE_DIR", str(tmp_path / "cache"))
        preds = np.zeros((2, 1000), "float32")
        preds[0, 7], preds[0, 990], preds[1, 3] = 0.9, 0.05, 0.8
        decoded = keras_resnet.decode_predictions(preds, top=2)
        assert decoded[0][0] == ("n00000007", "class_7", pytest.approx(0.9))
        assert decoded[0][1][:2] == ("n00000990", "class_990")
        assert decoded[1][0][:2] == ("n00000003", "class_3")
        keras_resnet.decode_predictions(preds)
        assert server.requests == 1
        with pytest.raises(ValueError, match=r"\(samples, 1000\)"):
            keras_resnet.decode_predictions(np.zeros((1, 10)))
    finally:
        server.close()
