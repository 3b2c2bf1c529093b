"""The training library behind train.py: one run, read top to bottom in `train`.

Outputs in `model_dir`: `model.keras` (final; takes raw RGB images in [0, 255]
and applies its own mean subtraction), `checkpoints/best.keras` (best
val_accuracy) and `checkpoints/last.keras`, each carrying its
keras_resnet.metadata.ModelInfo; `backup/` (keras_resnet.backup: a run killed
at any moment continues from its last finished epoch when started again, or
for longer when started with more epochs),
`tensorboard/`, `history.csv` (one row per epoch), `config.json` and
`curves.png` (train and validation error against iterations, like the paper's
Fig. 6).

Failures: every file is written aside and renamed (keras_resnet.files), so a
kill leaves the previous version or the new one; a NaN or infinite loss or
weight stops the run (DivergedError) before anything of it is saved; every
config value is checked before any work (errors.ArgumentError, naming the
argument); a model_dir is locked while a run uses it, and refused to a run
that trains something else (another config, other classes or images).
"""

import contextlib
import dataclasses
import importlib.util
import json
import math
import os
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from absl import logging

import keras_resnet
from keras_resnet import augment
from keras_resnet import backup
from keras_resnet import distribute
from keras_resnet import files
from keras_resnet import pipeline
from keras_resnet import recipes
from keras_resnet import weights as weights_lib
from keras_resnet.callbacks import Checkpoints
from keras_resnet.callbacks import DivergedError
from keras_resnet.callbacks import HistoryFile
from keras_resnet.callbacks import StopAtStep
from keras_resnet.callbacks import StopOnDivergence
from keras_resnet.callbacks import catch_up_best
from keras_resnet.callbacks import plot_curves
from keras_resnet.callbacks import read_history
from keras_resnet.callbacks import save_model
from keras_resnet.errors import ArgumentError
from keras_resnet.models import FAMILIES
from keras_resnet.models import classifier
from keras_resnet.preprocessing import MeanSubtraction
from keras_resnet.preprocessing import caffe_preprocessing
from keras_resnet.preprocessing import with_preprocessing
from keras_resnet.run import PRECISIONS
from keras_resnet.run import Config
from keras_resnet.run import Run
from keras_resnet.run import resolve

__all__ = ["Config", "DivergedError", "Run", "build_model", "resolve", "train"]


def train(config: Config) -> dict[str, Any]:
    """Trains as `config` says; returns {"history", "model", "summary",
    "test"} (test: the final model's score on the data's test split, or None).

    Every value is checked before any work; the model_dir is locked for the
    run; config.json is written only once the data and the model are ready, so
    a run that fails before training leaves nothing that refuses the next.
    """
    run = resolve(config)
    logging.info("Training %s on %s with the %s recipe, into %s.", run.config.model,
                 run.config.dataset, run.recipe.name, run.config.model_dir)
    strategy, model_dir = distribute_run(run)
    with locked_model_dir(model_dir):
        stored = stored_run(model_dir)
        check_same_run(stored, run.config, model_dir)
        keras.utils.set_random_seed(run.config.seed)
        data = make_data(run, strategy.num_replicas_in_sync)
        run = run.with_data(data.class_names, data.num_train)
        check_same_data(stored, run, data.num_val, model_dir)
        run = run.continuing(first_plan(stored))
        model = build_model(run, data.pixel_mean, strategy)
        run = restore(run, model, model_dir)
        summary = write_summary(run, data, strategy, model_dir)
        history = fit(run, model, data, model_dir)
        save_final(run, model, history, model_dir)
        test = score_test(run, model, data, model_dir)
        return {"history": history, "model": model, "summary": summary, "test": test}


def distribute_run(run: Run) -> tuple[tf.distribute.Strategy, str]:
    """The strategy the run trains under, and the folder this worker writes."""
    strategy = distribute.make_strategy(run.config.strategy)
    replicas = strategy.num_replicas_in_sync
    if run.batch_size % replicas:
        raise ArgumentError("batch_size", run.batch_size, f"must be divisible by the "
                            f"{replicas} replicas of {type(strategy).__name__}")
    model_dir = run.config.model_dir
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        model_dir = distribute.worker_dir(model_dir)
    return strategy, model_dir


# ------------------------------------------------------------------ model_dir


@contextlib.contextmanager
def locked_model_dir(model_dir: str) -> Iterator[None]:
    """Creates `model_dir` and holds its lock (the lock file proves it
    writable), or says in one line why not (LockedError: another run).

    A run that wrote nothing there (it failed before training) leaves no
    folder holding only `.lock` behind: the folder it created is removed
    again, with the parents it created. A folder that was there before, or
    that holds anything else, stays.
    """
    created, folder = [], os.path.abspath(model_dir)
    while not os.path.isdir(folder):  # what makedirs creates (`runs/` too), deepest first.
        created.append(folder)
        folder = os.path.dirname(folder)
    try:
        os.makedirs(model_dir, exist_ok=True)
        lock = files.RunLock(model_dir, "model_dir").acquire()
    except OSError as e:
        raise ArgumentError("model_dir", model_dir, f"is not writable: {e.strerror or e}") from None
    try:
        yield
    finally:
        empty = created and os.listdir(model_dir) == [os.path.basename(lock.path)]
        if empty:  # unlinked while still held, so no other run can hold it meanwhile.
            os.remove(lock.path)
        lock.release()
        if empty:
            with contextlib.suppress(OSError):  # not empty: another run came in meanwhile.
                for folder in created:
                    os.rmdir(folder)


def stored_run(model_dir: str) -> dict[str, Any] | None:
    """config.json of the run whose state `model_dir` holds, or None: a run
    that failed before it saved anything (e.g. diverged in its first epoch)
    leaves nothing to resume or to keep, so nothing to refuse another run. A
    config.json that cannot be read (power loss) is rewritten by this run."""
    path = os.path.join(model_dir, "config.json")
    state = (*backup.paths(model_dir), os.path.join(model_dir, "model.keras"))
    if not os.path.exists(path) or not any(os.path.exists(p) for p in state):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        logging.warning("Cannot read %s (%s): the run is not checked against it.", path,
                        " ".join(str(e).split()))
        return None


def check_same_run(stored: dict[str, Any] | None, config: Config, model_dir: str) -> None:
    """A model_dir's backup and history only fit the run that wrote them
    (`Config.identifying_fields`: wherever the folder is, and however long)."""
    there = (stored or {}).get("config")
    diff = [k for k, v in config.identifying_fields().items() if there and there.get(k) != v]
    if diff:
        k = diff[0]
        raise ArgumentError("model_dir", model_dir, (
            f"holds another run ({k}: {there.get(k)!r} there, {getattr(config, k)!r} now); "
            "choose another folder"))


def check_same_data(stored: dict[str, Any] | None, run: Run, num_val: int, model_dir: str) -> None:
    """The same dataset path with other class folders, or with images added
    or removed since the run started, is another run too: its epochs and
    schedule would mix two plans."""
    class_names = list(run.class_names)
    there = (stored or {}).get("class_names", class_names)
    if there != class_names:
        changed = sorted(set(there) ^ set(class_names)) or ["their order"]
        raise ArgumentError("dataset", run.config.dataset, (
            f"has other classes than the run in model_dir {model_dir!r} ({len(there)} there, "
            f"{len(class_names)} now, e.g. {changed[0]!r}); choose another model_dir"))
    for key, what, now in (("num_train", "training", run.num_train),
                           ("num_val", "validation", num_val)):
        before = (stored or {}).get(key, now)
        if before != now:
            raise ArgumentError("dataset", run.config.dataset, (
                f"has {now} {what} images, the run in model_dir {model_dir!r} had {before}; "
                "a changed dataset is another run: choose another model_dir"))


def first_plan(stored: dict[str, Any] | None) -> recipes.Plan | None:
    """The plan the stored run started with, which a continued run keeps."""
    if not stored or "plan" not in stored:
        return None
    plan = dict(stored["plan"], boundaries=tuple(stored["plan"]["boundaries"]))
    return recipes.Plan(**plan)


def restore(run: Run, model: keras.Model, model_dir: str) -> Run:
    """Loads the run's newest intact saved state into `model`; the run with
    what of it is done. Its length must leave steps to train, or be the
    length it has."""
    history = read_history(os.path.join(model_dir, "history.csv"))
    done, restored_from = backup.restore(model, model_dir, history, run.steps_per_epoch)
    if restored_from == backup.paths(model_dir)[0]:  # checkpoints/last.keras
        catch_up_best(os.path.dirname(restored_from), [r for r in history if r["epoch"] <= done.epochs])
    run = run.with_progress(done)
    length = "epochs" if run.config.epochs is not None else "train_steps"
    if run.train_steps < done.steps:
        raise ArgumentError(length, getattr(run.config, length), (
            f"is shorter than the run in model_dir {model_dir!r}, which has trained "
            f"{done.steps} steps ({done.epochs} epochs)"))
    if run.recipe.decay == "cosine" and run.train_steps > run.plan.schedule_steps:
        raise ArgumentError(length, getattr(run.config, length), (
            f"continues the run in model_dir {model_dir!r} past the end of its cosine schedule "
            f"(step {run.plan.schedule_steps}), where its learning rate is 0; fine-tune from its "
            "model.keras with --weights and a --learning_rate instead"))
    return run


# ------------------------------------------------------------- data and model


def make_data(run: Run, replicas: int) -> pipeline.Data:
    """The run's training and validation pipelines, batches split across `replicas`."""
    config = run.config
    return pipeline.load(
        config.dataset,
        image_size=run.image_size,
        batch_size=run.batch_size,
        augment=run.recipe.augment,
        seed=config.seed,
        data_dir=config.data_dir,
        manual_dir=config.manual_dir,
        num_classes=FAMILIES[run.family].classes,  # of synthetic data
        synthetic_examples=config.synthetic_examples,
        pixel_mean=run.preprocessing == "pixel_mean",
        options=augment.AugmentOptions(pca_std=run.recipe.pca_lighting),
        replicas=replicas,
        val_fraction=config.val_fraction,
        max_pixels=config.max_pixels,
    )


def _keeps_top(run: Run, source: weights_lib.WeightsSource) -> bool:
    """Whether the run's top is the weights' own, and logs which: only a top
    for the run's classes (their number, and their names where the file
    records them) can predict them; any other gets a new one."""
    there = source.top_classes
    if there is None:
        reason = "the file has none"
    elif there != run.num_classes:
        reason = f"the file's top has {there} classes"
    elif source.info is not None and source.info.class_names != run.class_names:
        other = sorted(set(source.info.class_names) ^ set(run.class_names))
        reason = (f"the file's top is for other classes, e.g. {other[0]!r}" if other
                  else "the file's top has the classes in another order")
    else:
        logging.info("%s: kept the file's %d-class top", source.name, there)
        return True
    logging.info("%s: new %d-class top (%s)", source.name, run.num_classes, reason)
    return False


def _backbone(run: Run, source: weights_lib.WeightsSource | None) -> keras.Model:
    """The network with a `run.num_classes` top; the weights of `source`
    (`config.weights`) loaded all or nothing, their top only if it fits."""
    config, recipe = run.config, run.recipe
    options = dict(input_shape=(run.image_size, run.image_size, 3),
                   weight_decay=recipe.weight_decay)
    if source is not None and not _keeps_top(run, source):
        # The rest of the network as the weights have it, and a new head.
        base = keras_resnet.get_model(
            config.model, weights=config.weights, include_top=False, pooling="avg", **options
        )
        head = classifier(run.num_classes, weight_decay=recipe.weight_decay)
        backbone = keras.Model(base.input, head(base.output), name=base.name)
    else:
        backbone = keras_resnet.get_model(
            config.model, weights=config.weights, classes=run.num_classes, **options
        )
    if config.freeze_backbone:
        # trainable=False also runs Keras 3 BatchNormalization in inference
        # mode: its moving statistics stay those of the weights.
        for layer in backbone.layers:
            layer.trainable = layer.name == weights_lib.TOP_LAYER
    return backbone


def _preprocessing(run: Run, pixel_mean: np.ndarray | None,
                   source: weights_lib.WeightsSource | None) -> MeanSubtraction:
    """The run's mean subtraction (`run.preprocessing`): the caffe mean, or a
    per-pixel mean: that of the model the weights come from, as its backbone
    learnt its features on inputs so preprocessed, where it applies (the same
    image size); else `pixel_mean`, the new training set's. Logs which."""
    info = source.info if source is not None else None
    if run.preprocessing == "caffe":
        if info is not None:
            logging.info("preprocessing: kept the caffe mean of %s", source.name)
        return caffe_preprocessing()
    if info is not None and source.mean is not None and info.image_size == run.image_size:
        logging.info("preprocessing: kept the per-pixel mean of %s", source.name)
        return MeanSubtraction(source.mean, name="preprocessing")
    if info is not None:
        reason = (f"image size {info.image_size} there, {run.image_size} now"
                  if source.mean is not None else "the file holds none")
        logging.info("preprocessing: replaced the per-pixel mean of %s by the new training "
                     "set's per-pixel mean (%s)", source.name, reason)
    return MeanSubtraction(pixel_mean, name="preprocessing")


def build_model(run: Run, pixel_mean: np.ndarray | None,
                strategy: tf.distribute.Strategy | None = None) -> keras.Model:
    """The backbone with its preprocessing in front (`pixel_mean`, the data's,
    for "pixel_mean", unless the weights' own applies), compiled with the
    recipe, under `strategy` and the run's precision policy."""
    source = weights_lib.read_source(run.config.weights) if run.config.weights else None
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(PRECISIONS[run.config.mixed_precision])
    try:
        with strategy.scope() if strategy else contextlib.nullcontext():
            model = with_preprocessing(_backbone(run, source),
                                       _preprocessing(run, pixel_mean, source))
            model.compile(
                optimizer=keras.optimizers.SGD(run.schedule,
                                               momentum=run.recipe.momentum,
                                               nesterov=run.recipe.nesterov),
                loss=keras.losses.CategoricalCrossentropy(
                    label_smoothing=run.recipe.label_smoothing),
                metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
                jit_compile=run.config.jit_compile,
            )
            return model
    finally:
        keras.config.set_dtype_policy(previous_policy)


def write_summary(run: Run, data: pipeline.Data, strategy: tf.distribute.Strategy,
                  model_dir: str) -> dict[str, Any]:
    """Logs the run and writes config.json: its identity and every value
    decided for it. Returns what it wrote."""
    logging.info(
        "%s on %s: %d training images (%d skipped), %d validation, %d classes; "
        "%d replicas, global batch %d, %d steps (%d epochs of %d), lr %g",
        run.config.model, run.config.dataset, run.num_train, data.skipped, data.num_val,
        run.num_classes, strategy.num_replicas_in_sync, run.batch_size, run.train_steps,
        run.epochs, run.steps_per_epoch, run.learning_rate,
    )
    summary = dict(
        config=run.config.identifying_fields(),
        recipe=dataclasses.asdict(run.recipe),
        plan=dataclasses.asdict(run.plan),
        steps_per_epoch=run.steps_per_epoch,
        epochs=run.epochs,
        num_train=run.num_train,
        num_val=data.num_val,
        num_test=data.num_test,
        splits=data.splits,
        num_classes=run.num_classes,
        skipped_images=data.skipped,
        class_names=list(run.class_names),
        preprocessing=run.preprocessing,
        test_view=run.test_view,
        replicas=strategy.num_replicas_in_sync,
        strategy=type(strategy).__name__,
        versions={"tensorflow": tf.__version__, "keras": keras.__version__,
                  "keras_resnet": keras_resnet.__version__},
    )
    files.write_text(os.path.join(model_dir, "config.json"), json.dumps(summary, indent=2))
    return summary


# ------------------------------------------------------------------------ fit


def make_callbacks(run: Run, model_dir: str) -> tuple[HistoryFile, list[keras.callbacks.Callback]]:
    """The run's HistoryFile, and all its callbacks in the order they must run."""
    history = HistoryFile(os.path.join(model_dir, "history.csv"), run.schedule)
    callbacks = [
        distribute.AverageBatchNormStatistics(),
        StopOnDivergence(),
        history,
        StopAtStep(run.epochs - 1, run.last_epoch_steps),
        Checkpoints(os.path.join(model_dir, "checkpoints"), history, run.model_info()),
        # Last: it saves after every other callback has recorded the epoch.
        backup.Backup(os.path.join(model_dir, "backup"), run.done),
    ]
    if importlib.util.find_spec("tensorboard"):
        callbacks.insert(-1, keras.callbacks.TensorBoard(
            os.path.join(model_dir, "tensorboard"), write_graph=False
        ))
    else:
        logging.warning("TensorBoard is not installed: no TensorBoard logs.")
    return history, callbacks


def fit(run: Run, model: keras.Model, data: pipeline.Data, model_dir: str) -> list[dict[str, Any]]:
    """Trains `model`, restored to `run.done`, for the run's steps left;
    returns the run's history, one row per epoch."""
    history, callbacks = make_callbacks(run, model_dir)
    if not run.steps_left:  # a finished run, started again.
        return history.rows
    model.fit(
        data.train,
        # A folder's val set has no known length (it skips unreadable files):
        # Keras would warn at each pass's end that it "ran out of data".
        validation_data=data.val.repeat(),
        validation_steps=math.ceil(data.num_val / run.batch_size),
        initial_epoch=run.done.epochs,
        epochs=run.epochs,
        steps_per_epoch=run.steps_per_epoch,
        callbacks=callbacks,
        shuffle=False,  # the pipeline shuffles.
        verbose=run.config.verbose,
    )
    return history.rows


def save_final(run: Run, model: keras.Model, history: list[dict[str, Any]], model_dir: str) -> None:
    """model.keras, with the run's metadata, and curves.png."""
    save_model(model, os.path.join(model_dir, "model.keras"), run.model_info())
    plot_curves(history, os.path.join(model_dir, "curves.png"),
                f"{run.config.model} on {run.config.dataset}")


def score_test(run: Run, model: keras.Model, data: pipeline.Data,
               model_dir: str) -> dict[str, Any] | None:
    """Scores the final model once on the data's test split (never used to
    choose a model), logs it and writes test.json; None without a test split."""
    if data.test is None:
        return None
    loss, accuracy = model.evaluate(data.test, verbose=0)
    score = dict(split=data.splits.get("test", "test"), num_examples=data.num_test,
                 loss=float(loss), accuracy=float(accuracy), iterations=run.train_steps)
    logging.info("Test split %s: accuracy %.4f, loss %.4f (%d images)", score["split"],
                 accuracy, loss, data.num_test)
    files.write_text(os.path.join(model_dir, "test.json"), json.dumps(score, indent=2))
    return score
