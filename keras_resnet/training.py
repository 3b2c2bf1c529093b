"""The training library behind train.py: config -> strategy, data, model, fit.

Outputs in `model_dir`: `model.keras` (final; takes raw RGB images in [0, 255]
and applies its own mean subtraction), `checkpoints/best.keras` (best
val_accuracy) and `checkpoints/last.keras`, `backup/` (BackupAndRestore: a run
killed at any moment continues from its last finished epoch when started
again), `tensorboard/`, `history.csv` (one row per epoch), `config.json` and
`curves.png` (train and validation error against iterations, like the paper's
Fig. 6).

Learning rate and replicas: `batch_size` is global, split evenly across the
replicas; the recipe's learning rate scales linearly with the global batch
(see keras_resnet.recipes), and the number of replicas does not enter it.
"""

import csv
import dataclasses
import importlib.util
import json
import math
import os

import keras
import tensorflow as tf
from absl import logging

import keras_resnet
from keras_resnet import data as data_lib
from keras_resnet import distribute
from keras_resnet import recipes
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


class DivergedError(RuntimeError):
    """The loss became NaN and TerminateOnNaN stopped the run."""


def check_model_dir(model_dir):
    """Creates `model_dir` and proves it writable, or says why not in one line."""
    try:
        os.makedirs(model_dir, exist_ok=True)
        probe = os.path.join(model_dir, ".write_test")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise ValueError(
            f"--model_dir {model_dir!r} is not writable: {e.strerror or e}"
        ) from None


def _identity(config):
    return {k: v for k, v in dataclasses.asdict(config).items() if k != "verbose"}


def _check_same_run(path, config):
    """A model_dir's backup only fits the run that wrote it."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        stored = json.load(f).get("config", {})
    diff = [k for k, v in _identity(config).items() if stored.get(k) != v]
    if diff:
        k = diff[0]
        raise ValueError(
            f"--model_dir {config.model_dir!r} holds another run ({k}: "
            f"{stored.get(k)!r} there, {getattr(config, k)!r} now); use a new --model_dir"
        )


def read_history(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return [
            {k: (int(v) if k in ("epoch", "iterations") else float(v)) for k, v in row.items() if v != ""}
            for row in csv.DictReader(f)
        ]


def _write_atomic(path, write):
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        write(f)
    os.replace(tmp, path)


def write_history(path, rows):
    def write(f):
        writer = csv.DictWriter(f, HISTORY_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)

    _write_atomic(path, write)


class HistoryFile(keras.callbacks.Callback):
    """history.csv, rewritten whole each epoch from the restored history.

    Listed before BackupAndRestore, so the file is never behind the backup; on
    a restart the rows from the restored epoch on are dropped (they are about
    to be trained again), so the file has no gaps and no duplicates, unlike a
    CSVLogger appending to it.
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


def plot_curves(rows, path, title):
    """Train (dashed) and validation (bold) error % against iterations."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    steps = [r["iterations"] for r in rows]
    for key, style, label in (("accuracy", "--", "train"), ("val_accuracy", "-", "val")):
        points = [(s, 100 * (1 - r[key])) for s, r in zip(steps, rows) if key in r]
        if points:
            ax.plot(*zip(*points), style, linewidth=1 if style == "--" else 2, label=label)
    ax.set(xlabel="iterations", ylabel="error (%)", title=title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


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


def _resolve(config):
    """Checks the config's names and fills in the family's defaults."""
    model_key = canonical_name(config.model)
    family = keras_resnet.VARIANTS[model_key].family
    recipe = recipes.get_recipe(
        config.recipe or recipes.DEFAULT_RECIPES[family], model_key
    )
    data_lib.check_augment(recipe.augment)
    if config.mixed_precision not in PRECISIONS:
        raise ValueError(
            f"Unknown mixed_precision: {config.mixed_precision!r}. "
            f"Accepted: {', '.join(PRECISIONS)}"
        )
    if config.epochs is not None and config.train_steps is not None:
        raise ValueError("Give --epochs or --train_steps, not both.")
    image_size = config.image_size or keras_resnet.FAMILIES[family].default_size
    return model_key, family, recipe, image_size


def train(config):
    """Trains as `config` says; returns {"history", "model", "summary"}."""
    model_key, family, recipe, image_size = _resolve(config)
    strategy = distribute.make_strategy(config.strategy)
    replicas = strategy.num_replicas_in_sync
    batch_size = config.batch_size or recipe.batch_size
    if batch_size % replicas:
        raise ValueError(
            f"The global batch size {batch_size} is not divisible by the "
            f"{replicas} replicas of {type(strategy).__name__}."
        )
    model_dir = config.model_dir
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        model_dir = distribute.worker_dir(model_dir)
    check_model_dir(model_dir)
    config_path = os.path.join(model_dir, "config.json")
    _check_same_run(config_path, config)
    keras.utils.set_random_seed(config.seed)

    data = data_lib.load(
        config.dataset,
        image_size=image_size,
        batch_size=batch_size,
        augment=recipe.augment,
        seed=config.seed,
        data_dir=config.data_dir,
        manual_dir=config.manual_dir,
        num_classes=keras_resnet.FAMILIES[family].classes,
        synthetic_examples=config.synthetic_examples,
        pixel_mean=recipe.mean == "pixel" and config.weights != "imagenet",
        augment_options={"pca_std": recipe.pca_lighting},
        replicas=replicas,
    )
    steps_per_epoch = data.num_train // batch_size
    train_steps = config.train_steps
    if config.epochs is not None:
        train_steps = config.epochs * steps_per_epoch
    run_plan = recipes.plan(recipe, batch_size, train_steps, config.learning_rate)
    epochs = math.ceil(run_plan.train_steps / steps_per_epoch)
    logging.info(
        "%s on %s: %d training images (%d skipped), %d validation, %d classes; "
        "%d replicas, global batch %d, %d steps (%d epochs of %d), lr %g",
        model_key, config.dataset, data.num_train, data.skipped, data.num_val,
        data.num_classes, replicas, batch_size, run_plan.train_steps, epochs,
        steps_per_epoch, run_plan.learning_rate,
    )
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
        replicas=replicas,
        strategy=type(strategy).__name__,
        versions={"tensorflow": tf.__version__, "keras": keras.__version__},
    )
    _write_atomic(config_path, lambda f: json.dump(summary, f, indent=2))

    schedule = recipes.schedule(recipe, run_plan)
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(PRECISIONS[config.mixed_precision])
    try:
        with strategy.scope():
            model = build_model(config, recipe, schedule, data)
    finally:
        keras.config.set_dtype_policy(previous_policy)

    history_path = os.path.join(model_dir, "history.csv")
    checkpoints = os.path.join(model_dir, "checkpoints")
    best = max((r.get("val_accuracy", 0.0) for r in read_history(history_path)), default=None)
    callbacks = [
        distribute.AverageBatchNormStatistics(),
        HistoryFile(history_path, schedule),
        keras.callbacks.TerminateOnNaN(),
        StopAtStep(epochs - 1, run_plan.train_steps - (epochs - 1) * steps_per_epoch),
        keras.callbacks.ModelCheckpoint(
            os.path.join(checkpoints, "best.keras"),
            monitor="val_accuracy",
            mode="max",
            save_best_only=True,
            initial_value_threshold=best,
        ),
        keras.callbacks.ModelCheckpoint(os.path.join(checkpoints, "last.keras")),
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
    model.fit(
        data.train,
        validation_data=data.val,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        callbacks=callbacks,
        verbose=config.verbose,
    )
    rows = read_history(history_path)
    if any(math.isnan(r.get("loss", 0.0)) for r in rows) or len(rows) < epochs:
        raise DivergedError(
            f"Training stopped at epoch {len(rows)} of {epochs}: the loss became "
            "NaN (TerminateOnNaN); try a lower --learning_rate."
        )
    model.save(os.path.join(model_dir, "model.keras"))
    plot_curves(rows, os.path.join(model_dir, "curves.png"), f"{model_key} on {config.dataset}")
    return {"history": rows, "model": model, "summary": summary}
