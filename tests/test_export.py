"""export/: the SavedModel and TFLite files equal the Keras model they come from."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import keras_resnet
from export import saved_model
from export import source
from export import tflite
from keras_resnet import data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.dirname(sys.executable)


def _photo(h, w, seed):
    """Smooth gradients plus a little noise: resizing and JPEG both matter."""
    rng = np.random.RandomState(seed)
    rows, cols = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    image = np.stack([rows, cols, 1 - rows * cols], -1) * rng.uniform(120, 255, 3)
    return np.clip(image + rng.normal(0, 8, (h, w, 3)), 0, 255).astype("uint8")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    # Images as a user's folder holds them: class subfolders, JPEG and PNG,
    # sizes other than the model's, a grayscale PNG, and one corrupt file.
    for i, (h, w) in enumerate([(40, 52), (32, 32), (48, 36), (60, 60), (28, 44), (33, 40)]):
        encode, ext = (tf.io.encode_png, "png") if i % 2 else (tf.io.encode_jpeg, "jpg")
        os.makedirs(root / "images" / f"class{i % 2}", exist_ok=True)
        tf.io.write_file(str(root / "images" / f"class{i % 2}" / f"{i}.{ext}"), encode(_photo(h, w, i)))
    gray = _photo(36, 30, 9)[..., :1]
    tf.io.write_file(str(root / "images" / "class0" / "gray.png"), tf.io.encode_png(gray))
    (root / "images" / "class1" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    return root


@pytest.fixture(scope="module")
def keras_file(workdir):
    """A ResNet-20 as train.py saves it: its per-pixel mean subtraction inside."""
    keras.utils.set_random_seed(0)
    images = np.random.RandomState(0).uniform(0, 255, (16, 32, 32, 3)).astype("float32")
    layer = keras_resnet.MeanSubtraction(images.mean(0), name="preprocessing")
    model = keras_resnet.with_preprocessing(keras_resnet.ResNet20(), layer)
    # Random BN statistics saturate the softmax to one-hot, which would make
    # every comparison below trivially exact: adapt them to the images first.
    step = tf.function(lambda: model(images, training=True))
    for _ in range(20):
        step()
    # Compiled as train.py does, with a schedule class that the exporter
    # cannot import (train.py's lives in keras_resnet.recipes).
    model.compile(optimizer=keras.optimizers.SGD(_Schedule()), loss="categorical_crossentropy")
    path = str(workdir / "resnet20.keras")
    model.save(path)
    del keras.saving.get_custom_objects()["test_export>_Schedule"]
    return path


@keras.saving.register_keras_serializable(package="test_export")
class _Schedule(keras.optimizers.schedules.LearningRateSchedule):
    def __call__(self, step):
        return 0.1

    def get_config(self):
        return {}


@pytest.fixture(scope="module")
def model(keras_file):
    return source.load_model(keras_file)


@pytest.fixture(scope="module")
def exported(model, workdir):
    report = saved_model.export_saved_model(model, str(workdir / "serving"))
    return report, tf.saved_model.load(report.path)


def _images(n, seed=1):
    return np.random.RandomState(seed).uniform(0, 255, (n, 32, 32, 3)).astype("float32")


def _files(workdir, pattern):
    return sorted(str(p) for p in (workdir / "images").glob(f"class*/{pattern}"))


# ------------------------------------------------------------------ SavedModel


def test_saved_model_has_tf_serving_layout_and_signatures(exported, workdir):
    report, loaded = exported
    # TF Serving: <base path>/<model name>/<version>/saved_model.pb
    assert report.path == str(workdir / "serving" / "resnet20" / "1")
    assert os.path.isfile(os.path.join(report.path, "saved_model.pb"))
    assert os.listdir(workdir / "serving" / "resnet20") == ["1"]  # no staging left
    # Each weight stored once (float32): Keras' own export stores them twice.
    weights = sum(int(np.prod(v.shape)) for v in loaded.model_weights)
    data_file = os.path.join(report.path, "variables", "variables.data-00000-of-00001")
    assert 4 * weights <= os.path.getsize(data_file) < 1.1 * 4 * weights
    assert set(loaded.signatures) == {"serving_default", "serving_bytes"}
    inputs = {
        name: fn.structured_input_signature[1] for name, fn in loaded.signatures.items()
    }
    assert inputs["serving_default"] == {
        "images": tf.TensorSpec([None, 32, 32, 3], tf.float32, name="images")
    }
    assert inputs["serving_bytes"] == {
        "image_bytes": tf.TensorSpec([None], tf.string, name="image_bytes")
    }
    for fn in loaded.signatures.values():
        outputs = fn.structured_outputs
        assert outputs["probabilities"].shape.as_list() == [None, 10]
        assert outputs["top_k_classes"].dtype == tf.int32
        assert outputs["top_k_classes"].shape.as_list() == [None, 5]
        assert outputs["top_k_scores"].shape.as_list() == [None, 5]


def test_saved_model_cli_lists_the_signatures(exported):
    cli = os.path.join(VENV_BIN, "saved_model_cli")
    if not os.path.exists(cli):
        pytest.skip("saved_model_cli is not installed beside this Python")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([cli, "show", "--dir", exported[0].path, "--all"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    for text in ("signature_def['serving_default']", "signature_def['serving_bytes']",
                 "inputs['images']", "inputs['image_bytes']", "outputs['probabilities']",
                 "outputs['top_k_classes']", "outputs['top_k_scores']"):
        assert text in proc.stdout, text


def test_saved_model_serves_without_this_package(exported, model, workdir):
    """TF Serving has no Python: a fresh process with TensorFlow alone serves it."""
    png = _files(workdir, "*.png")[0]
    script = (
        "import json, sys, tensorflow as tf; "
        f"f = tf.saved_model.load({exported[0].path!r}).signatures['serving_bytes']; "
        f"p = f(image_bytes=tf.stack([tf.io.read_file({png!r})]))['probabilities']; "
        "assert 'keras_resnet' not in sys.modules and 'export' not in sys.modules; "
        "print(json.dumps(p.numpy()[0].tolist()))"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env=env, cwd=str(workdir))
    assert proc.returncode == 0, proc.stderr
    served = np.array(json.loads(proc.stdout.strip().splitlines()[-1]))
    here = exported[1].signatures["serving_bytes"](image_bytes=tf.stack([tf.io.read_file(png)]))
    np.testing.assert_allclose(served, here["probabilities"].numpy()[0], atol=1e-6)


def test_serving_default_equals_keras(exported, model):
    report, loaded = exported
    images = _images(6)
    served = loaded.signatures["serving_default"](images=tf.constant(images))
    expected = model.predict(images, verbose=0)
    assert np.abs(served["probabilities"].numpy() - expected).max() <= 1e-5
    assert report.max_abs_diff <= 1e-5 and report.top1_agreement == 1.0
    # Not one-hot: the comparison has something to compare.
    assert expected.max() < 0.9
    order = np.argsort(-expected, axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(served["top_k_classes"].numpy(), order)
    np.testing.assert_allclose(
        served["top_k_scores"].numpy(), np.take_along_axis(expected, order, 1), atol=1e-5
    )


def _bytes_vs_keras(loaded, model, paths, transform):
    contents = [tf.io.read_file(p) for p in paths]
    served = loaded.signatures["serving_bytes"](image_bytes=tf.stack(contents))
    # Keras on the same image decoded and resized by keras_resnet.data's
    # evaluation transform, outside any graph.
    views = np.stack([
        transform(tf.io.decode_image(c, channels=3, expand_animations=False), 32).numpy()
        for c in contents
    ])
    expected = model.predict(views, verbose=0)
    return np.abs(served["probabilities"].numpy() - expected).max()


def test_serving_bytes_equals_keras_on_jpeg_and_png(exported, model, workdir):
    paths = _files(workdir, "*.jpg")[:-1] + _files(workdir, "*.png")  # not broken.jpg
    assert {os.path.splitext(p)[1] for p in paths} == {".jpg", ".png"}
    # ResNet-20: the CIFAR protocol, the whole image resized (data.resize_to).
    assert _bytes_vs_keras(exported[1], model, paths, data.resize_to) <= 1e-5


def test_serving_bytes_imagenet_protocol_and_next_version(model, workdir, tmp_path):
    for existing in ("1", "3", "tmp"):
        os.makedirs(tmp_path / "resnet20" / existing)
    report = saved_model.export_saved_model(model, str(tmp_path), transform_name="imagenet")
    # New version = highest existing + 1; non-numbers are not versions.
    assert report.path == str(tmp_path / "resnet20" / "4")
    paths = _files(workdir, "*.png")
    loaded = tf.saved_model.load(report.path)
    # Shorter side to 32/0.875, centre crop (data.resize_center_crop).
    assert _bytes_vs_keras(loaded, model, paths, data.resize_center_crop) <= 1e-5


def test_top_k_is_at_most_the_number_of_classes():
    keras.utils.set_random_seed(0)
    model = keras_resnet.with_preprocessing(
        keras_resnet.ResNet20(classes=3), keras_resnet.caffe_preprocessing()
    )
    serve, _ = saved_model.serving_functions(model)["serving_default"]
    outputs = serve(tf.constant(_images(2)))
    assert outputs["top_k_classes"].shape == (2, 3) and outputs["top_k_scores"].shape == (2, 3)
    np.testing.assert_array_equal(np.sort(outputs["top_k_classes"].numpy(), 1), [[0, 1, 2]] * 2)


def test_eval_transform_follows_the_family():
    # CIFAR (Sec. 4.2) evaluates the image itself, ImageNet (Sec. 3.4) a crop,
    # whatever the size, as train.py does; the size decides for other names.
    assert source.eval_transform("auto", 64, "resnet20") is data.resize_to
    assert source.eval_transform("auto", 32, "resnet18") is data.resize_center_crop
    assert source.eval_transform("auto", 48, "my_net") is data.resize_to
    assert source.eval_transform("auto", 64, "my_net") is data.resize_center_crop
    assert source.eval_transform("cifar", 224, "resnet50") is data.resize_to
    assert source.eval_transform("imagenet", 32, "resnet20") is data.resize_center_crop
    with pytest.raises(ValueError, match=r"'crop'. Accepted: auto, cifar, imagenet"):
        source.eval_transform("crop", 32)


def test_bad_requests_fail_with_invalid_argument_and_serving_goes_on(exported, workdir):
    loaded = exported[1]
    by_bytes, by_images = loaded.signatures["serving_bytes"], loaded.signatures["serving_default"]
    good = tf.io.read_file(_files(workdir, "*.png")[0])
    before = by_bytes(image_bytes=tf.stack([good]))["probabilities"].numpy()
    jpeg = tf.io.encode_jpeg(_photo(32, 32, 0)).numpy()
    bad_requests = [
        (by_bytes, dict(image_bytes=tf.constant([b"no image here"])), "Unknown image file format"),
        (by_bytes, dict(image_bytes=tf.constant([good.numpy(), jpeg[: len(jpeg) // 2]])), "JPEG"),
        (by_bytes, dict(image_bytes=good), r"image_bytes \[\] is not compatible with expected shape \[\?\]"),
        (by_bytes, dict(image_bytes=tf.zeros([1])), "expected to be a string tensor but is a float"),
        (by_images, dict(images=tf.zeros([32, 32, 3])), r"images \[32,32,3\] is not compatible with expected shape \[\?,32,32,3\]"),
        (by_images, dict(images=tf.zeros([1, 30, 32, 3])), r"images \[1,30,32,3\] is not compatible"),
        (by_images, dict(images=tf.zeros([1, 32, 32, 3], tf.int32)), "expected to be a float tensor but is a int32"),
    ]
    for fn, request, message in bad_requests:
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            fn(**request)
    empty = by_bytes(image_bytes=tf.zeros([0], tf.string))["probabilities"]
    assert empty.shape == (0, 10)  # an empty batch is not an error
    assert by_images(images=tf.zeros([0, 32, 32, 3]))["top_k_classes"].shape == (0, 5)
    after = by_bytes(image_bytes=tf.stack([good]))["probabilities"].numpy()
    np.testing.assert_array_equal(after, before)
    images = _images(2)
    assert by_images(images=tf.constant(images))["probabilities"].shape == (2, 10)


def test_existing_version_is_refused_unless_overwrite(model, tmp_path):
    version = tmp_path / "resnet20" / "2"
    os.makedirs(version)
    (version / "keep.txt").write_text("an old version")
    with pytest.raises(ValueError, match=r"Version 2 of 'resnet20' exists.*--overwrite.*version 3"):
        saved_model.export_saved_model(model, str(tmp_path), version=2)
    assert os.listdir(version) == ["keep.txt"]
    assert sorted(os.listdir(tmp_path / "resnet20")) == ["2"]
    report = saved_model.export_saved_model(model, str(tmp_path), version=2, overwrite=True)
    assert report.path == str(version) and not (version / "keep.txt").exists()
    assert os.path.isfile(version / "saved_model.pb")
    assert sorted(os.listdir(tmp_path / "resnet20")) == ["2"]  # nothing hidden left


def test_load_model_refuses_what_it_cannot_load(tmp_path):
    with pytest.raises(ValueError, match=r"Model file does not exist: '.*missing.keras'"):
        source.load_model(str(tmp_path / "missing.keras"))
    (tmp_path / "model.h5").write_bytes(b"")
    (tmp_path / "bad.keras").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match=r"Cannot load model file '.*bad.keras' \(\w+Error: "):
        source.load_model(str(tmp_path / "bad.keras"))
    with pytest.raises(ValueError, match=r"must be a .keras file"):
        source.load_model(str(tmp_path / "model.h5"))
    with pytest.raises(ValueError, match=r"not both and not neither"):
        source.load_model()
    with pytest.raises(ValueError, match=r"Weights file does not exist: 'nope.h5'"):
        source.load_model(model_name="resnet20", weights="nope.h5")


def test_load_model_by_name_puts_caffe_preprocessing_in_front(tmp_path):
    keras.utils.set_random_seed(0)
    net = keras_resnet.ResNet20()
    weights = str(tmp_path / "resnet20.weights.h5")
    net.save_weights(weights)
    model = source.load_model(model_name="resnet20", weights=weights)
    images = _images(2)
    np.testing.assert_allclose(
        model.predict(images, verbose=0),
        net.predict(keras_resnet.preprocess_input(images), verbose=0),
        atol=1e-6,
    )


# ------------------------------------------------------------- images, TFLite


def test_load_images_from_folders_with_or_without_classes(workdir, tmp_path):
    nested = source.load_images(str(workdir / "images"), 32, data.resize_to, limit=100)
    # 7 readable images at any depth; the corrupt one is skipped.
    assert nested.pixels.shape == (7, 32, 32, 3) and nested.pixels.dtype == np.float32
    flat = tmp_path / "flat"
    os.makedirs(flat)
    for p in _files(workdir, "*.png"):
        os.link(p, flat / os.path.basename(p))
    assert source.load_images(str(flat), 32, data.resize_to, limit=2).pixels.shape[0] == 2
    with pytest.raises(ValueError, match=r"Image source does not exist: 'nowhere'"):
        source.load_images("nowhere", 32, data.resize_to)
    os.makedirs(tmp_path / "empty" / "class0")
    with pytest.raises(ValueError, match=r"No JPEG/PNG images in '.*empty' or its subfolders"):
        source.load_images(str(tmp_path / "empty"), 32, data.resize_to)


def test_load_images_from_a_tfds_split():
    with tfds.testing.mock_data(num_examples=5):
        images = source.load_images("tfds:cifar10:test", 32, data.resize_to, limit=3)
    assert images.pixels.shape == (3, 32, 32, 3)
    assert images.source == "3 images of tfds:cifar10:test"


def test_tflite_float32_equals_keras(model, workdir):
    images = source.load_images(str(workdir / "images"), 32, data.resize_to)
    report = tflite.export_tflite(model, str(workdir / "tflite"), images=images)
    assert report.path == str(workdir / "tflite" / "resnet20_float32.tflite")
    assert report.size_bytes == os.path.getsize(report.path)
    # Checked again here, apart from the report's own comparison.
    diff = np.abs(tflite.run(report.path, images.pixels) - model.predict(images.pixels, verbose=0))
    assert diff.max() <= 1e-4 and report.max_abs_diff <= 1e-4
    assert report.top1_agreement == 1.0
    with pytest.raises(ValueError, match=r"TFLite file exists: .*--overwrite"):
        tflite.export_tflite(model, str(workdir / "tflite"), images=images)


@pytest.mark.parametrize(
    # Upper bounds of file size per parameter (float32 is 4 bytes) and of the
    # difference with Keras on probabilities.
    "quantize, bytes_per_param, max_diff",
    [("float16", 2.4, 1e-2), ("dynamic", 1.4, 0.1), ("int8", 1.4, None)],
)
def test_tflite_quantized(model, workdir, quantize, bytes_per_param, max_diff):
    images = source.load_images(str(workdir / "images"), 32, data.resize_to)
    report = tflite.export_tflite(model, str(workdir / "tflite"), quantize=quantize, images=images)
    assert report.size_bytes < bytes_per_param * keras_resnet.count_params(model)
    print(quantize, report)  # pytest -s shows the measured numbers.
    if max_diff is not None:
        assert report.max_abs_diff <= max_diff
    # int8: measured and reported; no threshold on a random-weight network.
    assert 0.0 <= report.top1_agreement <= 1.0 and report.max_abs_diff > 0
    assert report.images == "7 images of " + str(workdir / "images")


def test_int8_needs_representative_images(model, tmp_path):
    with pytest.raises(ValueError, match=r"int8 quantization needs a representative dataset"):
        tflite.export_tflite(model, str(tmp_path), quantize="int8")
    with pytest.raises(ValueError, match=r"'int4'. Accepted: none, float16, dynamic, int8"):
        tflite.export_tflite(model, str(tmp_path), quantize="int4")


# ------------------------------------------------------------------------ CLI


def _cli(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "export", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_errors_are_one_line(tmp_path, keras_file):
    proc = _cli(f"--model_path={tmp_path}/missing.keras", f"--output_dir={tmp_path}")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"export: error: Model file does not exist: '{tmp_path}/missing.keras'"
    )
    os.makedirs(tmp_path / "resnet20" / "1")
    proc = _cli(f"--model_path={keras_file}", f"--output_dir={tmp_path}", "--version=1")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "export: error: Version 1 of 'resnet20' exists"
    )


def test_cli_writes_and_reports_a_tflite_file(tmp_path, keras_file, workdir):
    proc = _cli(f"--model_path={keras_file}", f"--output_dir={tmp_path}", "--format=tflite",
                "--quantize=dynamic", f"--representative_dataset={workdir / 'images'}")
    assert proc.returncode == 0, proc.stderr
    path = tmp_path / "resnet20_dynamic.tflite"
    assert path.is_file()
    assert f"{path}: " in proc.stdout
    assert "against Keras on 7 images of" in proc.stdout and "top-1 agreement" in proc.stdout
