"""The training library behind train.py: config -> strategy, data, model, fit.

Outputs in `model_dir`: `model.keras` (final; takes raw RGB images in [0, 255]
and applies its own mean subtraction), `checkpoints/best.keras` (best
val_accuracy) and `checkpoints/last.keras`, `backup/` (BackupAndRestore: a run
killed at any moment continues from its last finished epoch when started
again), `tensorboard/`, `history.csv` (one row per epoch), `config.json` and
`curves.png` (train and validation error against iterations, like the paper's
Fig. 6).

Failures: every file is written aside and renamed (keras_resnet.files), so a
kill leaves the previous version or the new one; a NaN or infinite loss or
weight stops the run (DivergedError) before anything of it is saved; every
config value is checked before any work (ConfigError); a model_dir is locked
while a run uses it, and refused to a run with another config or classes.

Learning rate and replicas: `batch_size` is global, split evenly across the
replicas; the recipe's learning rate scales linearly with the global batch
(see keras_resnet.recipes), and the number of replicas does not enter it.
"""

import contextlib
import csv
import dataclasses
import importlib.util
import io
import json
import math
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging

import keras_resnet
from keras_resnet import data as data_lib
from keras_resnet import distribute
from keras_resnet import files
from keras_resnet import recipes
from keras_resnet import weights as weights_lib
from keras_resnet.models import canonical_name
from keras_resnet.models import classifier
from keras_resnet.preprocessing import MeanSubtraction
from keras_resnet.preprocessing import caffe_preprocessing
from keras_resnet.preprocessing import with_preprocessing

PRECISIONS = {"none": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}
HISTORY_COLUMNS = ("epoch", "iterations", "lr", "loss", "accuracy", "val_loss", "val_accuracy")


@dataclasses.dataclass
class Config:
    """One training run. None means "the recipe's (or model family's) value"."""

    model: str = "resnet20"
    dataset: str = "cifar10"
    recipe: str = None
    batch_size: int = None
    epochs: int = None
    train_steps: int = None
    learning_rate: float = None
    model_dir: str = "runs/resnet20_cifar10"
    strategy: str = "auto"
    mixed_precision: str = "none"
    jit_compile: bool = False
    seed: int = 0
    image_size: int = None
    weights: str = None
    freeze_backbone: bool = False
    data_dir: str = None
    manual_dir: str = None
    synthetic_examples: int = 1024
    verbose: int = 1  # Keras progress bars; not part of a run's identity.


class ConfigError(ValueError):
    """A Config field holds a value it cannot take (train.py names the flag)."""

    def __init__(self, name, value, requirement):
        super().__init__(f"{name} {requirement}. Received: {name}={value!r}")
        self.name, self.value, self.requirement = name, value, requirement


class DivergedError(RuntimeError):
    """The loss or the weights became NaN or infinite; nothing of it was saved."""


@contextlib.contextmanager
def locked_model_dir(model_dir):
    """Creates `model_dir` and holds its lock (the lock file proves it
    writable), or says in one line why not (LockedError: another run)."""
    try:
        os.makedirs(model_dir, exist_ok=True)
        lock = files.RunLock(model_dir, "--model_dir").acquire()
    except OSError as e:
        raise ValueError(
            f"--model_dir {model_dir!r} is not writable: {e.strerror or e}"
        ) from None
    try:
        yield
    finally:
        lock.release()


def _identity(config):
    return {k: v for k, v in dataclasses.asdict(config).items() if k != "verbose"}


def _stored_run(model_dir):
    """config.json of the run whose state `model_dir` holds, or None: a run
    that failed before it saved anything (e.g. diverged in its first epoch)
    leaves nothing to resume or to keep, so nothing to refuse another run."""
    path = os.path.join(model_dir, "config.json")
    state = ("backup/training_metadata.json", "checkpoints/last.keras", "model.keras")
    if not os.path.exists(path) or not any(
        os.path.exists(os.path.join(model_dir, p)) for p in state
    ):
        return None
    with open(path) as f:
        return json.load(f)


def _check_same_run(stored, config):
    """A model_dir's backup and history only fit the run that wrote them."""
    there = (stored or {}).get("config")
    diff = [k for k, v in _identity(config).items() if there and there.get(k) != v]
    if diff:
        k = diff[0]
        raise ValueError(
            f"--model_dir {config.model_dir!r} holds another run ({k}: "
            f"{there.get(k)!r} there, {getattr(config, k)!r} now); use a new --model_dir"
        )


def _check_same_classes(stored, config, class_names):
    """The same --dataset path with other class folders is another run too."""
    there = (stored or {}).get("class_names", class_names)
    if there != class_names:
        changed = sorted(set(there) ^ set(class_names)) or ["their order"]
        raise ValueError(
            f"--dataset {config.dataset!r} has other classes than the run in "
            f"--model_dir {config.model_dir!r} ({len(there)} there, {len(class_names)} "
            f"now, e.g. {changed[0]!r}); use a new --model_dir"
        )


def read_history(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return [
            {k: (int(v) if k in ("epoch", "iterations") else float(v)) for k, v in row.items() if v != ""}
            for row in csv.DictReader(f)
        ]


def write_history(path, rows):
    text = io.StringIO()
    writer = csv.DictWriter(text, HISTORY_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    files.write_text(path, text.getvalue())


def check_finite_weights(model, when):
    """Raises DivergedError if a weight of `model` is NaN or infinite."""
    for v in model.weights + model.optimizer.variables:
        if not np.isfinite(v.numpy()).all():
            raise DivergedError(
                f"Training diverged: weight {v.path} is not finite {when}; nothing "
                "of it was saved. Try a lower learning_rate."
            )


def save_model(model, path):
    """Saves a finite `model` aside, then renames it to `path`."""
    check_finite_weights(model, f"before saving {path}")
    with files.atomic_path(path) as staging:
        model.save(staging)


class HistoryFile(keras.callbacks.Callback):
    """history.csv, rewritten whole each epoch from the restored history.

    Listed before BackupAndRestore, so the file is never behind the backup; on
    a restart the rows from the restored epoch on are dropped (they are about
    to be trained again), so the file has no gaps and no duplicates, unlike a
    CSVLogger appending to it. `rows` then holds the restored history.
    """

    def __init__(self, path, schedule):
        super().__init__()
        self.path, self.schedule, self.rows = path, schedule, None

    def on_epoch_begin(self, epoch, logs=None):
        if self.rows is None:  # this process's first epoch: the restored one.
            self.rows = [r for r in read_history(self.path) if r["epoch"] < epoch]
            write_history(self.path, self.rows)

    def on_epoch_end(self, epoch, logs=None):
        iterations = int(self.model.optimizer.iterations.numpy())
        # The rate the epoch's last update used; later callbacks see it too.
        logs["lr"] = float(self.schedule(max(iterations - 1, 0)))
        self.rows.append(dict(logs, epoch=epoch, iterations=iterations))
        write_history(self.path, self.rows)


class StopOnDivergence(keras.callbacks.Callback):
    """Stops a run whose loss is NaN or infinite, before any epoch-end save."""

    def on_train_batch_end(self, batch, logs=None):
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss):
            iteration = int(self.model.optimizer.iterations.numpy())
            raise DivergedError(
                f"Training diverged: the loss is {loss} at iteration {iteration}; "
                "nothing of it was saved. Try a lower learning_rate."
            )


class Checkpoints(keras.callbacks.Callback):
    """checkpoints/best.keras (best val_accuracy) and last.keras, each epoch.

    Listed after `history` (a HistoryFile): on a resumed run the best so far
    is that of the restored rows, and only if best.keras exists, so a file
    lost to a kill is written again.
    """

    def __init__(self, folder, history):
        super().__init__()
        self.best_path = os.path.join(folder, "best.keras")
        self.last_path = os.path.join(folder, "last.keras")
        self.history, self.best = history, None

    def on_epoch_begin(self, epoch, logs=None):
        if self.best is None and os.path.exists(self.best_path):
            scores = [r["val_accuracy"] for r in self.history.rows if "val_accuracy" in r]
            self.best = max(scores, default=None)

    def on_epoch_end(self, epoch, logs=None):
        score = logs.get("val_accuracy")
        if score is not None and (self.best is None or score > self.best):
            save_model(self.model, self.best_path)
            self.best = score
        save_model(self.model, self.last_path)


class StopAtStep(keras.callbacks.Callback):
    """Ends the last epoch early, so a run stops at exactly `train_steps`."""

    def __init__(self, last_epoch, last_epoch_steps):
        super().__init__()
        self.last_epoch, self.last_epoch_steps, self.epoch = last_epoch, last_epoch_steps, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == self.last_epoch and batch + 1 >= self.last_epoch_steps:
            self.model.stop_training = True


def curves_figure(rows, title):
    """Train (dashed) and validation (bold) error % against iterations; each
    epoch a marker, so a one-epoch run shows its point."""
    from matplotlib.figure import Figure  # no pyplot: no global state.

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    steps = [r["iterations"] for r in rows]
    for key, style, label in (("accuracy", "--o", "train"), ("val_accuracy", "-o", "val")):
        points = [(s, 100 * (1 - r[key])) for s, r in zip(steps, rows) if key in r]
        if points:
            ax.plot(*zip(*points), style, markersize=3,
                    linewidth=1 if style == "--o" else 2, label=label)
    ax.set(xlabel="iterations", ylabel="error (%)", title=title)
    ax.legend()
    ax.grid(alpha=0.3)
    return fig


def plot_curves(rows, path, title):
    with files.atomic_path(path) as staging:
        curves_figure(rows, title).savefig(staging, dpi=100, bbox_inches="tight")


def build_model(config, recipe, schedule, data):
    """The backbone, its preprocessing in front, compiled with the recipe."""
    input_shape = (data.image_size, data.image_size, 3)
    options = dict(input_shape=input_shape, weight_decay=recipe.weight_decay)
    if config.weights == "imagenet" and data.num_classes != 1000:
        # Published weights come with a 1000-way top: keep the rest, new head.
        base = keras_resnet.get_model(
            config.model, weights="imagenet", include_top=False, pooling="avg", **options
        )
        head = classifier(data.num_classes, weight_decay=recipe.weight_decay)
        backbone = keras.Model(base.input, head(base.output), name=base.name)
    else:
        backbone = keras_resnet.get_model(
            config.model, weights=config.weights, classes=data.num_classes, **options
        )
    if config.freeze_backbone:
        # trainable=False also runs Keras 3 BatchNormalization in inference
        # mode: its moving statistics stay those of the weights.
        for layer in backbone.layers:
            layer.trainable = layer.name == "predictions"
    if config.weights == "imagenet" or recipe.mean == "caffe":
        preprocessing = caffe_preprocessing()
    else:
        preprocessing = MeanSubtraction(data.pixel_mean, name="preprocessing")
    model = with_preprocessing(backbone, preprocessing)
    model.compile(
        optimizer=keras.optimizers.SGD(
            schedule,
            momentum=recipe.momentum,
            nesterov=recipe.nesterov,
        ),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        jit_compile=config.jit_compile,
    )
    return model


def resolve(config):
    """Checks every value of `config` before any work is done; returns the
    config with the recipe's and family's defaults filled in (a run's
    identity), its model family and its recipe."""
    model = canonical_name(config.model)
    family_name = keras_resnet.VARIANTS[model].family
    family = keras_resnet.FAMILIES[family_name]
    recipe = recipes.get_recipe(config.recipe or recipes.DEFAULT_RECIPES[family_name], model)
    data_lib.check_augment(recipe.augment)
    if config.mixed_precision not in PRECISIONS:
        raise ConfigError("mixed_precision", config.mixed_precision,
                          f"must be one of {', '.join(PRECISIONS)}")
    if config.epochs is not None and config.train_steps is not None:
        raise ConfigError("epochs", config.epochs, "cannot be given with train_steps")
    lowest = dict(batch_size=1, epochs=1, train_steps=1, synthetic_examples=1, seed=0,
                  verbose=0, image_size=family.min_size)  # the total stride.
    for name, low in lowest.items():
        value = getattr(config, name)
        if value is not None and not value >= low:
            raise ConfigError(name, value, f"must be >= {low}" + (
                f" for {model}" if name == "image_size" else ""))
    if config.verbose > 2:
        raise ConfigError("verbose", config.verbose, "must be 0, 1 or 2")
    if config.learning_rate is not None and not 0 < config.learning_rate < math.inf:
        raise ConfigError("learning_rate", config.learning_rate, "must be > 0")
    if config.weights == "imagenet" and model not in weights_lib.PUBLISHED:
        raise ConfigError("weights", config.weights,
                          f"'imagenet' exists for {', '.join(weights_lib.PUBLISHED)} only")
    if config.weights not in (None, "imagenet") and not os.path.isfile(config.weights):
        raise ConfigError("weights", config.weights, "must be 'imagenet' or an existing file")
    config = dataclasses.replace(
        config,
        model=model,
        dataset=data_lib.normalize(config.dataset),
        recipe=recipe.name,
        batch_size=recipe.batch_size if config.batch_size is None else config.batch_size,
        image_size=family.default_size if config.image_size is None else config.image_size,
    )
    return config, family, recipe


def _load_data(config, family, recipe, replicas):
    return data_lib.load(
        config.dataset,
        image_size=config.image_size,
        batch_size=config.batch_size,
        augment=recipe.augment,
        seed=config.seed,
        data_dir=config.data_dir,
        manual_dir=config.manual_dir,
        num_classes=family.classes,
        synthetic_examples=config.synthetic_examples,
        pixel_mean=recipe.mean == "pixel" and config.weights != "imagenet",
        augment_options={"pca_std": recipe.pca_lighting},
        replicas=replicas,
    )


def _build(config, recipe, schedule, data, strategy):
    """build_model under `strategy` and the config's precision policy."""
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(PRECISIONS[config.mixed_precision])
    try:
        with strategy.scope():
            return build_model(config, recipe, schedule, data)
    finally:
        keras.config.set_dtype_policy(previous_policy)


def _callbacks(model_dir, schedule, epochs, last_epoch_steps):
    history = HistoryFile(os.path.join(model_dir, "history.csv"), schedule)
    callbacks = [
        distribute.AverageBatchNormStatistics(),
        StopOnDivergence(),
        history,
        StopAtStep(epochs - 1, last_epoch_steps),
        Checkpoints(os.path.join(model_dir, "checkpoints"), history),
        # Last: it saves after every other callback has recorded the epoch.
        keras.callbacks.BackupAndRestore(
            os.path.join(model_dir, "backup"), double_checkpoint=True, delete_checkpoint=False
        ),
    ]
    if importlib.util.find_spec("tensorboard"):
        callbacks.insert(-1, keras.callbacks.TensorBoard(
            os.path.join(model_dir, "tensorboard"), write_graph=False
        ))
    else:
        logging.warning("TensorBoard is not installed: no TensorBoard logs.")
    metadata = os.path.join(model_dir, "backup", "training_metadata.json")
    if os.path.exists(metadata):
        with open(metadata) as f:
            logging.info("Resuming from the backup in %s after epoch %d.",
                         os.path.dirname(metadata), json.load(f)["epoch"])
    return callbacks


def train(config):
    """Trains as `config` says; returns {"history", "model", "summary"}.

    Every value is checked before any work; the model_dir is locked for the
    run; config.json is written only once the data and the model are ready, so
    a run that fails before training leaves nothing that refuses the next.
    """
    config, family, recipe = resolve(config)
    strategy = distribute.make_strategy(config.strategy)
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise ConfigError("batch_size", config.batch_size, f"must be divisible by the "
                          f"{replicas} replicas of {type(strategy).__name__}")
    model_dir = config.model_dir
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        model_dir = distribute.worker_dir(model_dir)
    with locked_model_dir(model_dir):
        return _train_locked(config, family, recipe, strategy, model_dir)


def _train_locked(config, family, recipe, strategy, model_dir):
    stored = _stored_run(model_dir)
    _check_same_run(stored, config)
    keras.utils.set_random_seed(config.seed)
    data = _load_data(config, family, recipe, strategy.num_replicas_in_sync)
    _check_same_classes(stored, config, data.class_names)
    steps_per_epoch = data.num_train // config.batch_size
    train_steps = config.train_steps
    if config.epochs is not None:
        train_steps = config.epochs * steps_per_epoch
    run_plan = recipes.plan(recipe, config.batch_size, train_steps, config.learning_rate)
    epochs = math.ceil(run_plan.train_steps / steps_per_epoch)
    logging.info(
        "%s on %s: %d training images (%d skipped), %d validation, %d classes; "
        "%d replicas, global batch %d, %d steps (%d epochs of %d), lr %g",
        config.model, config.dataset, data.num_train, data.skipped, data.num_val,
        data.num_classes, strategy.num_replicas_in_sync, config.batch_size,
        run_plan.train_steps, epochs, steps_per_epoch, run_plan.learning_rate,
    )
    schedule = recipes.schedule(recipe, run_plan)
    model = _build(config, recipe, schedule, data, strategy)
    summary = dict(
        config=_identity(config),
        recipe=dataclasses.asdict(recipe),
        plan=dataclasses.asdict(run_plan),
        steps_per_epoch=steps_per_epoch,
        epochs=epochs,
        num_train=data.num_train,
        num_val=data.num_val,
        num_classes=data.num_classes,
        skipped_images=data.skipped,
        class_names=data.class_names,
        replicas=strategy.num_replicas_in_sync,
        strategy=type(strategy).__name__,
        versions={"tensorflow": tf.__version__, "keras": keras.__version__},
    )
    files.write_text(os.path.join(model_dir, "config.json"), json.dumps(summary, indent=2))
    model.fit(
        data.train,
        # A folder's val set has no known length (it skips unreadable files):
        # Keras would warn at each pass's end that it "ran out of data".
        validation_data=data.val.repeat(),
        validation_steps=math.ceil(data.num_val / config.batch_size),
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        callbacks=_callbacks(model_dir, schedule, epochs,
                             run_plan.train_steps - (epochs - 1) * steps_per_epoch),
        shuffle=False,  # the pipeline shuffles.
        verbose=config.verbose,
    )
    rows = read_history(os.path.join(model_dir, "history.csv"))
    save_model(model, os.path.join(model_dir, "model.keras"))
    plot_curves(rows, os.path.join(model_dir, "curves.png"), f"{config.model} on {config.dataset}")
    return {"history": rows, "model": model, "summary": summary}
