"""Fine-tuning from any weights file: files in the keras.applications
layout with and without a top, and a model.keras this package trained, each
onto 3 classes; what the run keeps of the file (top, preprocessing) and says."""

import json
import logging
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_resnet
from keras_resnet.errors import ArgumentError
from keras_resnet.models import metadata
from keras_resnet.models.preprocessing import IMAGENET_BGR_MEAN
from keras_resnet.models.preprocessing import MeanSubtraction
from keras_resnet.models.preprocessing import caffe_preprocessing
from keras_resnet.models.preprocessing import with_preprocessing
from keras_resnet.training import model as model_lib
from keras_resnet.training import run as run_lib
from keras_resnet.training import trainer
from tests.helpers import with_trained_statistics
from tests.helpers import write_legacy

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMALL = dict(model="resnet20", recipe="smoke", image_size=16, batch_size=4,
             strategy="one_device", verbose=0)
CLASSES = ("class0", "class1", "class2")  # the image_folder fixture's


def _run(weights, class_names=CLASSES, **kwargs):
    """A resolved run from `weights` with its data's classes, without the data."""
    config = run_lib.Config(**dict(SMALL, weights=weights, dataset="synthetic", **kwargs))
    return run_lib.resolve_settings(config).with_data(class_names, num_train=16)


def _build(run, caplog):
    """model_lib.build_model's model at step 0, and the lines it logged."""
    caplog.clear()
    # On the absl logger itself: an earlier test in this process may have
    # lowered its verbosity (python -m export sets WARNING).
    with caplog.at_level(logging.INFO, logger="absl"):
        model = model_lib.build_model(run, pixel_mean=np.full((run.image_size,) * 2 + (3,), 7.0))
    return model, caplog.messages


def _assert_network_is(model, source):
    """Every weighted layer of the model's network but its top holds the
    weights of the same layer of `source` (a keras.Model)."""
    layers = [l for l in model.get_layer("resnet20").layers if l.weights and l.name != "predictions"]
    assert len(layers) == 38  # 19 convs and their BNs (Sec. 4.2: 6n+1 convs, n=3; option A: no more)
    for layer in layers:
        for got, want in zip(layer.weights, source.get_layer(layer.name).weights, strict=True):
            # rtol: a legacy file's BN epsilon 1.001e-5 is folded into the variance.
            np.testing.assert_allclose(keras.ops.convert_to_numpy(got), keras.ops.convert_to_numpy(want),
                                       rtol=1e-6, err_msg=layer.name)


def _mean(model):
    (layer,) = [l for l in model.layers if isinstance(l, MeanSubtraction)]
    return layer.mean


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    """model.keras of a tiny run on synthetic 10-class data, as train.py leaves it."""
    model_dir = tmp_path_factory.mktemp("source") / "run"
    trainer.train(run_lib.Config(**dict(SMALL, dataset="synthetic", synthetic_examples=32,
                                         batch_size=16, train_steps=2, model_dir=str(model_dir))))
    return str(model_dir / "model.keras")


@pytest.mark.parametrize("top,line", [
    (True, "new 3-class top (the file's top has 10 classes)"),
    (False, "new 3-class top (the file has none)"),
])
def test_files_in_the_published_layout_with_or_without_a_top(tmp_path, caplog, top, line):
    # As resnet50_weights_tf_dim_ordering_tf_kernels{,_notop}.h5, on ResNet-20.
    source = with_trained_statistics(keras_resnet.ResNet20(input_shape=(16, 16, 3)))
    path = str(tmp_path / "weights.h5")
    write_legacy(source if top else keras.Model(source.input, source.get_layer("conv4_block3_out").output),
                 path)
    model, lines = _build(_run(path), caplog)
    assert f"{path}: {line}" in lines
    assert model.output_shape == (None, 3)
    _assert_network_is(model, source)
    np.testing.assert_array_equal(_mean(model), 7.0)  # no preprocessing in the file: the data's


def test_own_model_keeps_its_top_only_for_the_same_classes(source_run, caplog):
    source = keras.saving.load_model(source_run)
    same = metadata.read_keras(source_run).class_names
    model, lines = _build(_run(source_run, same), caplog)
    assert f"{source_run}: kept the file's 10-class top" in lines
    np.testing.assert_array_equal(model.get_layer("resnet20").get_layer("predictions").kernel.numpy(),
                                  source.get_layer("resnet20").get_layer("predictions").kernel.numpy())
    others = tuple(f"c{i}" for i in range(10))
    model, lines = _build(_run(source_run, others), caplog)
    assert f"{source_run}: new 10-class top (the file's top is for other classes, e.g. '0')" in lines
    assert not np.allclose(model.get_layer("resnet20").get_layer("predictions").kernel.numpy(),
                           source.get_layer("resnet20").get_layer("predictions").kernel.numpy())


# ~20 s; fine-tuning from a .keras file: test_own_model_keeps_its_top_only_for_the_same_classes,
# evaluate and export read what it carries: test_imagenet_weights_in_train_evaluate_and_export
@pytest.mark.slow
def test_own_model_onto_3_classes_then_evaluate_and_export(source_run, image_folder, tmp_path, caplog):
    source = keras.saving.load_model(source_run)
    # Step 0: the source's network and per-pixel mean (same image size), a new head.
    model, lines = _build(_run(source_run), caplog)
    assert f"{source_run}: new 3-class top (the file's top has 10 classes)" in lines
    assert f"preprocessing: kept the per-pixel mean of {source_run}" in lines
    assert model.output_shape == (None, 3)
    _assert_network_is(model, source.get_layer("resnet20"))
    np.testing.assert_array_equal(_mean(model), _mean(source))

    model_dir = tmp_path / "finetuned"
    result = trainer.train(run_lib.Config(**dict(
        SMALL, weights=source_run, dataset=str(image_folder), train_steps=1, model_dir=str(model_dir))))
    np.testing.assert_array_equal(_mean(result.model), _mean(source))
    info = metadata.read_keras(str(model_dir / "model.keras"))
    assert (info.class_names, info.preprocessing, info.image_size) == (CLASSES, "pixel_mean", 16)

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO)
    out = tmp_path / "eval.json"
    evaluated = subprocess.run(
        [sys.executable, os.path.join(REPO, "evaluate.py"), f"--model_path={model_dir / 'model.keras'}",
         f"--dataset={image_folder}", f"--output_json={out}", "--strategy=one_device"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(out.read_text())["num_examples"] == 15  # 5 val images per class
    exported = subprocess.run(
        [sys.executable, "-m", "export", f"--model_path={model_dir / 'model.keras'}",
         f"--output_dir={tmp_path / 'serving'}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert exported.returncode == 0, exported.stderr
    assert (tmp_path / "serving" / "resnet20" / "1" / "saved_model.pb").is_file()


def test_own_pixel_mean_is_replaced_at_another_image_size(source_run, caplog):
    model, lines = _build(_run(source_run, image_size=8), caplog)
    assert (f"preprocessing: replaced the per-pixel mean of {source_run} by the new training "
            "set's per-pixel mean (image size 16 there, 8 now)") in lines
    np.testing.assert_array_equal(_mean(model), 7.0)
    assert model.input_shape == (None, 8, 8, 3)


def test_own_caffe_mean_is_kept_over_the_recipe_s(tmp_path, caplog):
    # A model trained with the caffe mean, as the ImageNet recipes write it.
    path = str(tmp_path / "caffe.keras")
    network = keras_resnet.ResNet20(input_shape=(16, 16, 3))
    with_preprocessing(network, caffe_preprocessing()).save(path)
    metadata.write_keras(path, metadata.ModelInfo(
        model="resnet20", family="cifar", image_size=16, test_view="single",
        class_names=[str(i) for i in range(10)], preprocessing="caffe"))
    run = _run(path)  # the smoke recipe's mean is the per-pixel one
    assert (run.recipe.mean, run.preprocessing, run.model_info().preprocessing) == (
        "pixel_mean", "caffe", "caffe")
    model, lines = _build(run, caplog)
    assert f"preprocessing: kept the caffe mean of {path}" in lines
    (layer,) = [l for l in model.layers if isinstance(l, MeanSubtraction)]
    assert layer.reverse_channels
    np.testing.assert_allclose(layer.mean, IMAGENET_BGR_MEAN)
    _assert_network_is(model, network)


def test_refused_before_any_work(source_run):
    with pytest.raises(ArgumentError, match=r"freeze_backbone needs weights \(a frozen random "
                                            r"backbone learns nothing\)") as error:
        run_lib.resolve_settings(run_lib.Config(freeze_backbone=True))
    assert (error.value.argument, error.value.value) == ("freeze_backbone", True)
    with pytest.raises(ArgumentError, match=r"weights must hold a resnet32, the model asked for "
                                            r"\(it holds a resnet20\)") as error:
        run_lib.resolve_settings(run_lib.Config(model="resnet32", weights=source_run))
    assert error.value.value == source_run


def test_file_of_another_depth_is_refused_naming_it(tmp_path):
    path = str(tmp_path / "resnet32.h5")
    write_legacy(keras_resnet.ResNet32(input_shape=(16, 16, 3)), path)
    with pytest.raises(ValueError, match=f"Weights file {path} does not fit the model: the file "
                                         r"is for another depth: its stages have \(5, 5, 5\)"):
        model_lib.build_model(_run(path), pixel_mean=np.zeros((16, 16, 3)))


def test_a_model_keras_is_resolved_once_and_its_metadata_read_once(source_run, caplog, monkeypatch):
    reads = []
    read_keras = metadata.read_keras
    monkeypatch.setattr(metadata, "read_keras", lambda path: reads.append(path) or read_keras(path))
    run = _run(source_run)
    assert run.weights.path == source_run and run.weights.info.model == "resnet20"
    _build(run, caplog)
    assert reads == [source_run]  # not once by each of the run's checks, preprocessing and model
