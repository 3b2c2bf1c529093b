"""A run's backup: its state after each epoch, written whole, restored from the
newest intact copy.

`backup/latest.weights.h5` holds the model's and the optimizer's variables
after an epoch (an HDF5 dataset each, named by its place in the model's and
the optimizer's variables, with the variable's name and shape to check
against), with the epochs and steps done as attributes of the same file, so
that a state and its place in the run never disagree;
`latest.weights.h5.bkp` keeps the one before. Each is written aside and renamed
(keras_resnet.files) like every other file of a run. Keras' BackupAndRestore,
which this replaces, wrote both in place: a kill, a Ctrl-C or a full disk
while it wrote left files that no rerun could read.

`restore` loads the newest intact state: `checkpoints/last.keras` (its epoch
is the history.csv row at its optimizer's iteration count), the backup, then
its previous copy. A file that cannot be read is passed over and named in the
log; when none can, the run says so in one line and starts again from its
first step. Backups written by Keras' BackupAndRestore (`training_metadata.json`
beside them) are read too.
"""

import io
import json
import os
import shutil

import h5py
import keras
from absl import logging

from keras_resnet import files
from keras_resnet.training.callbacks import Row
from keras_resnet.training.callbacks import check_finite_weights
from keras_resnet.training.run import Progress

LATEST = "latest.weights.h5"
PREVIOUS = LATEST + ".bkp"
_KERAS_METADATA = "training_metadata.json"  # Keras' BackupAndRestore's


class UnusableError(Exception):
    """A saved state that cannot be resumed from (the reason, without the path)."""


def paths(model_dir: str) -> tuple[str, str, str]:
    """The saved states a run resumes from, in the order `restore` tries
    them: checkpoints/last.keras, the backup, the backup before it."""
    folder = os.path.join(model_dir, "backup")
    return (os.path.join(model_dir, "checkpoints", "last.keras"),
            os.path.join(folder, LATEST), os.path.join(folder, PREVIOUS))


def write(model: keras.Model, folder: str, done: Progress, keep_previous: bool) -> None:
    """Writes `model`'s state after `done` to `folder`/latest.weights.h5; with
    `keep_previous`, the file there before becomes latest.weights.h5.bkp.

    The HDF5 file is made in memory and written in one piece: h5py, writing
    a file itself, crashed the process (SIGSEGV while collecting its objects)
    after a write failed on a full disk."""
    latest, previous = os.path.join(folder, LATEST), os.path.join(folder, PREVIOUS)
    if keep_previous and os.path.exists(latest):
        with files.atomic_path(previous) as staging:
            _link_or_copy(latest, staging)
    content = io.BytesIO()
    with h5py.File(content, "w") as f:
        f.attrs["epochs"], f.attrs["steps"] = done.epochs, done.steps
        for i, variable in enumerate(_state(model)):
            f.create_dataset(str(i), data=variable.numpy()).attrs["name"] = variable.name
    files.write_bytes(latest, content.getvalue())


def _state(model: keras.Model) -> list:
    """The variables a backup holds: the model's and its optimizer's, in the
    order the model creates them (the same in every process; their paths are
    not: a process's second optimizer is "sgd_1")."""
    return model.variables + model.optimizer.variables


def _link_or_copy(source: str, target: str) -> None:
    """A hard link (the file is replaced by a rename, never rewritten, so the
    link keeps the old contents), or a copy where links are not supported."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def restore(model: keras.Model, model_dir: str, history: list[Row],
            steps_per_epoch: int) -> tuple[Progress, str | None]:
    """Loads the newest intact saved state of the run in `model_dir` into
    `model` (its variables and its optimizer's); returns what of the run it
    holds and the file it came from, or (Progress(), None) when there is none
    to resume from, `model` untouched. `history`: the rows of its
    history.csv; `steps_per_epoch`: the run's (for Keras' own backups).

    checkpoints/last.keras is tried first: an epoch writes it before its
    backup, so it is as new as the backup, or one epoch newer when the run
    was stopped while the backup was written. The backup records the steps
    exactly (the optimizer's iterations, by which last.keras is placed in the
    history, leave out the steps a float16 loss scale skipped)."""
    found = [p for p in paths(model_dir) if os.path.exists(p)]
    if not found:
        return Progress(), None
    with model.distribute_strategy.scope():  # the optimizer's variables, to load into.
        model.optimizer.build(model.trainable_variables)
    variables = _state(model)
    initial = [v.numpy() for v in variables]
    passed_over = []
    for path in found:
        try:
            done = _load(model, path, history, steps_per_epoch)
        except UnusableError as e:
            passed_over.append(f"{path} ({e})")
            continue
        for reason in passed_over:
            logging.warning("Passed over the unusable %s.", reason)
        done = _exact_steps(done, found[found.index(path) + 1:], steps_per_epoch)
        logging.info("Resuming after epoch %d (step %d) from %s.", done.epochs, done.steps, path)
        return done, path
    for variable, value in zip(variables, initial):
        variable.assign(value)
    logging.warning("Nothing in %s to resume from: %s; starting the run again from its first "
                    "step.", model_dir, "; ".join(passed_over))
    return Progress(), None


def _exact_steps(done: Progress, backups: list[str], steps_per_epoch: int) -> Progress:
    """`done`, with the steps a backup of the same epoch records."""
    for path in backups:
        try:
            recorded = _progress_of_backup(path, steps_per_epoch)
        except Exception:  # an unusable backup records nothing.
            continue
        if recorded.epochs == done.epochs:
            return recorded
    return done


def _load(model: keras.Model, path: str, history: list[Row], steps_per_epoch: int) -> Progress:
    """Loads `path` into `model`; its Progress, or UnusableError."""
    try:
        if path.endswith(".keras"):
            model.load_weights(path)
            done = _progress_in_history(int(model.optimizer.iterations.numpy()), history)
        else:
            done = _progress_of_backup(path, steps_per_epoch)
            _load_backup(model, path)
        check_finite_weights(model, f"in {path}")
    except UnusableError:
        raise
    except Exception as e:  # h5py, Keras and JSON errors alike: not this file.
        raise UnusableError(" ".join(str(e).split())[:200] or type(e).__name__) from None
    return done


def _load_backup(model: keras.Model, path: str) -> None:
    """Assigns a backup's arrays to `model`'s state, all or nothing; Keras'
    own backups (no "steps" recorded) through Keras."""
    with h5py.File(path, "r") as f:
        if "steps" not in f.attrs:
            f.close()
            model.load_weights(path)
            return
        variables = _state(model)
        if len(f) != len(variables):
            raise UnusableError(f"it holds {len(f)} variables, the run has {len(variables)}")
        values = []
        for i, variable in enumerate(variables):
            stored = f[str(i)]
            if stored.attrs["name"] != variable.name or stored.shape != tuple(variable.shape):
                raise UnusableError(
                    f"its variable {i} is {stored.attrs['name']} {stored.shape}, the run's "
                    f"{variable.name} {tuple(variable.shape)}")
            values.append(stored[()])
    for variable, value in zip(variables, values):
        variable.assign(value)


def _progress_of_backup(path: str, steps_per_epoch: int) -> Progress:
    """The Progress a backup file records: our attributes, or for Keras' own
    backups the epoch of the training_metadata.json beside it (whole epochs)."""
    with h5py.File(path, "r") as f:
        if "epochs" in f.attrs:
            return Progress(int(f.attrs["epochs"]), int(f.attrs["steps"]))
    folder, name = os.path.split(path)
    metadata = os.path.join(folder, _KERAS_METADATA + name[len(LATEST):])  # ".bkp" too
    if not os.path.exists(metadata):
        raise UnusableError(f"no epoch recorded in it nor in {metadata}")
    with open(metadata) as f:
        epochs = int(json.load(f)["epoch"])
    return Progress(epochs, epochs * steps_per_epoch)


def _progress_in_history(iterations: int, history: list[Row]) -> Progress:
    """The Progress of a model saved after the history row that has its
    optimizer's iteration count."""
    rows = [r for r in history if r.get("iterations") == iterations]
    if not rows:
        raise UnusableError(f"no row of history.csv is at its iteration {iterations}")
    return Progress(rows[-1]["epoch"], iterations)


class Backup(keras.callbacks.Callback):
    """Writes the run's backup after each epoch (`write`), counting its steps
    from `done`, the Progress the run was restored at. The backup there before
    is kept as the previous copy if it records its progress (an unusable one
    is overwritten, never kept).

    Listed last: it saves after every other callback has recorded the epoch.
    """

    def __init__(self, folder: str, done: Progress):
        super().__init__()
        self.folder, self.done, self._steps = folder, done, done.steps

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._steps += 1

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.done = Progress(epoch + 1, self._steps)
        write(self.model, self.folder, self.done, keep_previous=self._latest_usable())

    def _latest_usable(self) -> bool:
        try:
            _progress_of_backup(os.path.join(self.folder, LATEST), self.done.steps)
        except Exception:  # missing, truncated, or recording nothing.
            return False
        return True
