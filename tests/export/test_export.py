"""export/: the SavedModel and TFLite files equal the Keras model they come from."""

import collections
import contextlib
import io
import json
import os
import re
import signal
import stat
import struct
import subprocess
import sys
import time
import zlib

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from tensorflow.core.protobuf import saved_model_pb2

import keras_resnet
from keras_resnet import files
from keras_resnet.data import augment
from keras_resnet.errors import ArgumentError
from keras_resnet.evaluation import artefacts
from keras_resnet.export import inputs
from keras_resnet.export import saved_model
from keras_resnet.export import tflite
from keras_resnet.models import metadata
from tests.helpers import dead_pid
from tests.helpers import default_sigint
from tests.helpers import error_line
from tests.helpers import file_size_limit
from tests.helpers import run_commands

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
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
    # cannot import (train.py's lives in keras_resnet.training.recipes).
    model.compile(optimizer=keras.optimizers.SGD(_Schedule()), loss="categorical_crossentropy")
    path = str(workdir / "resnet20.keras")
    model.save(path)
    metadata.write_keras(path, _info())  # as train.py writes it
    # Registered once, at import; the fixture runs again for each test module
    # that uses it (test_hostile_images).
    keras.saving.get_custom_objects().pop("test_export>_Schedule", None)
    return path


def _info(**changes):
    """train.py's metadata of a ResNet-20 on CIFAR-10 (class names shortened)."""
    fields = dict(model="resnet20", family="cifar", image_size=32, test_view="single",
                  class_names=[f"c{i}" for i in range(10)], preprocessing="pixel_mean")
    return metadata.ModelInfo(**{**fields, **changes})


@keras.saving.register_keras_serializable(package="test_export")
class _Schedule(keras.optimizers.schedules.LearningRateSchedule):
    def __call__(self, step):
        return 0.1

    def get_config(self):
        return {}


@pytest.fixture(scope="module")
def model(keras_file):
    return inputs.load_model(keras_file)


@pytest.fixture(scope="module")
def info(keras_file):
    return metadata.read_keras(keras_file)


@contextlib.contextmanager
def _umask(mask):
    """Files and folders created inside (by subprocesses too) get `mask`."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _modes(root):
    """{path: (is a folder, permission bits)} of `root` and all below it."""
    paths = [str(root)] + [str(p) for p in root.rglob("*")]
    return {p: (os.path.isdir(p), stat.S_IMODE(os.lstat(p).st_mode)) for p in paths}


def _wrong_modes(root, folder_mode, file_mode):
    """The paths below `root` (and itself) whose modes are not those."""
    return {
        p: oct(m) for p, (is_dir, m) in _modes(root).items()
        if m != (folder_mode if is_dir else file_mode)
    }


@pytest.fixture(scope="module")
def exported(model, info, workdir):
    with _umask(0o022):  # the usual default
        report = saved_model.export_saved_model(model, str(workdir / "serving"), info=info)
    return report, tf.saved_model.load(report.path)


def _images(n, seed=1):
    return np.random.RandomState(seed).uniform(0, 255, (n, 32, 32, 3)).astype("float32")


def _with(images, index, value):
    """`images` with one pixel of image `index` set to `value`."""
    images[index, 3, 5, 1] = value
    return images


def _files(workdir, pattern):
    return sorted(str(p) for p in (workdir / "images").glob(f"class*/{pattern}"))


# ------------------------------------------------------------------ SavedModel


def test_saved_model_has_tf_serving_layout_and_signatures(exported, model, workdir):
    report, loaded = exported
    # TF Serving: <base path>/<model name>/<version>/saved_model.pb
    assert report.path == str(workdir / "serving" / "resnet20" / "1")
    assert os.path.isfile(os.path.join(report.path, "saved_model.pb"))
    # No staging left; the lock file of the export's RunLock, which TF Serving ignores.
    assert sorted(os.listdir(workdir / "serving" / "resnet20")) == [".lock", "1"]
    # Readable by TF Serving running as another user (umask 022).
    assert len(_modes(workdir / "serving")) >= 8
    assert _wrong_modes(workdir / "serving", 0o755, 0o644) == {}
    # The weights (BN folded) are constants of the graph, stored once: a
    # second copy would double saved_model.pb. No variables are left.
    weight_bytes = saved_model.weight_bytes(keras_resnet.fold_batch_norm(model))
    assert weight_bytes <= os.path.getsize(os.path.join(report.path, "saved_model.pb")) < 1.25 * weight_bytes
    assert not hasattr(loaded, "model_weights")
    assert os.path.getsize(os.path.join(report.path, "variables", "variables.data-00000-of-00001")) < 1024
    assert set(loaded.signatures) == {"serving_default", "serving_bytes", "metadata"}
    inputs = {
        name: fn.structured_input_signature[1] for name, fn in loaded.signatures.items()
    }
    assert inputs["serving_default"] == {
        "images": tf.TensorSpec([None, 32, 32, 3], tf.float32, name="images")
    }
    assert inputs["serving_bytes"] == {
        "image_bytes": tf.TensorSpec([None], tf.string, name="image_bytes")
    }
    for fn in (loaded.signatures["serving_default"], loaded.signatures["serving_bytes"]):
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
                 "signature_def['metadata']", "outputs['metadata']",
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


def _batch_norms(model):
    """The BatchNormalization layers of `model` and of the models nested in it."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found += _batch_norms(layer)
        elif isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
    return found


def _graph_ops(path):
    """{op type: count} over the functions of the SavedModel at `path`."""
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        proto = saved_model_pb2.SavedModel.FromString(f.read())
    return collections.Counter(
        node.op for function in proto.meta_graphs[0].graph_def.library.function
        for node in function.node_def
    )


def _assert_serves_alike(loaded, other, other_report):
    """The default export `loaded` and another, `other`, serve the same
    probabilities, and the other's own check against Keras passed."""
    images = tf.constant(_images(6))
    outputs = [m.signatures["serving_default"](images=images)["probabilities"] for m in (loaded, other)]
    np.testing.assert_allclose(outputs[0], outputs[1], atol=1e-5)
    assert other_report.max_abs_diff <= 1e-5 and other_report.top1_agreement == 1.0


def test_served_graph_has_bn_folded_unless_asked_not_to(exported, model, info, tmp_path):
    report, loaded = exported
    kept = saved_model.export_saved_model(model, str(tmp_path), info=info, fold_bn=False)
    unfolded = tf.saved_model.load(kept.path)
    # An unfolded BN serves as one FusedBatchNormV3 (keras_resnet.models.fused); a
    # folded one is in its conv's kernel and bias.
    kept_ops, folded_ops = _graph_ops(kept.path), _graph_ops(report.path)
    assert kept_ops["FusedBatchNormV3"] == len(_batch_norms(model)) > 0
    assert folded_ops["FusedBatchNormV3"] == folded_ops["Rsqrt"] == 0
    _assert_serves_alike(loaded, unfolded, kept)


def test_unfrozen_graph_reads_variables_stored_once(exported, model, info, tmp_path):
    report, loaded = exported
    kept = saved_model.export_saved_model(model, str(tmp_path), info=info, fold_bn=False, freeze=False)
    unfrozen = tf.saved_model.load(kept.path)
    assert len(unfrozen.model_weights) == len(model.variables)
    # Each weight stored once (float32): Keras' own export stores them twice.
    weights = sum(int(np.prod(v.shape)) for v in unfrozen.model_weights)
    data_file = os.path.join(kept.path, "variables", "variables.data-00000-of-00001")
    assert 4 * weights <= os.path.getsize(data_file) < 1.1 * 4 * weights
    assert os.path.getsize(os.path.join(kept.path, "saved_model.pb")) < 4 * weights
    _assert_serves_alike(loaded, unfrozen, kept)


def test_weights_too_large_for_the_graph_stay_variables(model, info, tmp_path, monkeypatch):
    monkeypatch.setattr(saved_model, "FREEZE_MAX_BYTES", 1000)
    report = saved_model.export_saved_model(model, str(tmp_path), info=info)
    loaded = tf.saved_model.load(report.path)
    assert len(loaded.model_weights) == len(model.variables) - 3 * len(_batch_norms(model))
    assert report.max_abs_diff <= 1e-5 and report.top1_agreement == 1.0


def _bytes_vs_keras(loaded, model, paths, transform):
    contents = [tf.io.read_file(p) for p in paths]
    served = loaded.signatures["serving_bytes"](image_bytes=tf.stack(contents))
    # Keras on the same image decoded and resized by keras_resnet.data.augment's
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
    # Its metadata's test view: "single", the whole image resized (augment.resize_to).
    assert _bytes_vs_keras(exported[1], model, paths, augment.resize_to) <= 1e-5


def test_serving_bytes_imagenet_protocol_and_next_version(model, info, workdir, tmp_path):
    for existing in ("1", "3", "tmp"):
        os.makedirs(tmp_path / "resnet20" / existing)
    report = saved_model.export_saved_model(model, str(tmp_path), info=info, eval_transform="center")
    # New version = highest existing + 1; non-numbers are not versions.
    assert report.path == str(tmp_path / "resnet20" / "4")
    paths = _files(workdir, "*.png")
    loaded = tf.saved_model.load(report.path)
    # Shorter side to 32 * 256 / 224, centre crop (augment.resize_center_crop).
    assert _bytes_vs_keras(loaded, model, paths, augment.resize_center_crop) <= 1e-5
    # The metadata records the view it serves.
    assert artefacts.saved_model_info(loaded, report.path) == _info(test_view="center")


def test_top_k_is_at_most_the_number_of_classes():
    model = keras_resnet.with_preprocessing(
        keras_resnet.ResNet20(classes=3), keras_resnet.caffe_preprocessing()
    )
    serve, _ = saved_model.serving_functions(model, "center")["serving_default"]
    outputs = serve(tf.constant(_images(2)))
    assert outputs["top_k_classes"].shape == (2, 3) and outputs["top_k_scores"].shape == (2, 3)
    np.testing.assert_array_equal(np.sort(outputs["top_k_classes"].numpy(), 1), [[0, 1, 2]] * 2)


def test_the_test_view_is_the_metadata_s():
    # CIFAR (Sec. 4.2) evaluates the image itself, ImageNet (Sec. 3.4) a crop,
    # whatever the size, as train.py does: the metadata says which.
    assert inputs.test_view("auto", _info(image_size=64)) == "single"
    assert inputs.test_view("auto", _info(test_view="center", family="imagenet")) == "center"
    assert inputs.test_view("center", _info()) == "center"
    assert inputs.test_view("single", None) == "single"
    image = _photo(40, 52, 0)
    np.testing.assert_array_equal(inputs.eval_transform("auto", _info())(image, 32), augment.resize_to(image, 32))
    with pytest.raises(ArgumentError, match=r"eval_transform must be one of single, center for "
                                            r"'mine.keras': it carries no keras_resnet metadata"):
        inputs.test_view("auto", None, "'mine.keras'")
    with pytest.raises(ArgumentError, match=r"Received: eval_transform='cifar'"):
        inputs.test_view("cifar", _info())
    # A named model's: its family's default recipe's view (keras_resnet.training.recipes).
    assert artefacts.named_info("resnet50").test_view == "center"
    assert artefacts.named_info("ResNet-20", 48).test_view == "single"


def test_saved_model_metadata_asset_and_signature(exported, info, workdir, tmp_path):
    report, loaded = exported
    # The asset file travels with the SavedModel: a copy elsewhere reads its own.
    asset = os.path.join(report.path, "assets", metadata.FILE_NAME)
    assert metadata.ModelInfo.from_json(open(asset).read(), asset) == info
    copy = str(tmp_path / "copy")
    import shutil
    shutil.copytree(report.path, copy)
    os.rename(report.path, report.path + ".moved")
    try:
        reloaded = tf.saved_model.load(copy)
        text = reloaded.signatures["metadata"]()["metadata"]
        assert text.dtype == tf.string and text.shape == ()
        assert metadata.ModelInfo.from_json(text.numpy(), copy) == info
        assert artefacts.load_artefact(copy).info == info
    finally:
        os.rename(report.path + ".moved", report.path)
    assert info.package_version == keras_resnet.__version__


def test_an_export_without_metadata_is_refused_or_carries_none(tmp_path):
    model = keras_resnet.ResNet20(classes=3)  # a user's own model: no metadata
    with pytest.raises(ArgumentError, match="eval_transform must be one of single, center for 'resnet20'"):
        saved_model.export_saved_model(model, str(tmp_path))
    report = saved_model.export_saved_model(model, str(tmp_path), eval_transform="single")
    assert set(tf.saved_model.load(report.path).signatures) == {"serving_default", "serving_bytes"}
    assert artefacts.load_artefact(report.path).info is None
    assert artefacts.load_artefact(tflite.export_tflite(model, str(tmp_path)).path).info is None


def test_bad_requests_fail_with_invalid_argument_and_serving_goes_on(exported, workdir):
    loaded = exported[1]
    by_bytes, by_images = loaded.signatures["serving_bytes"], loaded.signatures["serving_default"]
    good = tf.io.read_file(_files(workdir, "*.png")[0])
    before = by_bytes(image_bytes=tf.stack([good]))["probabilities"].numpy()
    jpeg = tf.io.encode_jpeg(_photo(32, 32, 0)).numpy()
    bad_requests = [
        (by_bytes, dict(image_bytes=tf.constant([b"no image here"])),
         r"image_bytes\[0\] is not a JPEG, PNG, GIF, BMP or WebP image"),
        (by_bytes, dict(image_bytes=tf.constant([good.numpy(), jpeg[: len(jpeg) // 2]])), "JPEG"),
        (by_bytes, dict(image_bytes=good), r"image_bytes \[\] is not compatible with expected shape \[\?\]"),
        (by_bytes, dict(image_bytes=tf.zeros([1])), "expected to be a string tensor but is a float"),
        (by_images, dict(images=tf.zeros([32, 32, 3])), r"images \[32,32,3\] is not compatible with expected shape \[\?,32,32,3\]"),
        (by_images, dict(images=tf.zeros([1, 30, 32, 3])), r"images \[1,30,32,3\] is not compatible"),
        (by_images, dict(images=tf.zeros([1, 32, 32, 3], tf.int32)), "expected to be a float tensor but is a int32"),
        # Non-finite pixels: refused, not answered with NaN scores.
        (by_images, dict(images=tf.constant(_with(_images(2), 1, np.nan))), "images holds NaN or infinity"),
        (by_images, dict(images=tf.constant(_with(_images(1), 0, -np.inf))), "images holds NaN or infinity"),
        # Finite but outside [0, 255]: 3e38 overflowed to NaN probabilities.
        # Named with the farthest value, not the check's internal operands.
        (by_images, dict(images=tf.constant(_with(_images(1), 0, 3e38))),
         r"images holds pixels outside \[0, 255\], the RGB values accepted; the farthest:\] \[3e\+38\]"),
        (by_images, dict(images=tf.constant(_with(_images(2), 1, -0.5))),
         r"images holds pixels outside \[0, 255\], the RGB values accepted; the farthest:\] \[-0.5\]"),
    ]
    for fn, request, message in bad_requests:
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            fn(**request)
    empty = by_bytes(image_bytes=tf.zeros([0], tf.string))["probabilities"]
    assert empty.shape == (0, 10)  # an empty batch is not an error
    assert by_images(images=tf.zeros([0, 32, 32, 3]))["top_k_classes"].shape == (0, 5)
    after = by_bytes(image_bytes=tf.stack([good]))["probabilities"].numpy()
    # Not bit for bit: oneDNN may run a later call through another kernel (1 ulp seen).
    np.testing.assert_allclose(after, before, rtol=1e-5)
    images = _images(2)
    assert by_images(images=tf.constant(images))["probabilities"].shape == (2, 10)


# ------------------------------------------------------------ pixel limit


def _chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(width, height, whole=False):
    """A 1-bit grayscale PNG's header; `whole`: the whole image, of zeros
    (12000x12000: 18 MB of rows compress to 18 KB; decoded to RGB, 432 MB)."""
    png = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
    if whole:
        compressor = zlib.compressobj(9)
        row = bytes(1 + (width + 7) // 8)  # filter type 0, then the bits
        rows = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
        png += _chunk(b"IDAT", rows) + _chunk(b"IEND", b"")
    return png


def _gif(width, height):
    return b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0) + b";"


def _bmp(width, height):
    """A BITMAPINFOHEADER; a negative height means rows stored top-down."""
    return b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) + struct.pack(
        "<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 0, 0, 0, 0
    )


def _webp_vp8x(width, height):
    canvas = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 22) + b"WEBP" + b"VP8X" + struct.pack("<I", 10) + bytes(4) + canvas


def test_header_size_is_the_decoded_size():
    from PIL import Image

    rgb = _photo(23, 37, 4)  # height 23, width 37

    def pil(fmt, image=rgb, **options):
        out = io.BytesIO()
        Image.fromarray(image).save(out, fmt, **options)
        return out.getvalue()

    bmp = pil("BMP")
    encoded = {
        "jpeg": tf.io.encode_jpeg(rgb).numpy(),
        "png": tf.io.encode_png(rgb).numpy(),
        "gif": pil("GIF"),
        "bmp": bmp,
        "bmp top-down": bmp[:22] + struct.pack("<i", -23) + bmp[26:],
        "webp lossy": pil("WEBP"),
        "webp lossless": pil("WEBP", lossless=True),
        "webp extended": pil("WEBP", image=np.dstack([rgb, rgb[..., :1]])),  # alpha
    }
    # WebP's three bitstream headers, each read differently.
    assert [v[12:16] for k, v in encoded.items() if k.startswith("webp")] == [b"VP8 ", b"VP8L", b"VP8X"]
    for name, content in encoded.items():
        decoded = tf.io.decode_image(content, expand_animations=False)
        assert decoded.shape[:2] == (23, 37), name
        assert saved_model.header_size(tf.constant(content)).numpy().tolist() == [23, 37], name
    # Headers alone, of sizes no test decodes; a file too short or unknown.
    for content, size in [(_png(12000, 9000), [9000, 12000]), (_gif(65535, 2), [2, 65535]),
                          (_bmp(30000, -20000), [20000, 30000]), (_webp_vp8x(16384, 3), [3, 16384]),
                          (b"GIF8", [0, 0]), (b"\xff\x0a jpeg xl", [-1, -1]), (b"", [-1, -1])]:
        assert saved_model.header_size(tf.constant(content)).numpy().tolist() == size, content[:8]


def test_serving_bytes_refuses_too_many_pixels_before_decoding(exported, workdir):
    by_bytes = exported[1].signatures["serving_bytes"]
    good = tf.io.read_file(_files(workdir, "*.png")[0]).numpy()
    before = by_bytes(image_bytes=tf.constant([good]))["probabilities"].numpy()
    big = _png(12000, 12000, whole=True)
    assert len(big) < 100_000
    refused = [  # (bytes, width x height), all above the default 40 MP
        (big, (12000, 12000)),
        # Headers alone: decoding would fail otherwise, so these fail first.
        (_png(100_000, 1000), (100_000, 1000)),
        (_gif(65535, 65535), (65535, 65535)),
        (_bmp(30000, -20000), (30000, 20000)),
        (_webp_vp8x(16384, 16384), (16384, 16384)),
    ]
    for content, (width, height) in refused:
        message = (
            rf"image_bytes\[1\] is {width}x{height} \(width x height\) = {width * height} "
            r"pixels, above the limit of 40000000 pixels \(max_pixels, set at export\)"
        )
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            by_bytes(image_bytes=tf.constant([good, content]))
    after = by_bytes(image_bytes=tf.constant([good]))["probabilities"].numpy()
    np.testing.assert_allclose(after, before, rtol=1e-5)  # not bit for bit, as above


def test_max_pixels_must_be_a_positive_integer(model, tmp_path):
    for bad in (0, -5, 1.5, True):
        with pytest.raises(ValueError, match=rf"max_pixels must be a positive integer .*Received: {bad}"):
            saved_model.export_saved_model(model, str(tmp_path), max_pixels=bad)
    assert os.listdir(tmp_path) == []


# ------------------------------------------------ files: modes, staging, disk


def _staging(folder, stem, pid, ext=""):
    """A staging path as keras_resnet.files names a writer's (pid) staging."""
    return folder / f".{stem}{files.STAGING_MARK}{pid}-0badf00d{ext}"


def test_existing_version_is_refused_unless_overwrite(model, info, tmp_path):
    version = tmp_path / "resnet20" / "2"
    os.makedirs(version)
    (version / "keep.txt").write_text("an old version")
    with pytest.raises(ArgumentError, match=r"overwrite must be set to replace version 2 of 'resnet20', "
                                            r"'.*2', which exists; or leave the version out to write version 3"):
        saved_model.export_saved_model(model, str(tmp_path), info=info, version=2)
    assert os.listdir(version) == ["keep.txt"]
    assert sorted(os.listdir(tmp_path / "resnet20")) == ["2"]
    report = saved_model.export_saved_model(model, str(tmp_path), info=info, version=2, overwrite=True)
    assert report.path == str(version) and not (version / "keep.txt").exists()
    assert os.path.isfile(version / "saved_model.pb")
    # Nothing hidden left but the model folder's lock file (RunLock's).
    assert sorted(os.listdir(tmp_path / "resnet20")) == [".lock", "2"]


def test_load_model_refuses_what_it_cannot_load(tmp_path):
    with pytest.raises(ValueError, match=r"Model file does not exist: '.*missing.keras'"):
        inputs.load_model(str(tmp_path / "missing.keras"))
    (tmp_path / "model.h5").write_bytes(b"")
    (tmp_path / "bad.keras").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match=r"Model file '.*bad.keras' is corrupt or truncated"):
        inputs.load_model(str(tmp_path / "bad.keras"))
    with pytest.raises(ValueError, match=r"must be a .keras file"):
        inputs.load_model(str(tmp_path / "model.h5"))
    with pytest.raises(ValueError, match=r"not both and not neither"):
        inputs.load_model()
    with pytest.raises(ArgumentError, match=r"weights must be None \(He initialisation\) or the "
                                            r"path to an existing weights file: resnet20 has no "
                                            r"published weights. Received: weights='nope.h5'"):
        inputs.load_model(model_name="resnet20", weights="nope.h5")


def test_compare_refuses_non_finite_outputs_on_either_side():
    good = np.full((4, 3), 1 / 3, "float32")
    bad = good.copy()
    bad[2, 0] = np.nan  # argmax of NaN rows agrees: 100% top-1 agreement
    with pytest.raises(ValueError, match=r"^The Keras model gives non-finite outputs \(NaN or inf\) for 1 of 4 images"):
        inputs.compare(bad, good)
    bad[3, 1] = np.inf
    with pytest.raises(ValueError, match=r"^The TFLite model 'm.tflite' gives non-finite outputs \(NaN or inf\) for 2 of 4"):
        inputs.compare(good, bad, "The TFLite model 'm.tflite'")
    assert inputs.compare(good, good) == (0.0, 1.0)


def test_load_model_by_name_puts_caffe_preprocessing_in_front(tmp_path):
    net = keras_resnet.ResNet20()
    weights = str(tmp_path / "resnet20.weights.h5")
    net.save_weights(weights)
    model = inputs.load_model(model_name="resnet20", weights=weights)
    images = _images(2)
    np.testing.assert_allclose(
        model.predict(images, verbose=0),
        net.predict(keras_resnet.preprocess_input(images), verbose=0),
        atol=1e-6,
    )


# ------------------------------------------------------------- images, TFLite


def test_load_images_from_folders_with_or_without_classes(workdir, tmp_path):
    nested = inputs.load_images(str(workdir / "images"), 32, augment.resize_to, limit=100)
    # 7 readable images at any depth; the corrupt one is skipped.
    assert nested.pixels.shape == (7, 32, 32, 3) and nested.pixels.dtype == np.float32
    flat = tmp_path / "flat"
    os.makedirs(flat)
    for p in _files(workdir, "*.png"):
        os.link(p, flat / os.path.basename(p))
    assert inputs.load_images(str(flat), 32, augment.resize_to, limit=2).pixels.shape[0] == 2
    with pytest.raises(ValueError, match=r"Image source does not exist: 'nowhere'"):
        inputs.load_images("nowhere", 32, augment.resize_to)
    single = _files(workdir, "*.png")[0]
    with pytest.raises(ValueError, match=re.escape(
            f"Image source {single!r} is a file, not a folder. Accepted: an image folder")):
        inputs.load_images(single, 32, augment.resize_to)
    os.makedirs(tmp_path / "empty" / "class0")
    with pytest.raises(ValueError, match=r"No JPEG/PNG images in '.*empty' or its subfolders"):
        inputs.load_images(str(tmp_path / "empty"), 32, augment.resize_to)


def test_load_images_from_a_tfds_split():
    with tfds.testing.mock_data(num_examples=5):
        images = inputs.load_images("tfds:cifar10:test", 32, augment.resize_to, limit=3)
    assert images.pixels.shape == (3, 32, 32, 3)
    assert images.source == "3 images of tfds:cifar10:test"


def test_tflite_float32_equals_keras(model, info, workdir):
    images = inputs.load_images(str(workdir / "images"), 32, augment.resize_to)
    with _umask(0o022):
        report = tflite.export_tflite(model, str(workdir / "tflite"), info=info, images=images)
    assert report.path == str(workdir / "tflite" / "resnet20_float32.tflite")
    assert _wrong_modes(workdir / "tflite", 0o755, 0o644) == {}
    assert report.size_bytes == os.path.getsize(report.path)
    # Checked again here, apart from the report's own comparison.
    diff = np.abs(tflite.predict_tflite(report.path, images.pixels) - model.predict(images.pixels, verbose=0))
    assert diff.max() <= 1e-4 and report.max_abs_diff <= 1e-4
    assert report.top1_agreement == 1.0
    # The metadata entry: the runtime loads the file, and it reads back.
    with open(report.path, "rb") as f:
        content = f.read()
    assert artefacts.tflite_info(content, report.path) == info
    assert artefacts.load_artefact(report.path).info == info
    np.testing.assert_array_equal(tflite.predict_tflite(content, images.pixels),
                                  tflite.predict_tflite(tflite.convert(model), images.pixels))
    twice = tflite.with_metadata(tflite.with_metadata(content, info), info)
    assert twice.count(info.to_json().encode()) == 1 and artefacts.tflite_info(twice, "twice") == info
    with pytest.raises(ArgumentError, match=r"overwrite must be set to replace the TFLite file '.*', which exists"):
        tflite.export_tflite(model, str(workdir / "tflite"), images=images)


@pytest.mark.parametrize(
    # Upper bounds of file size per parameter (float32 is 4 bytes) and of the
    # difference with Keras on probabilities.
    "quantize, bytes_per_param, max_diff",
    # int8 measured 0.0115 (and 6 of 7 top classes); calibrated on pixels / 255
    # instead of pixels, 0.65.
    [("float16", 2.4, 1e-2), ("dynamic", 1.4, 0.1), ("int8", 1.4, 0.04)],
)
def test_tflite_quantized(model, workdir, quantize, bytes_per_param, max_diff):
    images = inputs.load_images(str(workdir / "images"), 32, augment.resize_to)
    # Scores far from one-hot (BN adapted to images, `keras_file`), so that
    # agreement and differences measure the quantization.
    assert model.predict(images.pixels, verbose=0).max() < 0.9
    report = tflite.export_tflite(model, str(workdir / "tflite"), quantize=quantize, images=images)
    assert report.size_bytes < bytes_per_param * keras_resnet.count_params(model)
    print(quantize, report)  # pytest -s shows the measured numbers.
    assert 0 < report.max_abs_diff <= max_diff
    assert report.top1_agreement >= 5 / 7
    assert report.images == "7 images of " + str(workdir / "images")


def test_converter_options_are_set_or_refused(model):
    # An option reaches the converter: dynamic-range quantization asked for
    # through it gives the "dynamic" file, about a quarter of float32's size.
    dynamic = tflite.convert(model, converter_options={"optimizations": [tf.lite.Optimize.DEFAULT]})
    assert len(dynamic) < 0.5 * len(tflite.convert(model))
    with pytest.raises(ValueError, match=r"Unknown TFLiteConverter option: 'no_such_option'"):
        tflite.convert(model, converter_options={"no_such_option": True})


def test_int8_needs_representative_images(model, tmp_path):
    with pytest.raises(ArgumentError, match=r"images must be given for int8 quantization: "
                                            r"representative images \(of an image folder"):
        tflite.export_tflite(model, str(tmp_path), quantize="int8")
    with pytest.raises(ValueError, match=r"'int4'. Accepted: none, float16, dynamic, int8"):
        tflite.export_tflite(model, str(tmp_path), quantize="int4")


# ------------------------------------------------------------------------ CLI


def _cli(*args, umask=0o022, preexec_fn=None, **env):
    """`python -m export ARGS` in a subprocess, with `umask` and `env`."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **env)
    with _umask(umask):
        return subprocess.run([sys.executable, "-m", "export", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300, preexec_fn=preexec_fn)


def _error_line(proc):
    """The one line a failed run prints (after TensorFlow's C++ log lines)."""
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    return proc.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def nan_keras_file(workdir):
    """A model with one NaN weight, as a diverged run leaves it."""
    model = keras_resnet.ResNet20(classes=3)
    kernel, bias = model.get_layer("predictions").get_weights()
    kernel[0, 0] = np.nan
    model.get_layer("predictions").set_weights([kernel, bias])
    path = str(workdir / "diverged.keras")
    model.save(path)
    metadata.write_keras(path, _info(class_names=["a", "b", "c"]))
    return path


def test_cli_errors_are_one_line(tmp_path, keras_file, nan_keras_file):
    a_file = tmp_path / "serving"
    a_file.write_text("a file, not a folder")
    out = tmp_path / "out"
    os.makedirs(out / "resnet20" / "1")
    plain = str(tmp_path / "plain.keras")
    keras_resnet.ResNet20(classes=3).save(plain)  # a user's own file: no metadata
    runs = [  # (flags, start of the error line)
        ([f"--model_path={plain}", f"--output_dir={out}"],
         f"--eval_transform=auto: must be one of single, center for {plain}: it carries no "
         "keras_resnet metadata to read its test view from"),
        ([f"--model_path={keras_file}", f"--output_dir={a_file}"],
         f"Output directory '{a_file}' is a file, not a folder"),
        ([f"--model_path={nan_keras_file}", f"--output_dir={out}"],
         f"{nan_keras_file} holds non-finite weights: predictions/kernel has 1 NaN or inf of 192 values"),
        ([f"--model_path={keras_file}", f"--output_dir={out}", "--format=tflite", "--nofold_bn"],
         "--fold_bn is for --format=saved_model: the TFLite converter folds BN itself"),
        ([f"--model_path={keras_file}", f"--output_dir={out}", "--format=tflite", "--nofreeze"],
         "--freeze is for --format=saved_model: a TFLite file holds its weights as constants"),
        ([f"--model_path={keras_file}", f"--output_dir={out}", "--format=tflite", "--quantize=int8"],
         "--representative_dataset=None: must be given for int8 quantization: representative "
         "images (of an image folder or tfds:NAME[:SPLIT]) to calibrate its ranges on"),
    ]
    outcomes = run_commands("export", [args for args, _ in runs], cwd=ROOT)
    for (_, message), (code, stderr) in zip(runs, outcomes, strict=True):
        assert error_line(code, stderr, "export").startswith(message)
    assert a_file.read_text() == "a file, not a folder"
    assert os.listdir(out / "resnet20") == ["1"]  # nothing written for the NaN model


def test_cli_needs_the_tensorflow_backend(tmp_path, keras_file):
    proc = _cli(f"--model_path={keras_file}", f"--output_dir={tmp_path / 'out'}", KERAS_BACKEND="jax")
    assert _error_line(proc).startswith(
        "export: error: export needs the TensorFlow backend of Keras (tf.data, "
        "tf.distribute, SavedModel); KERAS_BACKEND is 'jax'."
    )
    assert os.listdir(tmp_path) == []  # before any work


@pytest.mark.parametrize("fmt, written", [
    ("saved_model", "resnet20/1"), ("tflite", "resnet20_float32.tflite"),
])
def test_cli_full_disk_is_one_line_and_leaves_nothing(tmp_path, keras_file, fmt, written):
    out, tmp = tmp_path / "out", tmp_path / "tmp"
    os.makedirs(tmp)
    # train.py's file, its metadata included: Keras loads it without
    # unpacking it to a temporary folder (which the limit below would
    # refuse before any export). The SavedModel's variables and graph, and
    # the .tflite file, are larger: their writes fail as on a full disk
    # (EFBIG, not ENOSPC).
    proc = _cli(f"--model_path={keras_file}", f"--output_dir={out}", f"--format={fmt}",
                preexec_fn=file_size_limit(64 << 10), TMPDIR=str(tmp))
    target = out / written
    assert re.fullmatch(
        rf"export: error: Cannot write {re.escape(str(target))}: File too large "
        rf"\([\d.]+ (bytes|KiB|MiB|GiB) free in {re.escape(str(target.parent))}\); "
        "nothing was written there",
        _error_line(proc),
    ), proc.stderr
    # No partial file, no staging folder, no temporary copy; only the
    # SavedModel's model folder lock (.lock, held while it chose a version).
    lock = {".lock"} if fmt == "saved_model" else set()
    assert [p for p in out.rglob("*")
            if p.name not in lock and (not p.is_dir() or set(os.listdir(p)) - lock)] == []
    assert os.listdir(tmp) == []


def test_cli_writes_a_saved_model_with_max_pixels_unfrozen(tmp_path, keras_file, workdir):
    model_dir = tmp_path / "serving" / "resnet20"
    stale = _staging(model_dir, "1", dead_pid())  # a killed export's
    live = _staging(model_dir, "7", os.getpid())  # another export, still writing
    for staging in (stale, live):
        os.makedirs(staging / "variables")
        (staging / "saved_model.pb").write_bytes(b"partial")
    proc = _cli(f"--model_path={keras_file}", f"--output_dir={tmp_path / 'serving'}",
                "--max_pixels=1500", "--nofreeze", umask=0o027)
    assert proc.returncode == 0, proc.stderr
    assert f"{model_dir / '1'}: " in proc.stdout
    assert sorted(os.listdir(model_dir)) == sorted([".lock", "1", live.name])
    # umask 027: the group reads, others nothing; every file and folder.
    assert len(_modes(model_dir / "1")) >= 6
    assert _wrong_modes(model_dir / "1", 0o750, 0o640) == {}
    loaded = tf.saved_model.load(str(model_dir / "1"))
    assert len(loaded.model_weights) > 0  # --nofreeze: the weights are variables
    by_bytes = loaded.signatures["serving_bytes"]
    small, large = _files(workdir, "4.jpg") + _files(workdir, "0.jpg")  # 44x28, 52x40
    assert by_bytes(image_bytes=tf.constant([tf.io.read_file(small).numpy()]))["probabilities"].shape == (1, 10)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"image_bytes\[1\] is 52x40 \(width x height\) = 2080 pixels, above the limit of 1500"):
        by_bytes(image_bytes=tf.stack([tf.io.read_file(small), tf.io.read_file(large)]))


def test_cli_ctrl_c_is_one_line_and_leaves_no_staging(tmp_path, keras_file):
    model_dir = tmp_path / "resnet20"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen(
        [sys.executable, "-m", "export", f"--model_path={keras_file}", f"--output_dir={tmp_path}"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=default_sigint,
    )
    # Ctrl-C once the SavedModel's staging folder is being written.
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        if model_dir.is_dir() and any(n.startswith(".1" + files.STAGING_MARK) for n in os.listdir(model_dir)):
            proc.send_signal(signal.SIGINT)
            break
        time.sleep(0.01)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1] == "export: interrupted"
    assert os.listdir(model_dir) == [".lock"]  # the lock file of RunLock, no staging


def test_cli_writes_and_reports_a_tflite_file(tmp_path, keras_file, workdir):
    stale = _staging(tmp_path, "resnet20_dynamic", dead_pid(), ".tflite")
    stale.write_bytes(b"partial")
    proc = _cli(f"--model_path={keras_file}", f"--output_dir={tmp_path}", "--format=tflite",
                "--quantize=dynamic", f"--representative_dataset={workdir / 'images'}", umask=0o027)
    assert proc.returncode == 0, proc.stderr
    path = tmp_path / "resnet20_dynamic.tflite"
    assert os.listdir(tmp_path) == [path.name]  # the stale staging file is gone
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert f"{path}: " in proc.stdout
    assert "against Keras on 7 images of" in proc.stdout and "top-1 agreement" in proc.stdout


# ------------------------------------------ refused before scoring or export


def _small_keras(path, change=None, **info_changes):
    """A ResNet-20 at 16x16 with a per-pixel mean, as train.py writes it;
    `change(model)` edits its weights first; `info_changes` its metadata."""
    keras.utils.set_random_seed(0)
    model = keras_resnet.with_preprocessing(
        keras_resnet.ResNet20(input_shape=(16, 16, 3)),
        keras_resnet.MeanSubtraction(np.full((16, 16, 3), 120.0), name="preprocessing"))
    if change is not None:
        change(model)
    model.save(path)
    metadata.write_keras(path, _info(**{"image_size": 16, **info_changes}))
    return str(path)


def _nan_in_conv1(model):
    conv = model.get_layer("resnet20").get_layer("conv1_conv")
    kernel = conv.kernel.numpy()
    kernel[0, 0, 0, 0] = np.nan
    conv.kernel.assign(kernel)


def _kernels_times_1e30(model):
    for variable in model.variables:
        if variable.path.endswith("kernel"):
            variable.assign(variable.numpy() * 1e30)


def test_cli_refuses_non_finite_weights_and_overflow_in_evaluate_and_export(tmp_path):
    # A NaN in the first kernel: oneDNN's convolution on this CPU gives
    # finite outputs, so only the weights show it. Every kernel x 1e30: the
    # weights are finite, the model's outputs NaN, its BN-folded copy's not.
    nan = _small_keras(tmp_path / "nan.keras", _nan_in_conv1)
    huge = _small_keras(tmp_path / "huge.keras", _kernels_times_1e30)
    expected = {
        nan: f"{nan} holds non-finite weights: conv1_conv/kernel has 1 NaN or inf of 432 values",
        huge: f"{huge} (with its BatchNormalization) gives non-finite outputs (NaN or inf) for 2 of 2 images",
    }
    out = tmp_path / "out"
    exports = run_commands("export", [[f"--model_path={p}", f"--output_dir={out}"] for p in expected],
                           cwd=ROOT)
    evaluations = run_commands("evaluate.py", [[f"--model_path={p}", "--dataset=synthetic",
                                                "--strategy=one_device"] for p in expected], cwd=ROOT)
    for message, exported, evaluated in zip(expected.values(), exports, evaluations, strict=True):
        assert message in error_line(*exported, "export")
        assert message in error_line(*evaluated, "evaluate.py")
    assert not out.exists()  # refused before the output folder is made


def test_cli_refuses_metadata_that_contradicts_the_model(tmp_path):
    cases = {  # metadata changes: the error line's end
        "classes": (dict(class_names=list("abcde")), "its metadata names 5 classes; the model has 10 outputs"),
        "size": (dict(image_size=64), "its metadata says image_size 64; the model takes 16x16 images"),
    }
    paths = [tmp_path / f"{name}.keras" for name in cases]
    for path, (changes, _) in zip(paths, cases.values()):
        _small_keras(path)
        # Written after the model: _small_keras' own metadata is replaced.
        metadata.write_keras(str(path), _info(**{"image_size": 16, **changes}))
    exports = run_commands("export", [[f"--model_path={p}", f"--output_dir={tmp_path / 'out'}"]
                                      for p in paths], cwd=ROOT)
    evaluations = run_commands("evaluate.py", [[f"--model_path={p}", "--dataset=synthetic",
                                                "--strategy=one_device"] for p in paths], cwd=ROOT)
    for path, (_, message), exported, evaluated in zip(paths, cases.values(), exports, evaluations,
                                                       strict=True):
        assert error_line(*exported, "export") == f"{path}: {message}"
        assert error_line(*evaluated, "evaluate.py") == f"{path}: {message}"
    # The same loader checks the preprocessing layer (in-process: faster).
    caffe = _small_keras(tmp_path / "caffe.keras", preprocessing="caffe")
    with pytest.raises(ValueError, match=re.escape(
            f"{caffe}: its metadata says preprocessing 'caffe'; the model has pixel_mean")):
        inputs.load_exportable(caffe)


def test_concurrent_exports_get_their_own_versions_or_are_refused(tmp_path, keras_file):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    procs = [
        subprocess.Popen([sys.executable, "-m", "export", f"--model_path={keras_file}",
                          f"--output_dir={tmp_path}"], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    written = [out.split(": ")[0] for rc, out, _ in results if rc == 0]
    refused = [err.strip().splitlines()[-1] for rc, _, err in results if rc != 0]
    assert written and len(set(written)) == len(written), results  # never one version twice
    for line in refused:
        assert re.fullmatch(r"export: error: Model folder '.*resnet20' is in use by process \d+; "
                            r"wait for it to finish or use another folder", line), results
    model_dir = tmp_path / "resnet20"
    assert sorted(n for n in os.listdir(model_dir) if not n.startswith(".")) == \
        [os.path.basename(p) for p in sorted(written)]
    for path in written:  # each intact: it loads and serves
        served = tf.saved_model.load(path).signatures["serving_default"]
        assert served(images=tf.constant(_images(1)))["probabilities"].shape == (1, 10)
