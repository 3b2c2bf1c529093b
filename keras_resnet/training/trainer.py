"""The training library behind train.py: one run, read top to bottom in `train`.

Outputs in `model_dir`: `model.keras` (final; takes raw RGB images in [0, 255]
and applies its own mean subtraction), `checkpoints/best.keras` (best
val_accuracy) and `checkpoints/last.keras`, each carrying its
keras_resnet.models.metadata.ModelInfo; `backup/` (keras_resnet.training.backup: a run killed
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
that trains something else (another config, other classes or images), and
before anything is written, when it holds files of something else (no
config.json of a run, or one that is not a run's: `check_model_dir`).
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
import tensorflow as tf
from absl import logging

from keras_resnet import files
from keras_resnet.data import augment
from keras_resnet.data import folders
from keras_resnet.data import pipeline
from keras_resnet.errors import ArgumentError
from keras_resnet.models.resnet import FAMILIES
from keras_resnet.training import backup
from keras_resnet.training import distribute
from keras_resnet.training import recipes
from keras_resnet.training.callbacks import Checkpoints
from keras_resnet.training.callbacks import DivergedError
from keras_resnet.training.callbacks import HistoryFile
from keras_resnet.training.callbacks import StopAtStep
from keras_resnet.training.callbacks import StopOnDivergence
from keras_resnet.training.callbacks import catch_up_best
from keras_resnet.training.callbacks import plot_curves
from keras_resnet.training.callbacks import read_history
from keras_resnet.training.callbacks import save_model
from keras_resnet.training.model import build_model
from keras_resnet.training.run import SUMMARY
from keras_resnet.training.run import Config
from keras_resnet.training.run import Run
from keras_resnet.training.run import Settings
from keras_resnet.training.run import read_summary
from keras_resnet.training.run import resolve_settings
from keras_resnet.version import __version__

__all__ = ["Config", "DivergedError", "TrainResult", "train"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainResult:
    """What `train` gives back: where the run wrote, its history.csv rows, its
    final model, the summary it wrote (config.json) and its test score
    (test.json; None without a test split)."""

    model_dir: str
    history: list[dict[str, Any]]
    model: keras.Model
    summary: dict[str, Any]
    test: dict[str, Any] | None


def train(config: Config) -> TrainResult:
    """Trains as `config` says.

    Every value is checked before any work; the model_dir is locked for the
    run; config.json is written only once the data and the model are ready, so
    a run that fails before training leaves nothing that refuses the next.
    """
    settings = resolve_settings(config)
    logging.info("Training %s on %s with the %s recipe, into %s.", settings.config.model,
                 settings.config.dataset, settings.recipe.name, settings.config.model_dir)
    strategy, model_dir = distribute_run(settings)
    check_model_dir(model_dir)
    with locked_model_dir(model_dir):
        stored = stored_run(model_dir)
        check_same_run(stored, settings.config, model_dir)
        if settings.config.deterministic:  # process-wide, and for good
            tf.config.experimental.enable_op_determinism()
        keras.utils.set_random_seed(settings.config.seed)
        data = make_data(settings, strategy.num_replicas_in_sync)
        run = settings.with_data(data.class_names, data.num_train)
        check_same_data(stored, run, data.num_val, model_dir)
        run = run.continuing(first_plan(stored))
        model = build_model(run, data.pixel_mean, strategy)
        run = restore(run, model, model_dir)
        summary = write_summary(run, data, strategy, model_dir)
        history = fit(run, model, data, model_dir)
        save_final(run, model, history, model_dir)
        test = score_test(run, model, data, model_dir)
        return TrainResult(model_dir=run.config.model_dir, history=history, model=model,
                           summary=summary, test=test)


def distribute_run(settings: Settings) -> tuple[tf.distribute.Strategy, str]:
    """The strategy the run trains under, and the folder this worker writes."""
    strategy = distribute.make_strategy(settings.config.strategy)
    replicas = strategy.num_replicas_in_sync
    if settings.batch_size % replicas:
        raise ArgumentError("batch_size", settings.batch_size, f"must be divisible by the "
                            f"{replicas} replicas of {type(strategy).__name__}")
    model_dir = settings.config.model_dir
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


def check_model_dir(model_dir: str) -> None:
    """Refuses (ArgumentError), before anything is written there, a model_dir
    that is not a run's: one holding files but no config.json, or one whose
    config.json is not a run's summary (`read_summary`). A missing or empty
    folder is a new run's. `workers/` does not count: a cluster's other
    workers make theirs there (distribute.worker_dir) before the chief may
    have written its config.json."""
    other = files.foreign_entry(model_dir, SUMMARY, ours=("workers",))
    if other is not None:
        raise ArgumentError("model_dir", model_dir, (
            f"holds files but no run of train.py (no {SUMMARY}; e.g. {other!r}); "
            "choose an empty or new folder"))
    read_summary(model_dir)


def stored_run(model_dir: str) -> dict[str, Any] | None:
    """config.json of the run whose state `model_dir` holds, or None: a run
    that failed before it saved anything (e.g. diverged in its first epoch)
    leaves nothing to resume or to keep, so nothing to refuse another run. A
    config.json that cannot be read (power loss) is rewritten by this run;
    one that is not a run's is refused (`read_summary`)."""
    summary, unreadable = read_summary(model_dir)
    state = (*backup.paths(model_dir), os.path.join(model_dir, "model.keras"))
    if not any(os.path.exists(p) for p in state):
        return None
    if unreadable is not None:
        logging.warning("Cannot read %s (%s): the run is not checked against it.",
                        os.path.join(model_dir, SUMMARY), unreadable)
    return summary


def check_same_run(stored: dict[str, Any] | None, config: Config, model_dir: str) -> None:
    """A model_dir's backup and history only fit the run that wrote them
    (`Config.identifying_fields`: wherever the folder is, and however long);
    a data folder is the same however it is spelt (relative or absolute)."""
    there = (stored or {}).get("config") or {}
    diff = [k for k, v in config.identifying_fields().items()
            if k in there and not _same_value(k, there[k], v)]
    if diff:
        differences = "; ".join(f"{k}: {there[k]!r} there, {getattr(config, k)!r} now" for k in diff)
        raise ArgumentError("model_dir", model_dir, f"holds another run ({differences}); "
                            "choose another folder")


def _same_value(key: str, there: Any, now: Any) -> bool:
    if there == now:
        return True
    if key != "dataset" or not (isinstance(there, str) and folders.is_folder(there)):
        return False
    there, now = os.path.expanduser(there), os.path.expanduser(now)
    return os.path.isdir(there) and os.path.isdir(now) and os.path.samefile(there, now)


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


# ----------------------------------------------------------- data and summary


def make_data(settings: Settings, replicas: int) -> pipeline.Data:
    """The run's training and validation pipelines, batches split across `replicas`."""
    config = settings.config
    return pipeline.make_datasets(
        config.dataset,
        image_size=settings.image_size,
        batch_size=settings.batch_size,
        augment=settings.recipe.augment,
        seed=config.seed,
        data_dir=config.data_dir,
        manual_dir=config.manual_dir,
        num_classes=FAMILIES[settings.family].classes,  # of synthetic data
        synthetic_examples=config.synthetic_examples,
        pixel_mean=settings.preprocessing == "pixel_mean",
        options=augment.AugmentOptions(pca_std=settings.recipe.pca_lighting),
        replicas=replicas,
        val_fraction=config.val_fraction,
        max_pixels=config.max_pixels,
    )


def write_summary(run: Run, data: pipeline.Data, strategy: tf.distribute.Strategy,
                  model_dir: str) -> dict[str, Any]:
    """Logs the run and writes config.json: its identity and every value
    decided for it. Returns what it wrote."""
    logging.info(
        "%s on %s: %d training images, %d validation, %d test (%d skipped in all: "
        "unreadable or too large), %d classes; "
        "%d replicas, global batch %d, %d steps (%d epochs of %d), lr %g",
        run.config.model, run.config.dataset, run.num_train, data.num_val, data.num_test,
        data.skipped, run.num_classes, strategy.num_replicas_in_sync, run.batch_size, run.train_steps,
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
                  "keras_resnet": __version__},
    )
    files.write_text(os.path.join(model_dir, SUMMARY), json.dumps(summary, indent=2))
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
    # As the validation set in `fit`: a folder's test set has no known
    # length, and Keras warns that it "ran out of data" at its end.
    loss, accuracy = model.evaluate(data.test.repeat(), steps=math.ceil(data.num_test / run.batch_size),
                                    verbose=0)
    score = dict(split=data.splits.get("test", "test"), num_examples=data.num_test,
                 loss=float(loss), accuracy=float(accuracy), iterations=run.train_steps)
    logging.info("Test split %s: accuracy %.4f, loss %.4f (%d images)", score["split"],
                 accuracy, loss, data.num_test)
    files.write_text(os.path.join(model_dir, "test.json"), json.dumps(score, indent=2))
    return score
