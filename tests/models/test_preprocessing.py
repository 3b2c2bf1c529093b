"""Preprocessing (keras.applications "caffe" mode, CIFAR per-pixel mean) and decoding."""

import io
import json
import os
import subprocess
import sys
import textwrap
import zipfile

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_resnet
from keras_resnet.models import downloads
from keras_resnet.models import preprocessing
from tests.helpers import FolderServer
from tests.helpers import use_stand_ins
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


def _write_class_index(folder, classes=1000):
    index = {str(i): [f"n{i:08d}", f"class_{i}"] for i in range(classes)}
    path = folder / "imagenet_class_index.json"
    path.write_text(json.dumps(index))
    return path


def test_decode_predictions_imagenet_index_downloaded_once(tmp_path, monkeypatch):
    # Set as a user would: Keras' cache in $KERAS_HOME, a mirror in $KERAS_RESNET_WEIGHTS_URL.
    served = tmp_path / "served"
    served.mkdir()
    index = _write_class_index(served)
    use_stand_ins(monkeypatch, index)  # test data
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "home"))
    server = FolderServer(served)
    monkeypatch.setenv("KERAS_RESNET_WEIGHTS_URL", server.url)
    preds = np.zeros((2, 1000), "float32")
    preds[0, 7], preds[0, 990], preds[1, 3] = 0.9, 0.05, 0.8
    try:
        decoded = keras_resnet.decode_predictions(preds, top=2)
        assert decoded[0][0] == ("n00000007", "class_7", pytest.approx(0.9))
        assert decoded[0][1][:2] == ("n00000990", "class_990")
        assert decoded[1][0][:2] == ("n00000003", "class_3")
        assert keras_resnet.decode_predictions(preds) == keras_resnet.decode_predictions(preds, top=5)
        assert server.requests == 1
        assert md5(tmp_path / "home" / "models" / "imagenet_class_index.json") == md5(index)
        with pytest.raises(ValueError, match=r"\(samples, 1000\)"):
            keras_resnet.decode_predictions(np.zeros((1, 10)))
    finally:
        server.close()
    # A local folder serves as the mirror too.
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "other_home"))
    monkeypatch.setenv("KERAS_RESNET_WEIGHTS_URL", served.as_uri())
    assert keras_resnet.decode_predictions(preds, top=1)[1][0][:2] == ("n00000003", "class_3")
    assert os.path.exists(tmp_path / "other_home" / "models" / "imagenet_class_index.json")


def test_decode_predictions_with_a_local_class_index(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KERAS_RESNET_WEIGHTS_URL", "http://127.0.0.1:9/")  # nothing listens there
    path = _write_class_index(tmp_path, classes=4)
    preds = np.array([[0.1, 0.2, 0.6, 0.1]], "float32")
    decoded = keras_resnet.decode_predictions(preds, top=2, class_index=str(path))
    assert [row[:2] for row in decoded[0]] == [("n00000002", "class_2"), ("n00000001", "class_1")]
    assert not os.path.exists(tmp_path / "home" / "models" / "imagenet_class_index.json")
    bad = tmp_path / "bad.json"
    for content, reason in [
        ("not json", "Expecting value"),
        (json.dumps({"0": ["n0", "a"], "2": ["n2", "c"]}), "'1'"),
        (json.dumps({"0": "tench"}), "not one [wordnet_id, name] pair per class"),
    ]:
        bad.write_text(content)
        with pytest.raises(ValueError) as info:
            keras_resnet.decode_predictions(preds, class_index=str(bad))
        assert str(info.value).startswith(f"Cannot read the class index {bad}: ") and reason in str(info.value)
    with pytest.raises(ValueError, match="Cannot read the class index /no/such.json: .*No such file"):
        keras_resnet.decode_predictions(preds, class_index="/no/such.json")
    with pytest.raises(ValueError, match="Pass `class_names` or `class_index`, not both"):
        keras_resnet.decode_predictions(preds, class_names=["a"] * 4, class_index=str(path))
    with pytest.raises(ValueError, match=r"`top` must be an integer in \[1, 4\]. Received: top=2.5"):
        keras_resnet.decode_predictions(preds, top=2.5, class_index=str(path))


def test_mean_subtraction_checks_its_arguments():
    with pytest.raises(ValueError, match=r"\(height, width, channels\).*Received: mean with shape \(2, 2\)"):
        keras_resnet.MeanSubtraction(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="Received: data_format='NHWC'"):
        keras_resnet.MeanSubtraction([1.0, 2.0, 3.0], data_format="NHWC")
    with pytest.raises(ValueError, match="needs `mean`"):
        keras_resnet.MeanSubtraction()


def _pixel_mean_model():
    """A train.py-style model: a 32x32x3 per-pixel mean, then ResNet-20, compiled."""
    mean = np.random.RandomState(0).uniform(0, 255, (32, 32, 3)).astype("float32")
    model = preprocessing.with_preprocessing(
        keras_resnet.ResNet20(), keras_resnet.MeanSubtraction(mean, name="preprocessing")
    )
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    return model, mean


def test_model_file_without_import_keras_resnet_fails_short_and_loads_under_jax(tmp_path):
    # Without `import keras_resnet`, Keras cannot find MeanSubtraction and
    # prints the layer's whole config: the mean must not be in it.
    model, _ = _pixel_mean_model()
    assert "mean_shape" in model.get_layer("preprocessing").get_config()
    model.save(tmp_path / "model.keras")
    # A small model for the JAX round trip: JAX initialises ResNet-20 slowly.
    mean = np.random.RandomState(1).uniform(0, 255, (8, 8, 3)).astype("float32")
    inputs = keras.Input((8, 8, 3))
    x = keras_resnet.MeanSubtraction(mean, reverse_channels=True, name="preprocessing")(inputs)
    small = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    small.save(tmp_path / "small.keras")
    images = _images((2, 8, 8, 3), seed=2)
    np.save(tmp_path / "x.npy", images)
    script = textwrap.dedent(
        """
        import sys
        import keras
        import numpy as np
        assert keras.backend.backend() == "jax"
        try:
            keras.saving.load_model("model.keras")
        except Exception as e:
            print(str(e), file=sys.stderr)
        else:
            raise SystemExit("loaded without keras_resnet")
        import keras_resnet
        small = keras.saving.load_model("small.keras", safe_mode=True)
        mean = small.get_layer("preprocessing").mean
        y = keras.ops.convert_to_numpy(small(np.load("x.npy")))
        np.save("out.npy", np.concatenate([mean.reshape(-1), y.reshape(-1)]))
        """
    )
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = os.pathsep.join([os.getcwd(), env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    error = result.stderr[result.stderr.index("Could not locate class"):]
    assert "Could not locate class 'MeanSubtraction'" in error
    assert "keras_resnet>MeanSubtraction" in error  # names the package to import
    assert len(error) < 2000, error[:3000]  # with the mean in the config: > 100,000
    out = np.load(tmp_path / "out.npy")
    np.testing.assert_array_equal(out[: mean.size], mean.reshape(-1))
    expected = keras.ops.convert_to_numpy(small(images))
    np.testing.assert_allclose(out[mean.size:], expected.reshape(-1), rtol=1e-5, atol=1e-4)


def test_model_file_with_the_mean_in_its_config_still_loads(tmp_path):
    # Files written before the mean became a weight keep it in the layer's config.
    model, mean = _pixel_mean_model()
    new, old = str(tmp_path / "new.keras"), str(tmp_path / "old.keras")
    model.save(new)
    with zipfile.ZipFile(new) as archive:
        config = json.loads(archive.read("config.json"))
        weights = archive.read("model.weights.h5")
        others = {n: archive.read(n) for n in archive.namelist() if n not in ("config.json", "model.weights.h5")}
    (layer,) = [l for l in config["config"]["layers"] if l["class_name"] == "MeanSubtraction"]
    del layer["config"]["mean_shape"]
    layer["config"]["mean"] = mean.tolist()
    buffer = io.BytesIO(weights)
    with h5py.File(buffer, "r+") as f:
        (group,) = [k for k in f["layers"] if k.startswith("mean_subtraction")]
        del f["layers"][group]
    with zipfile.ZipFile(old, "w") as archive:
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("model.weights.h5", buffer.getvalue())
        for name, content in others.items():
            archive.writestr(name, content)
    restored = keras.saving.load_model(old, safe_mode=True)
    np.testing.assert_array_equal(restored.get_layer("preprocessing").mean, mean)
    x = _images((2, 32, 32, 3), seed=3)
    np.testing.assert_allclose(restored.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


@pytest.mark.parametrize("shape", [(1000,), (2, 10), (2, 1000, 1)])
def test_decode_predictions_checks_the_shape_before_downloading(tmp_path, monkeypatch, shape):
    # No network: the class index would come from an empty local mirror. The
    # shape was once checked only after the download, whose error came first.
    (tmp_path / "mirror").mkdir()
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KERAS_RESNET_WEIGHTS_URL", (tmp_path / "mirror").as_uri())
    with pytest.raises(ValueError) as info:
        keras_resnet.decode_predictions(np.zeros(shape))
    assert str(info.value) == ("`decode_predictions` expects a batch of predictions of shape "
                               f"(samples, 1000). Received array with shape: {shape}")
    # A right shape goes on to the download, which fails here, advising a local copy.
    with pytest.raises(downloads.DownloadError) as info:
        keras_resnet.decode_predictions(np.zeros((1, 1000)))
    assert str(info.value).startswith(f"Could not download {(tmp_path / 'mirror').as_uri()}/"
                                      "imagenet_class_index.json: ")
    assert ("pass its path: decode_predictions(preds, class_index='/path/to/imagenet_class_index"
            ".json'); or set KERAS_RESNET_WEIGHTS_URL") in str(info.value)
