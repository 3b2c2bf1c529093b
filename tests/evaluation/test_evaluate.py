"""Test protocols and metrics (evaluate.py), on .keras, SavedModel and .tflite."""

import json
import os
import re
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_resnet
from keras_resnet import files
from keras_resnet.data import augment
from keras_resnet.data import sources
from keras_resnet.errors import ArgumentError
from keras_resnet.evaluation import artefacts
from keras_resnet.evaluation import protocols
from keras_resnet.export import inputs
from keras_resnet.models import metadata
from keras_resnet.training import distribute
from tests.helpers import dead_pid
from tests.helpers import error_line
from tests.helpers import run_commands
from tests.helpers import spread_scores
from tests.helpers import with_trained_statistics

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_metrics_on_known_scores():
    # 6 classes, top-5; ranks of the true class: 1st, 2nd, 6th, 5th.
    probs = np.array(
        [
            [0.50, 0.10, 0.10, 0.10, 0.10, 0.10],
            [0.30, 0.40, 0.10, 0.10, 0.05, 0.05],
            [0.30, 0.25, 0.20, 0.15, 0.09, 0.01],
            [0.30, 0.25, 0.20, 0.15, 0.09, 0.01],
        ]
    )
    labels = [0, 0, 5, 4]
    metrics = protocols.Metrics(6, list("abcdef"))
    metrics.update(probs[:3], labels[:3])  # in two batches, the last one short
    metrics.update(probs[3:], labels[3:])
    result = metrics.result()
    assert result["num_examples"] == 4
    assert result["top1_accuracy"] == 0.25 and result["top1_error"] == 0.75
    assert result["top5_accuracy"] == 0.75 and result["top5_error"] == 0.25
    # None: no example of that class.
    assert result["per_class_accuracy"] == {"a": 0.5, "b": None, "c": None, "d": None, "e": 0.0, "f": 0.0}
    assert metrics.confusion[0].tolist() == [1, 1, 0, 0, 0, 0]


def _channel_classifier(size=8, classes=3):
    """Predicts the class of the brightest channel: known answers."""
    inputs = keras.Input((size, size, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    outputs = keras.layers.Dense(classes, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, outputs, name="channels")
    model.get_layer("predictions").set_weights([np.eye(3, classes) * 0.1, np.zeros(classes)])
    return model


def _colour_examples(n=7, size=8, seed=0, names=("r", "g", "b")):
    """Images whose brightest channel is known, labelled right 5 times in 7."""
    rng = np.random.RandomState(seed)
    brightest = np.arange(n) % 3
    images = rng.uniform(0, 50, (n, size, size, 3))
    images[np.arange(n), :, :, brightest] += 150
    labels = brightest.copy()
    labels[[2, 3]] = 1
    examples = tf.data.Dataset.from_tensor_slices((images.astype("uint8"), labels.astype("int32")))
    return sources.Split(examples=examples, count=n, class_names=names)


@pytest.mark.parametrize("batch_size", [3, 7, 64])
def test_accuracy_is_known_for_any_batch_size(tmp_path, batch_size):
    path = str(tmp_path / "channels.keras")
    _channel_classifier().save(path)
    artefact = artefacts.load_artefact(path)
    result, confusion = protocols.evaluate(
        artefact, _colour_examples(), "single", batch_size=batch_size, verbose=0
    )
    assert result["num_examples"] == 7 and confusion.sum() == 7
    assert result["top1_accuracy"] == pytest.approx(5 / 7)
    assert result["top5_accuracy"] == 1.0 and result["top_k"] == 3  # fewer classes than 5
    assert result["per_class_accuracy"] == {"r": 1.0, "g": 0.5, "b": 1.0}


def test_mirrored_strategy_equals_one_device_with_a_short_last_batch(tmp_path):
    path = str(tmp_path / "r20.keras")
    keras_resnet.ResNet20(classes=3).save(path)
    examples = _colour_examples(n=7, size=32)
    results = []
    for name in ("one_device", "mirrored"):
        strategy = distribute.make_strategy(name)
        artefact = artefacts.load_artefact(path, strategy=strategy)
        # Batches of 3, 3 and 1: the last is smaller than the 2 replicas.
        results.append(protocols.evaluate(artefact, examples, "single", batch_size=3, verbose=0))
    assert strategy.num_replicas_in_sync == 2
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])


def test_one_device_predicts_with_bn_folded():
    # Evaluation runs the model with BN folded into its convolutions: its
    # scores are the folded model's, and the model's own up to float rounding.
    model = with_trained_statistics(keras_resnet.ResNet20(classifier_activation=None))
    artefact = artefacts.keras_artefact(model, "resnet20", None)
    images = np.random.default_rng(0).uniform(-2, 2, (4, 32, 32, 3)).astype("float32")
    plain = keras.ops.convert_to_numpy(keras.ops.softmax(model.predict_on_batch(images)))
    folded = keras.ops.convert_to_numpy(keras.ops.softmax(
        keras_resnet.fold_batch_norm(model).predict_on_batch(images)))
    assert not np.array_equal(folded, plain)  # else this test could not tell them apart
    got = artefact.predict(images)
    np.testing.assert_array_equal(got, folded)
    np.testing.assert_allclose(got, plain, rtol=1e-4, atol=1e-6)
    assert artefact.model is model


def test_ten_crops_geometry():
    # Pixel (row, col) holds (8 row, 8 col): each crop's corner tells its position.
    rows, cols = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    image = np.stack([8 * rows, 8 * cols, np.zeros_like(rows)], -1).astype("float32")
    crops = augment.ten_crops(image, 28).numpy()  # 28 * 256 / 224 = 32: no resize
    assert crops.shape == (10, 28, 28, 3)
    corners = [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2)]
    for crop, (top, left) in zip(crops[:5], corners):
        np.testing.assert_array_equal(crop, image[top : top + 28, left : left + 28])
    np.testing.assert_array_equal(crops[5:], crops[:5, :, ::-1])


def test_classifier_at_every_position_equals_the_pooled_model():
    # Table 4's fully-convolutional form: the fc layer applied at each position
    # of the last feature map, scores averaged, is our GAP + fc.
    model = keras_resnet.ResNet18(input_shape=(None, None, 3), classifier_activation=None)
    x = np.random.RandomState(0).uniform(0, 255, (1, 64, 96, 3)).astype("float32")
    features = keras.Model(model.input, model.get_layer("conv5_block2_out").output).predict(x, verbose=0)
    kernel, bias = model.get_layer("predictions").get_weights()
    per_position = features @ kernel + bias  # (1, 2, 3, 1000)
    expected = model.predict(x, verbose=0)
    # Both sides sum 512 float32 products in different orders; their rounding
    # error scales with the sum of the products' magnitudes, not with the result.
    magnitude = np.abs(features).mean(axis=(1, 2)) @ np.abs(kernel)
    np.testing.assert_allclose(per_position.mean(axis=(1, 2)), expected, atol=1e-5 * magnitude.max())


def test_multiscale_at_224_equals_center_without_the_crop(tmp_path):
    path = str(tmp_path / "r18.keras")
    keras_resnet.ResNet18(input_shape=(224, 224, 3), classes=3).save(path)
    artefact = artefacts.load_artefact(path, any_size=True)
    assert artefact.image_size is None
    image = np.random.RandomState(1).uniform(0, 255, (224, 300, 3)).astype("uint8")
    examples = sources.Split(examples=tf.data.Dataset.from_tensors((image, np.int32(2))),
                             count=1, class_names=("a", "b", "c"))
    # A file without metadata that takes any size: the size is given.
    with pytest.raises(ArgumentError, match="image_size must be given: .*r18.keras takes any input size"):
        protocols.evaluate(artefact, examples, "multiscale", scales=(224,), verbose=0)
    result, _ = protocols.evaluate(artefact, examples, "multiscale", image_size=224,
                                    scales=(224,), verbose=0)
    whole = artefact.predict(image[None].astype("float32"))  # shorter side already 224
    assert result["top1_accuracy"] == float(np.argmax(whole) == 2)
    views = augment.multiscale_views(image, 224, (224, 448))
    assert [tuple(v.shape) for v in views] == [(1, 224, 300, 3), (1, 448, 600, 3)]
    np.testing.assert_allclose(artefact.predict(views[0].numpy()), whole, atol=1e-6)
    with pytest.raises(ValueError, match="multiscale protocol needs a fully-convolutional"):
        protocols.evaluate(artefacts.load_artefact(path), examples, "multiscale")


def _with_mean(model, mean=(0.0, 0.0, 0.0)):
    """`model` with a MeanSubtraction in front, as the metadata of
    `_cifar_info` says (a zero mean changes nothing)."""
    return keras_resnet.with_preprocessing(model, keras_resnet.MeanSubtraction(np.asarray(mean)))


def _cifar_info(size, class_names=("r", "g", "b")):
    return metadata.ModelInfo(model="resnet20", family="cifar", image_size=size, test_view="single",
                              class_names=class_names, preprocessing="pixel_mean")


def test_every_artefact_is_evaluated_as_its_metadata_says(tmp_path):
    from keras_resnet.export import saved_model
    from keras_resnet.export import tflite

    # A CIFAR net at 48x48: its test view is the image itself (Sec. 4.2),
    # which the former rule (under 64 pixels is CIFAR) got wrong for the
    # SavedModel and the .tflite file.
    # With scores that are not one-hot, its answers depend on the view: each
    # image is labelled with the class the single view gives, which the
    # centre view does not give for some, so only the single view scores 100%.
    images = np.random.RandomState(3).uniform(0, 255, (12, 60, 60, 3)).astype("uint8")
    views = {view: np.concatenate([augment.VIEWS[view](image, 48) for image in images])
             for view in ("single", "center")}
    mean = np.array([120.0, 110.0, 100.0], "float32")
    net = with_trained_statistics(keras_resnet.ResNet20(classes=3, input_shape=(48, 48, 3)))
    model = keras_resnet.with_preprocessing(spread_scores(net, views["single"] - mean),
                                            keras_resnet.MeanSubtraction(mean))
    answers = {view: np.argmax(model.predict(x, verbose=0), -1) for view, x in views.items()}
    assert (answers["single"] != answers["center"]).sum() >= 2, answers  # else views look alike
    info = _cifar_info(48)
    path = str(tmp_path / "model.keras")
    model.save(path)
    metadata.write_keras(path, info)
    saved_model.export_saved_model(model, str(tmp_path / "serving"), info=info)
    tflite_path = tflite.export_tflite(model, str(tmp_path / "tflite"), info=info).path
    examples = sources.Split(
        examples=tf.data.Dataset.from_tensor_slices((images, answers["single"].astype("int32"))),
        count=12, class_names=("r", "g", "b"))
    loaded = [artefacts.load_artefact(p) for p in (path, str(tmp_path / "serving" / "resnet20"), tflite_path)]
    assert [a.info for a in loaded] == [info] * 3
    results = [protocols.evaluate(a, examples, batch_size=5, verbose=0)[0] for a in loaded]
    assert [r["top1_accuracy"] for r in results] == [1.0] * 3
    assert [(r["protocol"], r["image_size"]) for r in results] == [("single", 48)] * 3
    # The metadata's classes are the data set's, or unnamed ("0", "1", ...).
    protocols.evaluate(loaded[0], _colour_examples(size=48, names=("0", "1", "2")), verbose=0)
    with pytest.raises(ValueError, match=r"model.keras was trained on other classes than the data "
                                         r"set's: its class 1 is 'g', the data set's 'green'"):
        protocols.evaluate(loaded[0], _colour_examples(size=48, names=("r", "green", "b")))


def test_an_artefact_without_metadata_needs_the_protocol(tmp_path):
    path = str(tmp_path / "channels.keras")
    _channel_classifier().save(path)  # a user's own file: no metadata
    artefact = artefacts.load_artefact(path)
    assert artefact.info is None
    with pytest.raises(ArgumentError, match=r"protocol must be given \(single, center, 10crop, "
                                            r"multiscale\): .*channels.keras carries no keras_resnet metadata"):
        protocols.evaluate(artefact, _colour_examples())
    with pytest.raises(ArgumentError, match="image_size must be 8, the input size of"):
        protocols.evaluate(artefact, _colour_examples(), "single", image_size=16)
    # A named model's metadata: the family's size, its default recipe's view.
    named = artefacts.load_artefact(model="resnet18", weights=None)
    assert protocols.resolve_protocol(named) == ("center", 224)
    assert named.info.class_names == tuple(str(i) for i in range(1000))
    assert protocols.resolve_protocol(artefacts.load_artefact(model="resnet20", image_size=48)) == ("single", 48)


def test_errors_for_missing_files_and_mismatched_artefacts(tmp_path):
    with pytest.raises(ValueError, match="Model file does not exist: '/no/such.keras'"):
        artefacts.load_artefact("/no/such.keras")
    with pytest.raises(ValueError, match="Model path does not exist: '/no/such'"):
        artefacts.load_artefact("/no/such")
    path = str(tmp_path / "channels.keras")
    _channel_classifier().save(path)
    artefact = artefacts.load_artefact(path)
    with pytest.raises(ValueError, match="predicts 3 classes; the data set has 10"):
        protocols.evaluate(artefact, _colour_examples(names=list("0123456789")), "single")
    with pytest.raises(ArgumentError, match=r"protocol must be one of single, center, 10crop, multiscale, weights. Received: protocol='5crop'"):
        protocols.evaluate(artefact, _colour_examples(), "5crop")


def test_corrupt_or_truncated_keras_files_are_named(tmp_path):
    path = tmp_path / "r20.keras"
    keras_resnet.ResNet20(classes=3).save(path)
    content = bytearray(path.read_bytes())
    (tmp_path / "truncated.keras").write_bytes(content[: len(content) // 2])  # a cut copy
    (tmp_path / "empty.keras").write_bytes(b"")
    content[len(content) // 2] ^= 0xFF  # one flipped byte, in the weights
    (tmp_path / "damaged.keras").write_bytes(content)
    cases = {
        "truncated": "is corrupt or truncated: not a complete .keras (zip) archive",
        "empty": "is corrupt or truncated: not a complete .keras (zip) archive",
        "damaged": "is corrupt: its member 'model.weights.h5' fails its CRC check",
    }
    for name, message in cases.items():
        bad = str(tmp_path / f"{name}.keras")
        # evaluate.py and export share the loader.
        for load in (artefacts.load_artefact, inputs.load_model):
            with pytest.raises(ValueError, match=re.escape(f"Model file {bad!r} {message}")):
                load(bad)


def _diverged(path, size=8):
    """A .keras file whose classifier holds a NaN weight (a diverged run)."""
    model = _channel_classifier(size)
    kernel, bias = model.get_layer("predictions").get_weights()
    kernel[1, 2] = np.nan
    model.get_layer("predictions").set_weights([kernel, bias])
    model.save(path)
    return str(path)


def test_non_finite_weights_and_outputs_are_refused(tmp_path):
    # The weights when it is loaded: a NaN kernel can give finite outputs.
    with pytest.raises(ValueError, match=r"diverged.keras holds non-finite weights: "
                                         r"predictions/kernel has 1 NaN or inf of 9 values"):
        artefacts.load_artefact(_diverged(tmp_path / "diverged.keras"))
    # The outputs of every batch scored.
    artefact = artefacts.Artefact(path="nan-model", predict=lambda x: np.full((len(x), 3), np.nan),
                                  image_size=8, num_classes=3, info=None)
    with pytest.raises(ValueError, match=r"nan-model gives non-finite outputs \(NaN or inf\) for 3 of 3 images"):
        protocols.evaluate(artefact, _colour_examples(), "single", batch_size=3, verbose=0)


def test_folder_split_without_images_or_with_unknown_classes(image_folder):
    val = image_folder / "val"
    os.makedirs(val / "zebra")
    with pytest.raises(ValueError, match=r"'.*val' has class folder 'zebra', which the training split lacks"):
        sources.eval_split(str(image_folder), image_size=8, num_classes=3)
    os.rmdir(val / "zebra")
    # A class without images in val/: evaluated, its accuracy None.
    for image in (val / "class1").iterdir():
        image.unlink()
    split = sources.eval_split(str(image_folder), image_size=8, num_classes=3)
    assert (split.count, split.class_names) == (10, ("class0", "class1", "class2"))
    assert split.name == "val"  # the default's name, which evaluate.py records
    for folder in val.iterdir():
        for image in folder.iterdir():
            image.unlink()
    with pytest.raises(ValueError, match=r"No JPEG/PNG images in the class folders of '.*val' "
                                         r"\(classes, from '.*train': class0, class1, class2\)"):
        sources.eval_split(str(image_folder), image_size=8, num_classes=3)


def _evaluate_cli(*args, cwd, **env):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO, **env)
    return subprocess.run([sys.executable, os.path.join(REPO, "evaluate.py"), *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_cli_writes_json_and_png_atomically(tmp_path):
    path = str(tmp_path / "r20.keras")
    _with_mean(keras_resnet.ResNet20(classes=4)).save(path)
    metadata.write_keras(path, _cifar_info(32, list("abcd")))  # as train.py writes it
    out = tmp_path / "result.json"
    # Staging files of a killed run: removed by the next write beside them.
    pid = dead_pid()
    for stale in (f".result{files.STAGING_MARK}{pid}-0badf00d.json", f".cm{files.STAGING_MARK}{pid}-0badf00d.png"):
        (tmp_path / stale).write_text("partial")
    proc = _evaluate_cli(f"--model_path={path}", "--dataset=synthetic", "--batch_size=50",
                         f"--output_json={out}", f"--confusion_png={tmp_path / 'cm.png'}",
                         "--strategy=one_device", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["num_examples"] == 256 and result["protocol"] == "single"
    assert result["split"] == "validation"  # the one scored, not "null" for the default
    assert set(result) >= {"top1_accuracy", "top5_accuracy", "top1_error", "top5_error",
                           "per_class_accuracy", "artefact"}
    assert result["artefact"] == path
    assert (tmp_path / "cm.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(tmp_path)) == ["cm.png", "r20.keras", "result.json"]
    assert "top-1" in proc.stdout
    assert "ms/image" in proc.stdout and "/step" not in proc.stdout  # the progress bar counts images


def _damaged_artefacts(tmp_path, keras_path):
    """Paths of a cut .tflite file, a SavedModel copied without its assets/
    and a .keras file whose metadata.json is damaged, from `keras_path`."""
    from keras_resnet.export import saved_model
    from keras_resnet.export import tflite

    artefact = artefacts.load_artefact(keras_path)
    content = tflite.convert(artefact.model)
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(content[: len(content) // 2])
    report = saved_model.export_saved_model(artefact.model, str(tmp_path / "copy"), info=artefact.info)
    os.remove(os.path.join(report.path, "assets", metadata.FILE_NAME))
    bad = tmp_path / "bad_json.keras"
    with zipfile.ZipFile(keras_path) as source_zip, zipfile.ZipFile(bad, "w") as target:
        for member in source_zip.infolist():
            damaged = member.filename == metadata.KERAS_METADATA
            target.writestr(member, b"\x00garbage" if damaged else source_zip.read(member))
    return str(cut), report.path, str(bad)


def test_cli_errors_are_one_line(tmp_path, image_folder):
    plain = str(tmp_path / "plain.keras")
    _channel_classifier().save(plain)  # without metadata
    model = str(tmp_path / "channels.keras")
    _with_mean(_channel_classifier()).save(model)
    metadata.write_keras(model, _cifar_info(8))
    diverged = _diverged(tmp_path / "diverged.keras")
    metadata.write_keras(diverged, _cifar_info(8))
    per_pixel = str(tmp_path / "per_pixel.keras")  # a CIFAR model's per-pixel mean (Sec. 4.2)
    _with_mean(_channel_classifier(), np.zeros((8, 8, 3))).save(per_pixel)
    metadata.write_keras(per_pixel, _cifar_info(8))
    cut_tflite, no_assets, bad_json = _damaged_artefacts(tmp_path, model)
    os.makedirs(image_folder / "val" / "zebra")
    empty = tmp_path / "empty"
    for folder in ("train/a", "train/b", "train/c", "val/a", "val/b"):
        os.makedirs(empty / folder)
    runs = [  # (flags, the error line)
        ([f"--model_path={plain}", "--dataset=synthetic"],
         f"--protocol=None: must be given (single, center, 10crop, multiscale): {plain} "
         "carries no keras_resnet metadata to read its test view from"),
        ([f"--model_path={plain}", "--dataset=synthetic", "--protocol=center", "--image_size=9"],
         f"--image_size=9: must be 8, the input size of {plain}"),
        ([f"--model_path={diverged}", "--dataset=synthetic"],
         f"{diverged} holds non-finite weights: predictions/kernel has 1 NaN or inf of 9 "
         "values (a diverged run?); not scored or exported"),
        ([f"--model_path={per_pixel}", "--dataset=synthetic", "--protocol=multiscale"],
         f"The multiscale protocol resizes images to several sizes; {per_pixel} subtracts a "
         "per-pixel mean of 8x8 (its training set's, Sec. 4.2), which fits only images of "
         "that size: use its own test view"),
        ([f"--model_path={model}", "--dataset=synthetic", f"--output_json={tmp_path}"],
         f"--output_json={tmp_path}: must be a file to write, not a folder"),
        ([f"--model_path={cut_tflite}", "--dataset=synthetic"],
         f"{cut_tflite!r} is not a readable .tflite model, corrupt or truncated? (The model "
         "is not a valid Flatbuffer buffer)"),
        ([f"--model_path={no_assets}", "--dataset=synthetic"],
         f"SavedModel {no_assets!r} lacks its metadata file assets/keras_resnet.json (copied "
         "without its assets/ folder?): copy the whole version folder, assets/ included"),
        ([f"--model_path={tmp_path / 'copy'}", "--dataset=synthetic"],  # TF Serving's base folder
         f"No SavedModel in '{tmp_path / 'copy'}' (no saved_model.pb, nor version folders); it "
         f"holds the model folders '{tmp_path / 'copy' / 'channels'}' (version 1): give one of them"),
        ([f"--model_path={bad_json}", "--dataset=synthetic"],
         f"{bad_json} holds an unreadable metadata.json (Expecting value: line 1 column 1 "
         "(char 0)); Keras writes it whole, so the file is damaged"),
        ([f"--model_path={model}", f"--dataset={image_folder}"],
         f"'{image_folder / 'val'}' has class folder 'zebra', which the training split "
         "lacks; its classes: class0, class1, class2"),
        ([f"--model_path={model}", f"--dataset={empty}"],
         f"No JPEG/PNG images in the class folders of '{empty / 'val'}' (classes, from "
         f"'{empty / 'train'}': a, b, c)"),
    ]
    outcomes = run_commands("evaluate.py", [[*args, "--strategy=one_device"] for args, _ in runs],
                            cwd=tmp_path)
    for (_, message), (code, stderr) in zip(runs, outcomes, strict=True):
        assert error_line(code, stderr, "evaluate.py") == message
    proc = _evaluate_cli(f"--model_path={model}", "--dataset=synthetic",
                         f"--output_json={tmp_path / 'r.json'}", cwd=tmp_path, KERAS_BACKEND="jax")
    assert error_line(proc.returncode, proc.stderr, "evaluate.py") == (
        "evaluate.py needs the TensorFlow backend of Keras (tf.data, tf.distribute, "
        "SavedModel); KERAS_BACKEND is 'jax'. Unset KERAS_BACKEND or set it to "
        "'tensorflow' (the models themselves run on any backend)")
    assert not (tmp_path / "r.json").exists()
