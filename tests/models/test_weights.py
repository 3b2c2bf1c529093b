"""Weights: keras.applications files (legacy HDF5 and Keras 3 formats), Keras
files, junk files, and downloads through Keras' real cache from 127.0.0.1."""

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time

import h5py
import keras
import numpy as np
import pytest

import keras_resnet
from keras_resnet.models import downloads
from keras_resnet.models import preprocessing
from keras_resnet.models import pretrained
from keras_resnet.models import weights as weights_lib
from tests.helpers import FolderServer
from tests.helpers import md5
from tests.helpers import use_stand_ins
from tests.helpers import write_legacy


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


def _run(model, x):
    """The model's inference output; eager, as tracing `predict` costs seconds."""
    return keras.ops.convert_to_numpy(model(x, training=False))


def _images(n=2, size=224, seed=3):
    x = np.random.RandomState(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")
    return preprocessing.preprocess_input(x)


def test_legacy_file_reproduces_keras_applications(applications_files):
    reference, top, _ = applications_files
    ours = keras_resnet.ResNet50(weights=top, classifier_activation=None)
    x = _images()
    expected = _run(reference, x)
    got = _run(ours, x)
    # Logits differ only by float rounding: biases and epsilon fold exactly.
    np.testing.assert_allclose(got, expected, atol=1e-4 * max(1.0, np.abs(expected).max()))
    softmax = lambda z: keras.ops.convert_to_numpy(keras.ops.softmax(z))
    assert np.abs(softmax(got) - softmax(expected)).max() <= 1e-4
    # The bias really was folded: without it the outputs would differ.
    assert np.abs(reference.get_layer("conv1_conv").bias.numpy()).max() > 0.1


# ~25 s (ResNet-50 at 224, twice); the fold and the top file: test_legacy_file_reproduces_keras_applications,
# test_files_in_the_published_layout_with_or_without_a_top (in tests/training)
@pytest.mark.slow
def test_legacy_notop_file_and_top_file_into_feature_extractor(applications_files):
    reference, top, notop = applications_files
    x = _images(n=1, size=96)
    features = keras.Model(reference.input, reference.get_layer("conv5_block3_out").output)
    expected = _run(features, keras.ops.image.resize(x, (224, 224)))
    for path in (notop, top):  # the head of a top file is not needed, nor refused
        ours = keras_resnet.ResNet50(weights=path, include_top=False, input_shape=(224, 224, 3))
        got = _run(ours, keras.ops.image.resize(x, (224, 224)))
        np.testing.assert_allclose(got, expected, atol=1e-4 * np.abs(expected).max())


def test_legacy_file_for_another_model_is_refused(applications_files, tmp_path):
    _, top, notop = applications_files
    with pytest.raises(ValueError, match="layer 'predictions' is missing from the file .the file has no top"):
        keras_resnet.ResNet50(weights=notop, include_top=True)
    with pytest.raises(ValueError) as info:
        keras_resnet.ResNet101(weights=notop, include_top=False)
    assert f"Weights file {notop} does not fit the model: the file is for another depth: its " \
        "stages have (3, 4, 6, 3) blocks, the model's have (3, 4, 23, 3)" in str(info.value)
    # Same blocks per stage, other block type: must not load silently into the first layers.
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
        np.testing.assert_array_equal(_run(loaded, x), _run(source, x))
    path = str(tmp_path / "r20.weights.h5")
    with pytest.raises(ValueError, match=r"another depth: its stages have \(3, 3, 3\) blocks, the model's have \(5, 5, 5\)"):
        keras_resnet.ResNet32(weights=path)
    with pytest.raises(ValueError, match=r"layer 'predictions' weight 'kernel' has shape \(64, 100\), the file has \(64, 10\)"):
        keras_resnet.ResNet20(weights=path, classes=100)
    # As for legacy files, a top file serves a model without the top.
    features = keras_resnet.ResNet20(weights=path, include_top=False)
    np.testing.assert_array_equal(
        features.get_layer("conv4_block3_2_bn").moving_mean.numpy(),
        source.get_layer("conv4_block3_2_bn").moving_mean.numpy(),
    )
    # Older Keras 3 files name no layers: their groups follow the model's layer order.
    with h5py.File(path, "r+") as f:
        f.visititems(lambda key, item: item.attrs.pop("name", None) and None)
        assert "name" not in f["layers/conv2d/vars"].attrs
    np.testing.assert_array_equal(_run(keras_resnet.ResNet20(weights=path), x), _run(source, x))


def test_keras3_file_of_keras_applications_resnet50_reproduces_it(applications_files, tmp_path):
    # keras.applications' .keras file keeps its conv biases, and its config
    # says its BN epsilon (1.001e-5).
    reference, _, _ = applications_files
    path = str(tmp_path / "applications.keras")
    reference.save(path)
    ours = keras_resnet.ResNet50(weights=path, classifier_activation=None)
    x = _images(n=1)
    expected = _run(reference, x)
    got = _run(ours, x)
    np.testing.assert_allclose(got, expected, atol=1e-4 * max(1.0, np.abs(expected).max()))


def test_keras3_weights_file_of_keras_applications_resnet101_reproduces_it(tmp_path):
    # A .weights.h5 has no config: convs with biases mean keras.applications'
    # epsilon. Small input and no top keep this cheap; ResNet-152 takes the same path.
    reference = keras.applications.ResNet101(weights=None, include_top=False, input_shape=(32, 32, 3))
    _randomise(reference, seed=2)
    path = str(tmp_path / "resnet101.weights.h5")
    reference.save_weights(path)
    ours = keras_resnet.ResNet101(weights=path, include_top=False, input_shape=(32, 32, 3))
    x = _images(n=1, size=32)
    expected, got = _run(reference, x), _run(ours, x)
    np.testing.assert_allclose(got, expected, atol=1e-4 * np.abs(expected).max())


@pytest.mark.parametrize("kind", ["legacy.h5", "applications.keras", "applications.weights.h5"])
def test_conv_biases_and_epsilon_fold_into_the_bn_statistics(tmp_path, kind):
    # keras.applications' convs have biases and its BN epsilon is 1.001e-5,
    # ours are bias-free with 1e-5. With variances near zero, as in channels
    # that a trained net silenced, the epsilon sets the scale: leaving out
    # either fold changes the outputs by more than float rounding does.
    reference = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(32, 32, 3))
    _randomise(reference, seed=4)
    rng = np.random.default_rng(4)
    for layer in reference.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_variance.assign(rng.uniform(0, 2e-5, layer.moving_variance.shape))
    path = str(tmp_path / kind)
    if kind == "legacy.h5":
        write_legacy(reference, path)
    elif kind.endswith(".keras"):
        reference.save(path)
    else:
        reference.save_weights(path)
    ours = keras_resnet.ResNet50(weights=path, include_top=False, input_shape=(32, 32, 3))
    for name in ("conv1", "conv2_block1_0", "conv3_block2_2", "conv5_block3_3"):
        ref_bn, bn = reference.get_layer(f"{name}_bn"), ours.get_layer(f"{name}_bn")
        bias = keras.ops.convert_to_numpy(reference.get_layer(f"{name}_conv").bias)
        np.testing.assert_allclose(bn.moving_mean.numpy(), ref_bn.moving_mean.numpy() - bias, rtol=1e-6)
        np.testing.assert_allclose(bn.moving_variance.numpy(),
                                   ref_bn.moving_variance.numpy() + (1.001e-5 - 1e-5), rtol=1e-6)
    x = _images(n=1, size=32)
    first = lambda model: _run(keras.Model(model.input, model.get_layer("conv1_relu").output), x)
    expected = first(reference)
    np.testing.assert_allclose(first(ours), expected, atol=1e-5 * np.abs(expected).max())


def test_conv_bias_without_a_bn_to_fold_into_is_refused(tmp_path):
    # Our builders put a BN after every conv; a model without one cannot take a bias.
    inputs = keras.Input((8, 8, 3))
    with_bias = keras.Model(inputs, keras.layers.Conv2D(4, 3, name="conv1_conv")(inputs))
    path = str(tmp_path / "bias.weights.h5")
    with_bias.save_weights(path)
    without = keras.Model(inputs, keras.layers.Conv2D(4, 3, use_bias=False, name="conv1_conv")(inputs))
    with pytest.raises(ValueError, match=f"{path} does not fit the model: layer 'conv1_conv' has a conv bias"):
        weights_lib.assign(without, path, weights_lib.read_weights(path))


def test_junk_weights_files_are_named_corrupt(tmp_path):
    source = keras_resnet.ResNet20()
    good_h5, good_keras = str(tmp_path / "good.weights.h5"), str(tmp_path / "good.keras")
    source.save_weights(good_h5)
    source.save(good_keras)
    junk = {
        "random.weights.h5": np.random.RandomState(0).bytes(5000),
        "random.keras": np.random.RandomState(1).bytes(5000),
        "random.h5": np.random.RandomState(2).bytes(5000),
        "truncated.weights.h5": open(good_h5, "rb").read()[:50_000],
        "truncated.keras": open(good_keras, "rb").read()[:50_000],
    }
    for name, content in junk.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ValueError) as info:
            keras_resnet.ResNet20(weights=str(path))
        message = str(info.value)
        assert message.startswith(f"Weights file {path} is corrupt or unreadable: "), message
        assert "\n" not in message and len(message) < 400, message
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["data"] = np.zeros(3)
    with pytest.raises(ValueError, match=f"Weights file {other} is not usable: an HDF5 file with neither Keras layout"):
        keras_resnet.ResNet20(weights=str(other))


# Downloads: Keras' cache in $KERAS_HOME, files from $KERAS_RESNET_WEIGHTS_URL.

NOTOP = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"


def _class_index(folder):
    index = {str(i): [f"n{i:08d}", f"class_{i}"] for i in range(1000)}
    path = folder / "imagenet_class_index.json"
    path.write_text(json.dumps(index))
    return str(path)


def test_imagenet_headline_downloads_once_in_a_fresh_process(applications_files, tmp_path):
    # The package's headline, ResNet50() and decode_predictions, in a process
    # configured only by environment variables, as a user's would be.
    reference, top, notop = applications_files
    served = tmp_path / "served"
    served.mkdir()
    os.symlink(top, served / os.path.basename(top))
    class_index = _class_index(served)
    # Test data: the served stand-ins take the published files' md5s' place.
    stand_in_md5 = {os.path.basename(top): md5(top), "imagenet_class_index.json": md5(class_index)}
    x = np.random.RandomState(5).uniform(0, 255, (1, 224, 224, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    script = textwrap.dedent(
        """
        import json, sys
        import keras
        import numpy as np
        import keras_resnet
        from keras_resnet.models import pretrained
        from tests.helpers import stand_in_table
        vars(pretrained).update(stand_in_table(json.loads(sys.argv[1])))
        x = keras_resnet.preprocess_input(np.load(sys.argv[2]))
        run = lambda model: keras.ops.convert_to_numpy(model(x, training=False))
        preds = run(keras_resnet.ResNet50())
        decoded = keras_resnet.decode_predictions(preds, top=1)
        again = run(keras_resnet.ResNet50())  # from the cache
        keras_resnet.decode_predictions(again, top=1)
        np.save(sys.argv[3], np.stack([preds, again]))
        print(json.dumps([[str(v) for v in decoded[0][0]]]))
        """
    )
    server = FolderServer(served)
    env = dict(os.environ, KERAS_HOME=str(tmp_path / "keras_home"), KERAS_RESNET_WEIGHTS_URL=server.url)
    env["PYTHONPATH"] = os.pathsep.join([os.getcwd(), env.get("PYTHONPATH", "")])
    try:
        result = subprocess.run(
            [sys.executable, "-c", script, json.dumps([str(top), str(class_index)]), str(tmp_path / "x.npy"),
             str(tmp_path / "preds.npy")],
            env=env, capture_output=True, text=True, timeout=300,
        )
    finally:
        server.close()
    assert result.returncode == 0, result.stderr[-3000:]
    assert server.requests == 2  # weights and class index, once each
    cache = tmp_path / "keras_home" / "models"
    assert sorted(os.listdir(cache)) == sorted(stand_in_md5)  # nothing else, no staging files
    assert all(md5(cache / name) == digest for name, digest in stand_in_md5.items())
    preds, again = np.load(tmp_path / "preds.npy")
    logits = _run(reference, keras_resnet.preprocess_input(x))
    expected = keras.ops.convert_to_numpy(keras.ops.softmax(logits))
    np.testing.assert_allclose(preds, expected, atol=1e-4)
    np.testing.assert_array_equal(again, preds)
    best = int(np.argmax(expected))
    assert json.loads(result.stdout.strip().splitlines()[-1])[0][:2] == [f"n{best:08d}", f"class_{best}"]


@pytest.fixture
def env_cache(tmp_path, monkeypatch):
    """Keras' cache in a temp dir, set as a user would: $KERAS_HOME."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    return tmp_path / "keras_home" / "models"


def test_corrupt_download_is_refused_and_a_corrupt_cache_is_replaced(
    applications_files, env_cache, tmp_path, monkeypatch
):
    _, _, notop = applications_files
    served = tmp_path / "served"
    served.mkdir()
    corrupt = bytearray(open(notop, "rb").read())
    corrupt[len(corrupt) // 2] ^= 0xFF
    (served / NOTOP).write_bytes(bytes(corrupt))
    use_stand_ins(monkeypatch, notop)  # test data
    server = FolderServer(served)
    monkeypatch.setenv("KERAS_RESNET_WEIGHTS_URL", server.url)
    try:
        with pytest.raises(ValueError) as info:
            keras_resnet.ResNet50(include_top=False)
        assert f"The file downloaded from {server.url}{NOTOP} has md5 {md5(served / NOTOP)}, not " \
            f"the expected {md5(notop)}: it was refused and not cached." in str(info.value)
        assert server.requests == 1 and os.listdir(env_cache) == []
        # A cached file whose md5 is wrong is removed and downloaded again.
        (served / NOTOP).write_bytes(open(notop, "rb").read())
        (env_cache / NOTOP).write_bytes(bytes(corrupt))
        assert downloads.fetch(pretrained.find("resnet50", "imagenet"), include_top=False) == str(env_cache / NOTOP)
        assert server.requests == 2 and md5(env_cache / NOTOP) == md5(notop)
    finally:
        server.close()


class _BadServer:
    """A server on 127.0.0.1 that answers every connection with `behave(conn)`."""

    def __init__(self, behave):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/"
        self.behave = behave
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self.behave(conn)

    def close(self):
        self.sock.close()


def _close_at_once(conn):
    conn.recv(4096)


def _half_then_close(conn):
    conn.recv(4096)
    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 500)


def _silent(conn):
    conn.recv(4096)
    time.sleep(5)


@pytest.mark.parametrize(
    "behave,reason",
    [
        (_close_at_once, "the server closed the connection without answering"),
        (_half_then_close, "the connection closed after 500 of 1000 bytes"),
        (_silent, "no answer within 1 s (see KERAS_RESNET_DOWNLOAD_TIMEOUT)"),
        (None, "HTTP error 404 File not found"),
    ],
)
def test_failed_download_is_one_clear_error_within_seconds(env_cache, monkeypatch, behave, reason):
    server = _BadServer(behave) if behave else FolderServer(env_cache.parent)
    monkeypatch.setenv("KERAS_RESNET_WEIGHTS_URL", server.url)
    monkeypatch.setenv("KERAS_RESNET_DOWNLOAD_TIMEOUT", "1")
    start = time.monotonic()
    try:
        with pytest.raises(OSError) as info:
            downloads.fetch(pretrained.find("resnet50", "imagenet"), include_top=False)
    finally:
        server.close()
    assert time.monotonic() - start < 4
    assert str(info.value) == (
        f"Could not download {server.url}{NOTOP}: {reason}. Download it where you can and "
        f"pass its path: ResNet50(weights='/path/to/{NOTOP}', include_top=False); or set "
        "KERAS_RESNET_WEIGHTS_URL to a folder (http://, https:// or file://) that holds it."
    )
    assert os.listdir(env_cache) == []


def test_download_settings_are_checked(env_cache, monkeypatch):
    monkeypatch.setenv("KERAS_RESNET_WEIGHTS_URL", "ftp://mirror/resnet")
    with pytest.raises(ValueError, match="KERAS_RESNET_WEIGHTS_URL must be an http://, https:// or file:// "
                                         "URL of a folder. Received: KERAS_RESNET_WEIGHTS_URL='ftp://mirror/resnet'"):
        keras_resnet.ResNet50(include_top=False)
    monkeypatch.setenv("KERAS_RESNET_WEIGHTS_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("KERAS_RESNET_DOWNLOAD_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="must be a number of seconds > 0. Received: KERAS_RESNET_DOWNLOAD_TIMEOUT='soon'"):
        downloads.fetch(pretrained.find("resnet50", "imagenet"), include_top=False)
    # Nothing listens on port 9 (discard): refused at once, for every depth's file.
    monkeypatch.delenv("KERAS_RESNET_DOWNLOAD_TIMEOUT")
    with pytest.raises(OSError, match=r"Could not download http://127.0.0.1:9/resnet152_weights_tf_dim_ordering_tf_kernels.h5: "
                                      r".*Connection refused.*ResNet152\(weights='/path/to/resnet152_weights"):
        downloads.fetch(pretrained.find("resnet152", "imagenet"), include_top=True)


# ~20 s, not marked slow: no faster test takes train.py's fine-tuning path through a download.
def test_imagenet_weights_in_train_evaluate_and_export(
    applications_files, env_cache, image_folder, tmp_path, monkeypatch
):
    """train.py, evaluate.py and export take --weights=imagenet through the
    same download (the line that once broke all three): from a mirror on
    127.0.0.1 into $KERAS_HOME, each file fetched once."""
    from keras_resnet.evaluation import artefacts
    from keras_resnet.export import inputs
    from keras_resnet.training import trainer

    reference, top, notop = applications_files
    use_stand_ins(monkeypatch, top, notop)  # test data
    server = FolderServer(os.path.dirname(top))
    monkeypatch.setenv("KERAS_RESNET_WEIGHTS_URL", server.url)
    try:
        # Fine-tuning on 3 classes: the no-top file, a new head, a frozen backbone.
        result = trainer.train(trainer.Config(
            model="resnet50", weights="imagenet", freeze_backbone=True, dataset=str(image_folder),
            recipe="smoke", image_size=32, batch_size=4, train_steps=1,
            model_dir=str(tmp_path / "run"), verbose=0,
        ))
        assert result.model.output_shape == (None, 3)
        trained = result.model.get_layer("resnet50").get_layer("conv1_conv").kernel
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(trained), reference.get_layer("conv1_conv").kernel.numpy()
        )
        x = np.random.RandomState(4).uniform(0, 255, (1, 224, 224, 3)).astype("float32")
        expected = keras.ops.convert_to_numpy(
            keras.ops.softmax(_run(reference, preprocessing.preprocess_input(x)))
        )
        evaluated = artefacts.load_artefact(model="resnet50", weights="imagenet").predict(x)
        exported = inputs.load_model(model_name="resnet50", weights="imagenet")
        np.testing.assert_allclose(evaluated, expected, atol=1e-5)
        np.testing.assert_allclose(_run(exported, x), expected, atol=1e-5)
        assert server.requests == 2 and sorted(os.listdir(env_cache)) == sorted(
            os.path.basename(p) for p in (top, notop)
        )
    finally:
        server.close()


def test_download_errors_advise_the_flag_to_programs(applications_files, env_cache, tmp_path,
                                                     monkeypatch):
    # The library's advice is Python (ResNet50(weights=...)); the programs
    # (train.py, evaluate.py, export) print `hint("--")`, their --weights flag.
    (tmp_path / "mirror").mkdir()
    monkeypatch.setenv("KERAS_RESNET_WEIGHTS_URL", (tmp_path / "mirror").as_uri())
    flag = (f"Download it where you can and pass its path: --weights=/path/to/{NOTOP}; or set "
            "KERAS_RESNET_WEIGHTS_URL to a folder (http://, https:// or file://) that holds it.")
    with pytest.raises(downloads.DownloadError) as info:
        downloads.fetch(pretrained.find("resnet50", "imagenet"), include_top=False)
    assert info.value.cause.startswith(f"Could not download {(tmp_path / 'mirror').as_uri()}/{NOTOP}")
    assert str(info.value) == f"{info.value.cause}. {info.value.hint('')}"
    assert f"ResNet50(weights='/path/to/{NOTOP}', include_top=False)" in str(info.value)
    assert info.value.hint("--") == flag
    # A corrupt download too, which is also a ValueError, as a corrupt file is.
    (tmp_path / "mirror" / NOTOP).write_bytes(b"not the published file")
    use_stand_ins(monkeypatch, applications_files[2])  # test data
    with pytest.raises(downloads.ChecksumError) as info:
        downloads.fetch(pretrained.find("resnet50", "imagenet"), include_top=False)
    assert isinstance(info.value, ValueError) and info.value.hint("--") == flag
    assert info.value.cause.endswith("it was refused and not cached")
