"""The training loop: short real runs, outputs, resume after SIGKILL, errors."""

import dataclasses
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings

import keras
import numpy as np
import pytest
import tensorflow_datasets as tfds

from keras_resnet.data import folders
from keras_resnet.errors import ArgumentError
from keras_resnet.evaluation import artefacts
from keras_resnet.evaluation import protocols
from keras_resnet.models import metadata
from keras_resnet.models.preprocessing import MeanSubtraction
from keras_resnet.training import callbacks
from keras_resnet.training import model as model_lib
from keras_resnet.training import recipes
from keras_resnet.training import run as run_lib
from keras_resnet.training import trainer
from tests.helpers import backed_up_epochs

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# A small learnable problem: ResNet-20 on 16x16 images, 4 steps an epoch.
SMALL = dict(dataset="synthetic", recipe="smoke", batch_size=16, image_size=16,
             synthetic_examples=64, strategy="one_device", verbose=0)


def _config(tmp_path, **kwargs):
    return run_lib.Config(**dict(SMALL, **dict(dict(model_dir=str(tmp_path / "run")), **kwargs)))


def _check_outputs(model_dir, epochs, iterations):
    for name in ("model.keras", "checkpoints/best.keras", "checkpoints/last.keras",
                 "config.json", "history.csv", "curves.png"):
        assert os.path.getsize(os.path.join(model_dir, name)) > 0, name
    with open(os.path.join(model_dir, "curves.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    rows = callbacks.read_history(os.path.join(model_dir, "history.csv"))
    assert [r["epoch"] for r in rows] == list(range(1, epochs + 1))
    assert [r["iterations"] for r in rows] == iterations
    assert all(set(callbacks.HISTORY_COLUMNS) <= set(r) for r in rows)
    return rows


def _check_model_file(model_dir, trained, image_size):
    """model.keras loads safely, carries its mean and predicts like `trained`."""
    loaded = keras.models.load_model(os.path.join(model_dir, "model.keras"))
    means = [layer for layer in loaded.layers if isinstance(layer, MeanSubtraction)]
    assert len(means) == 1 and means[0].mean.shape == (image_size, image_size, 3)
    assert 0 < means[0].mean.min() and means[0].mean.max() < 255
    raw = np.random.RandomState(0).uniform(0, 255, (4, image_size, image_size, 3))
    expected = trained.predict(raw, verbose=0)
    got = loaded.predict(raw, verbose=0)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.sum(-1), 1, rtol=1e-5)


@pytest.mark.parametrize("strategy,replicas", [("one_device", 1), ("mirrored", 2)])
def test_short_run_on_mock_cifar10(tmp_path, strategy, replicas):
    config = run_lib.Config(dataset="cifar10", batch_size=8, train_steps=7, strategy=strategy,
                             model_dir=str(tmp_path / "run"), verbose=0)
    with tfds.testing.mock_data(num_examples=40):
        result = trainer.train(config)
    # 40 images / batch 8 = 5 steps an epoch; 7 steps: a full and a short epoch.
    rows = _check_outputs(config.model_dir, 2, [5, 7])
    summary = json.load(open(os.path.join(config.model_dir, "config.json")))
    assert (summary["replicas"], summary["recipe"]["name"]) == (replicas, "cifar_paper")
    # cifar_paper at batch 8: lr 0.1 * 8 / 128; shortened to 7 steps, the drops
    # stay at 50% and 75% of the run (steps 4 and 5); lr is the epoch's last.
    assert [r["lr"] for r in rows] == pytest.approx([0.000625, 0.0000625])
    _check_model_file(config.model_dir, result.model, 32)


@pytest.mark.parametrize("strategy,replicas", [("one_device", 1), ("mirrored", 2)])
def test_short_run_on_image_folder(tmp_path, image_folder, strategy, replicas):
    config = _config(tmp_path, dataset=str(image_folder), batch_size=4, train_steps=5,
                     strategy=strategy)
    result = trainer.train(config)
    _check_outputs(config.model_dir, 2, [3, 5])  # 15 readable images, 3 steps an epoch.
    summary = result.summary
    assert (summary["replicas"], summary["num_train"], summary["skipped_images"]) == (
        replicas, 15, 2)
    assert summary["class_names"] == ["class0", "class1", "class2"]
    _check_model_file(config.model_dir, result.model, 16)
    # What evaluation and serving read: resnet20 is of the CIFAR family, its
    # recipe's augmentation (cifar) is tested on the image itself ("single").
    expected = metadata.ModelInfo(model="resnet20", family="cifar", image_size=16,
                                  test_view="single", class_names=summary["class_names"],
                                  preprocessing="pixel_mean")
    for name in ("model.keras", "checkpoints/best.keras", "checkpoints/last.keras"):
        assert metadata.read_keras(os.path.join(config.model_dir, name)) == expected, name


def test_learns_a_learnable_task(tmp_path):
    # 128 images of 10 classes, each a colour plus noise; chance is 10%.
    result = trainer.train(_config(tmp_path, batch_size=32, synthetic_examples=128, epochs=10))
    last = result.history[-1]
    assert last["iterations"] == 40
    assert last["accuracy"] >= 0.9, result.history
    assert last["val_accuracy"] >= 0.4, result.history
    # smoke recipe: cosine decay to ~0 at the last step.
    assert last["lr"] < 1e-4


def test_a_warm_up_asked_of_a_recipe_without_one_runs_at_a_tenth_then_the_schedule_takes_over():
    # The paper's ResNet-110 start (0.01 for 400 iterations, then 0.1) given to
    # another net of the paper's recipe, here 3 of 8 iterations at batch 128.
    config = run_lib.Config(dataset="cifar10", model="resnet56", train_steps=8, warmup_steps=3)
    run = run_lib.resolve_settings(config).with_data(["a", "b"], num_train=1280)
    rates = [float(run.schedule(step)) for step in range(8)]
    assert rates == pytest.approx([0.01] * 3 + [0.1] + [0.01] * 2 + [0.001] * 2)
    config = dataclasses.replace(config, warmup_learning_rate=0.02)
    assert float(run_lib.resolve_settings(config).with_data(["a"], num_train=1280).schedule(0)) == (
        pytest.approx(0.02))


def test_run_decides_each_value_once():
    # cifar_paper (Sec. 4.2) at batch 8 on 40 images: 5 steps an epoch; 7
    # steps are a full epoch and one of 2; lr 0.1 scaled by 8 / 128.
    config = run_lib.Config(dataset="cifar10", batch_size=8, train_steps=7)
    run = run_lib.resolve_settings(config).with_data(["a", "b"], num_train=40)
    assert (run.config.recipe, run.config.image_size, run.family) == ("cifar_paper", 32, "cifar")
    assert (run.config.dataset, run.preprocessing, run.test_view) == ("cifar10", "pixel_mean", "single")
    assert (run.steps_per_epoch, run.train_steps, run.epochs, run.last_epoch_steps) == (5, 7, 2, 2)
    assert (run.num_classes, run.learning_rate) == (2, 0.1 * 8 / 128)
    assert run.schedule is run.schedule  # one schedule for the optimizer and the history.
    # epochs count whole epochs of the data; the recipe's batch by default.
    settings = run_lib.resolve_settings(dataclasses.replace(config, batch_size=None, train_steps=None, epochs=3))
    run = settings.with_data(["a"], num_train=1000)
    assert (run.batch_size, run.steps_per_epoch, run.train_steps, run.last_epoch_steps) == (
        128, 7, 21, 7)
    # Where a run writes unless told, decided here only: runs/<model>_<dataset>.
    assert run.config.model_dir == os.path.join("runs", "resnet20_cifar10")
    folder = run_lib.resolve_settings(run_lib.Config(model="ResNet-56", dataset="/data/flowers/"))
    assert folder.config.model_dir == os.path.join("runs", "resnet56_flowers")
    # Where and how a run trains, and its length, do not make it another run.
    elsewhere = dataclasses.replace(config, model_dir="/elsewhere", data_dir="/d", manual_dir="/m",
                                    strategy="mirrored", jit_compile=True, verbose=2, epochs=9,
                                    train_steps=99)
    assert elsewhere.identifying_fields() == config.identifying_fields()
    assert dataclasses.replace(config, model="resnet32").identifying_fields() != (
        config.identifying_fields())


@pytest.mark.parametrize("first", [1, 0])  # 0: a file written before epochs counted from 1.
def test_history_is_rewritten_from_the_restored_epoch(tmp_path, first):
    path = str(tmp_path / "history.csv")
    callbacks.write_history(path, [dict(epoch=e, iterations=e + 1, lr=0.1, loss=1.0)
                                  for e in range(first, first + 3)])
    callback = callbacks.HistoryFile(path, recipes.RecipeSchedule(0.1))
    assert [r["epoch"] for r in callback.rows] == [1, 2, 3]  # a finished run's.
    callback.on_epoch_begin(1)  # Keras' index after the restored epoch 1.
    assert [r["epoch"] for r in callbacks.read_history(path)] == [1]
    assert callback.rows == callbacks.read_history(path)


@pytest.mark.parametrize("change,message", [
    (dict(model="resnet7"), "Unknown model name: 'resnet7'"),
    (dict(dataset="cifar11"), "Unknown dataset: 'cifar11'"),
    (dict(dataset="/nonexistent/folder"), "does not exist: '/nonexistent/folder'"),
    (dict(recipe="fast"), "Unknown recipe: 'fast'"),
    (dict(strategy="mirrored", batch_size=5), "batch_size must be divisible by the 2 replicas"),
    (dict(strategy="tpu"), "strategy must be one of auto, .*Received: strategy='tpu'"),
    (dict(mixed_precision="int8"), "mixed_precision must be one of none, .*'int8'"),
])
def test_clear_errors(tmp_path, change, message):
    with pytest.raises(ValueError, match=message) as info:
        trainer.train(_config(tmp_path, **change))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("change,message", [
    (dict(learning_rate=0.0), "learning_rate must be > 0. Received: learning_rate=0.0"),
    (dict(learning_rate=-4.0), "learning_rate must be > 0. Received: learning_rate=-4.0"),
    (dict(batch_size=0), "batch_size must be >= 1. Received: batch_size=0"),
    (dict(epochs=0), "epochs must be >= 1. Received: epochs=0"),
    (dict(train_steps=-1), "train_steps must be >= 1. Received: train_steps=-1"),
    (dict(epochs=1, train_steps=2), "epochs cannot be given with train_steps"),
    (dict(synthetic_examples=0), "synthetic_examples must be >= 1"),
    # The smallest inputs that keep a pixel after the total stride (4 and 32).
    (dict(image_size=3), "image_size must be >= 4 for resnet20. Received: image_size=3"),
    (dict(model="resnet18", image_size=16), "image_size must be >= 32 for resnet18"),
    (dict(seed=-1), "seed must be >= 0"),
    (dict(warmup_steps=-1), "warmup_steps must be >= 0. Received: warmup_steps=-1"),
    (dict(warmup_steps=4, warmup_learning_rate=0.0), "warmup_learning_rate must be > 0"),
    (dict(recipe="cifar_paper", warmup_learning_rate=0.01),
     "warmup_learning_rate sets a constant warm-up's rate; needs warmup_steps: the recipe has no "
     "warm-up"),
    (dict(warmup_learning_rate=0.01), "the warm-up of recipe smoke rises linearly"),
    (dict(verbose=3), "verbose must be 0, 1 or 2"),
    (dict(weights="imagenet"), r"weights must be None \(He initialisation\) or the path to an "
                               r"existing weights file: resnet20 has no published weights"),
    (dict(weights="/nowhere.weights.h5"), r"weights must be None \(He initialisation\) or the "
                                          r"path to an existing weights file: resnet20 has no "
                                          r"published weights. Received: "
                                          r"weights='/nowhere.weights.h5'"),
])
def test_bad_values_are_refused_before_any_work(tmp_path, change, message):
    config = _config(tmp_path, **change)
    with pytest.raises(ArgumentError, match=message):
        trainer.train(config)
    assert not os.path.exists(config.model_dir)


def test_options_that_published_weights_lack_are_refused_before_any_work(tmp_path):
    config = _config(tmp_path, model="resnet50", weights="imagenet", shortcut="C", image_size=32)
    with pytest.raises(ValueError, match=r"^The 'imagenet' weights of resnet50 are for "
                                         r"shortcut='B'. Received: shortcut='C'$"):
        run_lib.resolve_settings(config)  # before any data: nothing to read yet


def test_empty_folder_error(tmp_path):
    for split in ("train", "val"):
        for name in ("a", "b"):
            (tmp_path / "empty" / split / name).mkdir(parents=True)
    with pytest.raises(ValueError, match="No JPEG/PNG images"):
        trainer.train(_config(tmp_path, dataset=str(tmp_path / "empty")))


def test_unwritable_model_dir(tmp_path):
    (tmp_path / "file").write_text("a file, not a folder")
    with pytest.raises(ArgumentError, match="model_dir is not writable: .*Received: model_dir='.*file/run'"):
        trainer.train(_config(tmp_path, model_dir=str(tmp_path / "file" / "run")))


def test_model_dir_of_another_run_is_refused(tmp_path):
    config = _config(tmp_path)
    os.makedirs(config.model_dir)
    with open(os.path.join(config.model_dir, "config.json"), "w") as f:
        json.dump({"config": _config(tmp_path, model="resnet32", seed=1).identifying_fields()}, f)
    # A run that saved something (config.json alone is not in the way).
    (tmp_path / "run" / "model.keras").write_bytes(b"a finished run's model")
    with pytest.raises(ArgumentError, match="model_dir holds another run \\(model: 'resnet32' there, "
                                            "'resnet20' now; seed: 1 there, 0 now\\)"):
        trainer.train(config)


def test_model_dir_is_refused_only_for_a_real_conflict(tmp_path, image_folder, monkeypatch):
    config = _config(tmp_path, dataset=f"{image_folder}/", batch_size=4, train_steps=2)
    (tmp_path / "bad.weights.h5").write_bytes(b"not HDF5")
    with pytest.raises(ValueError, match="bad.weights.h5 is corrupt"):
        trainer.train(dataclasses.replace(config, weights=str(tmp_path / "bad.weights.h5")))
    # A run that failed before training (here: building the model, after the
    # data) leaves nothing in the way of the corrected command.
    first = trainer.train(config).history
    # "DIR/" and "DIR" are one folder: the same run, finished, not refused.
    again = trainer.train(dataclasses.replace(config, dataset=str(image_folder)))
    assert again.history == first
    # Nor are the absolute path and a relative one, from another folder.
    monkeypatch.chdir(image_folder / "train")
    relative = os.path.join("..", "..", image_folder.name)
    assert trainer.train(dataclasses.replace(config, dataset=relative)).history == first
    # The same path with other class folders is another run: refused before
    # anything is written.
    outputs = {name: open(os.path.join(config.model_dir, name), "rb").read()
               for name in ("config.json", "history.csv", "model.keras")}
    for split in ("train", "val"):
        os.rename(image_folder / split / "class2", image_folder / split / "class9")
    with pytest.raises(ArgumentError, match="dataset has other classes than the run in model_dir .*"
                                         "3 there, 3 now, e.g. 'class2'"):
        trainer.train(config)
    for name, content in outputs.items():
        assert open(os.path.join(config.model_dir, name), "rb").read() == content, name


def test_curves_mark_each_epoch(tmp_path):
    # A one-epoch run has one point per curve: without markers it is invisible.
    row = dict(epoch=1, iterations=4, accuracy=0.5, val_accuracy=0.25)
    lines = callbacks.curves_figure([row], "one epoch").axes[0].lines
    assert [line.get_label() for line in lines] == ["train", "val"]
    assert all(line.get_marker() not in (None, "", "None") for line in lines)
    assert [list(line.get_ydata()) for line in lines] == [[50.0], [75.0]]


def _cli(args, cwd, **kwargs):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO)
    return [sys.executable, os.path.join(REPO, "train.py"), *args], dict(
        cwd=cwd, env=env, text=True, **kwargs)


# ~20 s; a kill during the backup, resumed: test_stopped_while_the_backup_is_written_then_rerun
@pytest.mark.slow
def test_sigkill_then_same_command_resumes(tmp_path):
    model_dir = tmp_path / "run"
    args = ["--dataset=synthetic", "--recipe=smoke", "--image_size=16", "--batch_size=16",
            "--synthetic_examples=64", "--epochs=6", "--strategy=one_device", "--verbose=2",
            f"--model_dir={model_dir}"]
    cmd, kw = _cli(args, tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    proc = subprocess.Popen(cmd, **kw)  # the Python process itself, no shell.
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and backed_up_epochs(model_dir) < 2:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[0]
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    backed_up = backed_up_epochs(model_dir)
    assert 2 <= backed_up < 6
    # Killed at any moment: each model file is the previous or the new one.
    for name in ("checkpoints/best.keras", "checkpoints/last.keras"):
        keras.models.load_model(model_dir / name)
    assert (model_dir / ".lock").exists()  # the kernel dropped the lock itself.

    cmd, kw = _cli(args, tmp_path, capture_output=True)
    again = subprocess.run(cmd, timeout=240, **kw)
    output = again.stdout + again.stderr
    assert again.returncode == 0, output
    # From the newest state: last.keras is one epoch ahead of the backup if
    # the kill came while the backup was written.
    resumed = int(re.search(r"Resuming after epoch (\d+) \(step (\d+)\) from ", output)[1])
    assert resumed in (backed_up, backed_up + 1), output
    assert "Epoch 1/6" not in output and f"Epoch {resumed + 1}/6" in output
    _check_outputs(str(model_dir), 6, [4, 8, 12, 16, 20, 24])


def test_fine_tuning_with_a_frozen_backbone(tmp_path):
    import keras_resnet

    source = keras_resnet.get_model("resnet20", input_shape=(16, 16, 3))
    path = str(tmp_path / "start.weights.h5")
    source.save_weights(path)
    result = trainer.train(_config(tmp_path, weights=path, freeze_backbone=True, train_steps=3))
    backbone = result.model.get_layer("resnet20")
    for name in ("conv1_conv", "conv1_bn", "conv4_block3_2_bn"):
        for got, start in zip(backbone.get_layer(name).weights, source.get_layer(name).weights):
            np.testing.assert_array_equal(got.numpy(), start.numpy(), err_msg=name)
    head = backbone.get_layer("predictions").kernel.numpy()
    assert not np.allclose(head, source.get_layer("predictions").kernel.numpy())


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_workers_train_in_lockstep(tmp_path):
    # MultiWorkerMirroredStrategy with TF_CONFIG (and distribute's Keras 3.15 fix).
    cluster = {"worker": [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]}
    model_dir = tmp_path / "run"
    args = ["--dataset=synthetic", "--recipe=smoke", "--image_size=16", "--batch_size=16",
            "--synthetic_examples=64", "--train_steps=6", "--verbose=2",
            f"--model_dir={model_dir}"]
    procs = []
    for index in range(2):
        cmd, kw = _cli(args, tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        kw["env"]["TF_CONFIG"] = json.dumps({"cluster": cluster,
                                             "task": {"type": "worker", "index": index}})
        procs.append(subprocess.Popen(cmd, **kw))
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    # The chief (worker 0) writes the run; worker 1 its own scratch copy.
    # (TF names MultiWorkerMirroredStrategy CollectiveAllReduceStrategy.)
    rows = _check_outputs(str(model_dir), 2, [4, 6])
    summary = json.load(open(model_dir / "config.json"))
    assert (summary["strategy"], summary["replicas"]) == ("CollectiveAllReduceStrategy", 2)
    other = callbacks.read_history(str(model_dir / "workers" / "worker1" / "history.csv"))
    assert [r["loss"] for r in other] == [r["loss"] for r in rows]
    chief = keras.models.load_model(model_dir / "model.keras")
    worker = keras.models.load_model(model_dir / "workers" / "worker1" / "model.keras")
    for a, b in zip(chief.weights, worker.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


# ~25 s; the recipe's values: test_the_imagenet_recipe_is_section_3_4, its augmentation:
# test_imagenet_augmentation_scales_crops_flips_and_shifts_colour, its caffe mean in the
# model: test_imagenet_weights_get_a_new_head_and_the_caffe_mean, a run on a folder:
# test_short_run_on_image_folder
@pytest.mark.slow
def test_imagenet_recipe_on_image_folder(tmp_path, image_folder):
    # Scale augmentation, PCA colour noise and the "caffe" mean on a tiny ResNet-18.
    from keras_resnet.models.preprocessing import IMAGENET_BGR_MEAN

    config = _config(tmp_path, model="resnet18", recipe="imagenet_paper", dataset=str(image_folder),
                     image_size=32, batch_size=4, train_steps=2)
    result = trainer.train(config)
    _check_outputs(config.model_dir, 1, [2])
    assert result.summary["recipe"]["augment"] == "imagenet"
    info = metadata.read_keras(os.path.join(config.model_dir, "model.keras"))
    assert (info.model, info.family, info.image_size, info.test_view, info.preprocessing) == (
        "resnet18", "imagenet", 32, "center", "caffe")
    assert info.class_names == ("class0", "class1", "class2")
    loaded = keras.models.load_model(os.path.join(config.model_dir, "model.keras"))
    (mean,) = [layer for layer in loaded.layers if isinstance(layer, MeanSubtraction)]
    assert mean.reverse_channels
    np.testing.assert_allclose(mean.mean.reshape(-1), IMAGENET_BGR_MEAN)


@pytest.mark.parametrize("shortcut, pads, projections", [
    (None, 0, 3), ("A", 3, 0), ("B", 0, 3), ("C", 0, 8)])
def test_the_shortcut_option_is_the_one_asked_for(shortcut, pads, projections):
    # ResNet-18 (Sec. 3.3): channels grow 3 times; C projects in all 8 blocks.
    settings = run_lib.resolve_settings(run_lib.Config(model="resnet18", image_size=32,
                                                       shortcut=shortcut))
    model = model_lib.build_model(settings.with_data(["a", "b"], num_train=8), pixel_mean=None)
    names = [layer.name for layer in model.get_layer("resnet18").layers]
    assert sum(n.endswith("_0_pad") for n in names) == pads
    assert sum(n.endswith("_0_conv") for n in names) == projections
    assert settings.config.identifying_fields()["shortcut"] == shortcut


def test_a_shortcut_option_for_a_plain_net_or_an_unknown_one_is_refused():
    with pytest.raises(ArgumentError, match="shortcut plain18 is a plain net: it has no shortcuts"):
        run_lib.resolve_settings(run_lib.Config(model="plain18", shortcut="A"))
    with pytest.raises(ArgumentError, match="shortcut must be one of A, B, C. Received: shortcut='D'"):
        run_lib.resolve_settings(run_lib.Config(model="resnet18", shortcut="D"))


def test_imagenet_weights_get_a_new_head_and_the_caffe_mean(monkeypatch):
    # No network here: the published weights are replaced by He init, which
    # leaves what train.py builds around them to check.
    calls = []
    original = model_lib.get_model

    def get_model(name, **kwargs):
        calls.append(dict(kwargs))
        return original(name, **dict(kwargs, weights=None))

    monkeypatch.setattr(model_lib, "get_model", get_model)
    # The CIFAR recipe would subtract the pixel mean: the weights keep theirs.
    settings = run_lib.resolve_settings(run_lib.Config(
        model="resnet50", weights="imagenet", recipe="cifar_paper", image_size=32, freeze_backbone=True))
    run = settings.with_data(["a", "b", "c"], num_train=20)
    assert (run.preprocessing, run.num_classes) == ("caffe", 3)
    model = model_lib.build_model(run, pixel_mean=None)
    assert calls[0]["weights"].entry.name == "imagenet" and calls[0]["include_top"] is False
    assert model.output_shape == (None, 3)
    (mean,) = [layer for layer in model.layers if isinstance(layer, MeanSubtraction)]
    assert mean.reverse_channels  # caffe mode, as the weights were trained.
    trainable = {v.path.split("/")[-2] for v in model.trainable_variables}
    assert trainable == {"predictions"}


def test_a_moved_run_continues_for_longer_on_the_schedule_it_started_with(
        tmp_path, monkeypatch, caplog):
    # cifar_paper at batch 16, 10 steps (4 an epoch): lr 0.1 * 16 / 128, /10
    # at 50% and 75% of the run (steps 5 and 8).
    first = _config(tmp_path, recipe="cifar_paper", train_steps=10)
    trainer.train(first)
    rows = callbacks.read_history(os.path.join(first.model_dir, "history.csv"))
    assert [r["lr"] for r in rows] == pytest.approx([0.0125, 0.00125, 0.000125])
    # The folder moved to a bigger disk; the command spells it relative, with
    # a slash; flags that do not change what is trained differ.
    (tmp_path / "disk2").mkdir()
    shutil.move(first.model_dir, tmp_path / "disk2")
    monkeypatch.chdir(tmp_path)
    longer = dataclasses.replace(first, model_dir="disk2/run/", train_steps=18, strategy="auto",
                                 data_dir=str(tmp_path / "tfds"), verbose=2)
    with caplog.at_level("INFO", logger="absl"):
        result = trainer.train(longer)
    assert "Resuming after epoch 3 (step 10) from disk2/run/checkpoints/last.keras" in caplog.text
    # One record: the first run's rows as they were, then the added steps at
    # the rate the schedule ended with (a fresh 18-step plan would drop at 9
    # and 14, so step 14 would still be at 0.00125).
    continued = _check_outputs("disk2/run", 5, [4, 8, 10, 14, 18])
    assert continued[:3] == rows
    assert [r["lr"] for r in continued[3:]] == pytest.approx([0.000125, 0.000125])
    plan = result.summary["plan"]
    assert (plan["train_steps"], plan["schedule_steps"], plan["boundaries"]) == (18, 10, (5, 8))
    assert result.model.optimizer.iterations.numpy() == 18
    # Shorter than what is trained: refused before anything is written.
    with pytest.raises(ArgumentError, match="train_steps is shorter than the run in model_dir "
                                            "'disk2/run/', which has trained 18 steps"):
        trainer.train(dataclasses.replace(longer, train_steps=12))


def test_a_cosine_run_is_not_continued_past_its_end(tmp_path):
    # The smoke recipe decays to 0 at its last step: more steps would learn nothing.
    config = _config(tmp_path, epochs=1)
    trainer.train(config)
    with pytest.raises(ArgumentError, match="epochs continues the run in model_dir .* past the end "
                                            "of its cosine schedule \\(step 4\\), where its "
                                            "learning rate is 0; fine-tune from its model.keras"):
        trainer.train(dataclasses.replace(config, epochs=2))


def test_a_dataset_changed_since_the_run_started_is_refused(tmp_path, image_folder):
    config = _config(tmp_path, dataset=str(image_folder), batch_size=4, train_steps=2)
    trainer.train(config)
    num_train = json.load(open(os.path.join(config.model_dir, "config.json")))["num_train"]
    history = open(os.path.join(config.model_dir, "history.csv"), "rb").read()
    shutil.copy(image_folder / "train" / "class0" / "0.jpg", image_folder / "train" / "class0" / "new.jpg")
    with pytest.raises(ArgumentError, match=f"dataset has {num_train + 1} training images, the run "
                                            f"in model_dir .* had {num_train}; a changed dataset "
                                            "is another run"):
        trainer.train(config)
    assert open(os.path.join(config.model_dir, "history.csv"), "rb").read() == history


def test_weights_that_turn_infinite_stop_the_epoch_before_its_history_row(tmp_path, monkeypatch):
    # A weight turns infinite while the loss stays finite (here: a BN moving
    # variance, at the end of the second epoch, before the other callbacks).
    from keras_resnet.training import distribute

    def overflow(self, epoch, logs=None):
        if epoch == 1:
            variance = self.model.get_layer("resnet20").get_layer("conv1_bn").moving_variance
            variance.assign(np.full(variance.shape, np.inf, "float32"))

    monkeypatch.setattr(distribute.AverageBatchNormStatistics, "on_epoch_end", overflow)
    config = _config(tmp_path, epochs=3)
    with pytest.raises(callbacks.DivergedError, match="conv1_bn/moving_variance is not finite "
                                                      "after epoch 2; nothing of it was saved"):
        trainer.train(config)
    rows = callbacks.read_history(os.path.join(config.model_dir, "history.csv"))
    assert [r["epoch"] for r in rows] == [1]


def test_a_loss_that_turns_nan_stops_the_run_at_that_step(tmp_path, monkeypatch):
    # The loss goes NaN at the third step while the weights stay finite (as
    # when a float16 loss scale skips that update): the run stops there,
    # before the epoch ends, and nothing of it is saved.
    from keras_resnet.training import distribute

    def nan_loss(self, batch, logs=None):
        if batch == 2:
            logs["loss"] = float("nan")

    monkeypatch.setattr(distribute.AverageBatchNormStatistics, "on_train_batch_end", nan_loss,
                        raising=False)
    config = _config(tmp_path, epochs=2)
    with pytest.raises(callbacks.DivergedError, match=r"^Training diverged: the loss is nan at "
                                                      r"iteration 3; nothing of it was saved"):
        trainer.train(config)
    assert not os.path.exists(os.path.join(config.model_dir, "checkpoints", "last.keras"))
    assert backed_up_epochs(config.model_dir) == 0


def test_tensorboard_logs_the_learning_rate_under_one_tag(tmp_path):
    # HistoryFile once put "lr" into the epoch logs, which TensorBoard wrote as
    # `epoch_lr` beside its own `epoch_learning_rate`.
    import tensorflow as tf

    config = _config(tmp_path, train_steps=8)
    trainer.train(config)
    tags = set()
    for root, _, names in os.walk(os.path.join(config.model_dir, "tensorboard")):
        for name in names:
            for event in tf.compat.v1.train.summary_iterator(os.path.join(root, name)):
                tags.update(value.tag for value in event.summary.value)
    assert {"epoch_loss", "epoch_learning_rate"} <= tags, tags
    assert [t for t in tags if "lr" in t or "learning_rate" in t] == ["epoch_learning_rate"]
    # history.csv keeps its own lr column (its values: test_short_run_on_mock_cifar10).
    rows = callbacks.read_history(os.path.join(config.model_dir, "history.csv"))
    assert [r["iterations"] for r in rows] == [4, 8]
    assert all(r["lr"] > 0 for r in rows), rows


def test_history_records_the_kernels_squared_norm_each_epoch(tmp_path):
    result = trainer.train(_config(tmp_path, epochs=2))
    rows = callbacks.read_history(os.path.join(result.model_dir, "history.csv"))
    saved = keras.models.load_model(os.path.join(result.model_dir, "model.keras"))
    # The last epoch's value is that of the saved weights, summed by hand.
    kernels = [w for w in saved.get_weights() if w.ndim == 4]
    assert len(kernels) == 19  # ResNet-20: 6n + 1 convs, option A shortcuts
    assert rows[-1]["kernel_norm2"] == pytest.approx(
        sum(float(np.square(k, dtype=np.float64).sum()) for k in kernels), rel=1e-6)
    assert rows[0]["kernel_norm2"] != rows[1]["kernel_norm2"]


def test_a_folders_test_split_is_scored_once_whole_without_a_keras_warning(tmp_path, image_folder,
                                                                          caplog):
    os.rename(image_folder / "val", image_folder / "test")  # validation: held out of train/
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.INFO, logger="absl"):
        warnings.simplefilter("always")
        result = trainer.train(_config(tmp_path, dataset=str(image_folder), batch_size=4,
                                       train_steps=2))
    assert not [w for w in caught if "ran out of data" in str(w.message)]
    # The two broken files of train/ are no training images, nor counted as such.
    assert any(re.fullmatch(r"resnet20 on .*: 12 training images, 3 validation, 15 test \(2 "
                            r"skipped in all: unreadable or too large\), 3 classes; .*", line)
               for line in caplog.messages), caplog.messages
    test = folders.folder_test_split(str(image_folder), "test")
    assert result.test["num_examples"] == test.count == 15  # 5 a class; not 4 a batch, repeated
    scored, _ = protocols.evaluate(artefacts.load_artefact(str(tmp_path / "run" / "model.keras")),
                                   test, verbose=0)
    assert result.test["accuracy"] == pytest.approx(scored["top1_accuracy"])
