"""What a training run does at each batch and epoch besides learning.

- `HistoryFile`: history.csv, one row per epoch (iterations, learning rate,
  losses, accuracies), never behind the backup, never with gaps or repeats.
- `Checkpoints`: checkpoints/best.keras (best val_accuracy) and last.keras.
- `StopOnDivergence`: a NaN or infinite loss or weight stops the run before any save.
- `StopAtStep`: the last epoch ends at exactly the run's number of steps.
- `plot_curves`: curves.png, train and validation error against iterations,
  like the paper's Fig. 6.

Every file is written aside and renamed (keras_resnet.files); every model file
carries its `metadata.ModelInfo` and only finite weights (`save_model`).
"""

import csv
import io
import math
import os
import shutil
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from keras_resnet import files
from keras_resnet.models import metadata

HISTORY_COLUMNS = ("epoch", "iterations", "lr", "loss", "accuracy", "val_loss", "val_accuracy",
                   "kernel_norm2")
# A run of the paper's 64k iterations at one row an epoch is ~20 KB; a
# history.csv far larger is not ours, and is refused before it is read.
MAX_HISTORY_BYTES = 64 << 20
_INTEGER_COLUMNS = ("epoch", "iterations")

Row = dict[str, int | float]


class DivergedError(RuntimeError):
    """The loss or the weights became NaN or infinite; nothing of it was saved."""


def _history_row(values: dict[str, Any]) -> Row:
    """The HISTORY_COLUMNS of `values` (strings or numbers) as ints and floats."""
    return {
        k: (int(values[k]) if k in _INTEGER_COLUMNS else float(values[k]))
        for k in HISTORY_COLUMNS
        if values.get(k, "") != ""
    }


def read_history(path: str) -> list[Row]:
    """The rows of a history.csv, or [] if there is none. Epochs count from 1,
    as Keras' progress bar does; a file written before they did (its first
    epoch 0) is read as if it had."""
    if not os.path.lexists(path):
        return []
    text = files.read_bytes(path, MAX_HISTORY_BYTES).decode("utf8", "replace")
    rows = [_history_row(row) for row in csv.DictReader(io.StringIO(text, newline=""))]
    if rows and rows[0]["epoch"] == 0:
        rows = [dict(row, epoch=row["epoch"] + 1) for row in rows]
    return rows


def write_history(path: str, rows: list[Row]) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, HISTORY_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    files.write_text(path, text.getvalue())


def check_finite_weights(model: keras.Model, when: str) -> None:
    """Raises DivergedError if a weight of `model` is NaN or infinite."""
    for v in model.weights + model.optimizer.variables:
        if not np.isfinite(v.numpy()).all():
            raise DivergedError(
                f"Training diverged: weight {v.path} is not finite {when}; nothing "
                "of it was saved. Try a lower learning_rate."
            )


def save_model(model: keras.Model, path: str, info: metadata.ModelInfo) -> None:
    """Saves a finite `model` with its `info` aside, then renames it to `path`."""
    check_finite_weights(model, f"before saving {path}")
    with files.atomic_path(path) as staging:
        model.save(staging)
        metadata.write_keras(staging, info)


class HistoryFile(keras.callbacks.Callback):
    """history.csv, rewritten whole each epoch from the restored history.

    Listed before the backup (keras_resnet.training.backup), so the file is never behind it; on
    a restart the rows from the restored epoch on are dropped (they are about
    to be trained again), so the file has no gaps and no duplicates, unlike a
    CSVLogger appending to it. `rows` is the run's history: the restored rows
    and this process's epochs (all the file's rows if it trained none, as a
    finished run started again).
    """

    def __init__(self, path: str, schedule: Callable[[int], Any]):
        super().__init__()
        self.path, self.schedule, self._rows = path, schedule, None

    @property
    def rows(self) -> list[Row]:
        return read_history(self.path) if self._rows is None else self._rows

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if self._rows is None:  # this process's first epoch: the restored one.
            self._rows = [r for r in read_history(self.path) if r["epoch"] <= epoch]
            write_history(self.path, self._rows)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        iterations = int(self.model.optimizer.iterations.numpy())
        # The rate the epoch's last update used, in the row only: put in
        # `logs`, TensorBoard would log it a second time, as `epoch_lr` beside
        # its own `epoch_learning_rate`.
        lr = float(self.schedule(max(iterations - 1, 0)))
        self._rows.append(_history_row(dict(logs, epoch=epoch + 1, iterations=iterations, lr=lr,
                                            kernel_norm2=kernel_norm2(self.model))))
        write_history(self.path, self._rows)


def kernel_norm2(model: keras.Model) -> float:
    """The sum of the squared L2 norms of `model`'s convolution kernels: what
    weight decay weighs (its loss term is weight_decay / 2 times this), and
    what grows when updates are large against the weights (with BN a kernel's
    scale does not change its output, so nothing else pulls it back)."""
    return float(sum(np.square(v.numpy(), dtype=np.float64).sum() for v in conv_kernels(model)))


def conv_kernels(model: keras.Model) -> list[keras.Variable]:
    """The model's convolution kernels (its 4-d trainable variables), in the
    network's order."""
    return [v for v in model.trainable_variables if len(v.shape) == 4]


class StopOnDivergence(keras.callbacks.Callback):
    """Stops a run whose loss or weights are NaN or infinite, before any
    epoch-end save: listed before the callbacks that write the epoch
    (history.csv's row included)."""

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss):
            iteration = int(self.model.optimizer.iterations.numpy())
            raise DivergedError(
                f"Training diverged: the loss is {loss} at iteration {iteration}; "
                "nothing of it was saved. Try a lower learning_rate."
            )

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        check_finite_weights(self.model, f"after epoch {epoch + 1}")


class Checkpoints(keras.callbacks.Callback):
    """checkpoints/best.keras (best val_accuracy) and last.keras, each epoch,
    each with `info`.

    Listed after `history` (a HistoryFile): on a resumed run the best so far
    is that of the restored rows, and only if best.keras exists, so a file
    lost to a kill is written again.
    """

    def __init__(self, folder: str, history: HistoryFile, info: metadata.ModelInfo):
        super().__init__()
        self.best_path = os.path.join(folder, "best.keras")
        self.last_path = os.path.join(folder, "last.keras")
        self.history, self.info, self.best = history, info, None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if self.best is None and os.path.exists(self.best_path):
            scores = [r["val_accuracy"] for r in self.history.rows if "val_accuracy" in r]
            self.best = max(scores, default=None)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        save_model(self.model, self.last_path, self.info)
        score = logs.get("val_accuracy")
        if score is not None and (self.best is None or score > self.best):
            # The same bytes: a copy takes milliseconds, a second save about
            # 0.5 s of Keras' Python (ResNet-20, benchmarks/RESULTS.md).
            with files.atomic_path(self.best_path) as staging:
                shutil.copyfile(self.last_path, staging)
            self.best = score


def catch_up_best(folder: str, rows: list[Row]) -> None:
    """Writes `folder`/best.keras as Checkpoints would have for the last of
    `rows`, an epoch a run resumes after from `folder`/last.keras: a stop
    between that epoch's last.keras and best.keras writes left it undone."""
    scores = [r["val_accuracy"] for r in rows if "val_accuracy" in r]
    if rows and "val_accuracy" in rows[-1] and scores[-1] > max(scores[:-1], default=-math.inf):
        with files.atomic_path(os.path.join(folder, "best.keras")) as staging:
            shutil.copyfile(os.path.join(folder, "last.keras"), staging)


class StopAtStep(keras.callbacks.Callback):
    """Ends the last epoch early, so a run stops at exactly its last step."""

    def __init__(self, last_epoch: int, last_epoch_steps: int):
        super().__init__()
        self.last_epoch, self.last_epoch_steps, self.epoch = last_epoch, last_epoch_steps, 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.epoch == self.last_epoch and batch + 1 >= self.last_epoch_steps:
            self.model.stop_training = True


def curves_figure(rows: list[Row], title: str) -> Any:
    """Train (dashed) and validation (bold) error % against iterations, as
    the paper's Fig. 6; each epoch a marker, so a one-epoch run shows its
    point. A matplotlib Figure."""
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


def plot_curves(rows: list[Row], path: str, title: str) -> None:
    with files.atomic_path(path) as staging:
        curves_figure(rows, title).savefig(staging, dpi=100, bbox_inches="tight")
