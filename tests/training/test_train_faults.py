"""train.py when things go wrong: kills, Ctrl-C, NaN, a full disk, no network,
bad input, a second run, another backend. Each test drives the real program in
a subprocess (a rerun may call trainer.train in this process, to save the
imports); a kill at a chosen write is made deterministic by a hook in the
test's own launcher script, never in the package."""

import glob
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import zipfile

import h5py
import keras
import numpy as np
import pytest

from keras_resnet import files
from keras_resnet.data import pipeline
from keras_resnet.models import metadata
from keras_resnet.training import callbacks
from keras_resnet.training import run as run_lib
from keras_resnet.training import trainer
from tests.helpers import backed_up_epochs
from tests.helpers import default_sigint
from tests.helpers import error_line
from tests.helpers import file_size_limit
from tests.helpers import run_commands

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# 64 images of 16x16, batch 16: 4 steps an epoch.
TINY = ["--dataset=synthetic", "--recipe=smoke", "--synthetic_examples=64", "--batch_size=16",
        "--image_size=16", "--model=resnet20", "--strategy=one_device", "--verbose=2"]
ARTEFACTS = ("model.keras", "checkpoints/best.keras", "checkpoints/last.keras", "config.json",
             "history.csv", "curves.png")


def _train_py(args, cwd, hook=None, env=None, **kwargs):
    """A subprocess running train.py; `hook` is Python run before it; an
    `env` value None unsets the variable."""
    full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO, **(env or {}))
    full_env = {k: v for k, v in full_env.items() if v is not None}
    script = os.path.join(REPO, "train.py")
    cmd = [sys.executable, script, *args]
    if hook:
        cmd = [sys.executable, "-c", textwrap.dedent(hook) + textwrap.dedent(f"""
            import runpy, sys
            sys.argv = [{script!r}, *{list(args)!r}]
            runpy.run_path({script!r}, run_name="__main__")
            """)]
    return subprocess.Popen(cmd, cwd=cwd, env=full_env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **kwargs)


def _run(args, cwd, timeout=240, **kwargs):
    proc = _train_py(args, cwd, **kwargs)
    stdout, stderr = proc.communicate(timeout=timeout)
    return proc.returncode, stdout, stderr


def _one_line_error(stderr, start):
    """The program's last line starts with `start`, and nothing was a traceback."""
    assert "Traceback" not in stderr, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(start), stderr[-3000:]
    return last


def _no_staging_files(model_dir):
    left = [p for p in glob.glob(f"{model_dir}/**/.*", recursive=True)
            if files.STAGING_MARK in p]
    assert not left, left


def _all_weights_finite(model_dir):
    """Every .keras and .h5 file under `model_dir` holds finite numbers only."""
    for path in glob.glob(f"{model_dir}/**/*.keras", recursive=True):
        model = keras.models.load_model(path)
        for v in model.weights:
            assert np.isfinite(v.numpy()).all(), (path, v.path)
    for path in glob.glob(f"{model_dir}/**/*.h5", recursive=True):
        with h5py.File(path) as f:
            arrays = []
            f.visititems(lambda _, x: arrays.append(x[()]) if isinstance(x, h5py.Dataset) else None)
        assert all(np.isfinite(a).all() for a in arrays if a.dtype.kind == "f"), path


# SIGKILL in the middle of writing best.keras the first time: the file has its
# first bytes, as when a process dies mid-write. The hook wraps the real save.
# best.keras is written as a copy of the epoch's last.keras.
KILL_IN_FIRST_BEST_SAVE = """
    import os, shutil, signal
    copy = shutil.copyfile
    def killed_mid_write(source, path, *args, **kwargs):
        if "best" in os.path.basename(str(path)):
            with open(path, "wb") as f:
                f.write(b"PK\\x03\\x04 partial")
            os.kill(os.getpid(), signal.SIGKILL)
        return copy(source, path, *args, **kwargs)
    shutil.copyfile = killed_mid_write
"""


def _same_config(model_dir, **changes):
    """The Config that train.py makes of TINY, for a rerun in this process."""
    return run_lib.Config(**dict(
        dict(model="resnet20", dataset="synthetic", recipe="smoke", synthetic_examples=64,
             batch_size=16, image_size=16, strategy="one_device", model_dir=str(model_dir),
             verbose=0), **changes))


def test_kill_while_best_is_first_written_then_rerun(tmp_path, image_folder, recwarn):
    # An image folder: 15 readable images of 3 classes, batch 4 (3 steps).
    model_dir = tmp_path / "run"
    args = [*TINY, f"--dataset={image_folder}", "--batch_size=4", "--epochs=2",
            f"--model_dir={model_dir}"]
    code, _, stderr = _run(args, tmp_path, hook=KILL_IN_FIRST_BEST_SAVE)
    assert code == -signal.SIGKILL, stderr
    # Killed at epoch 1's best.keras: no file, never a partial one; the row of
    # epoch 1 was logged, the backup not yet made.
    assert not (model_dir / "checkpoints" / "best.keras").exists()
    assert [r["epoch"] for r in callbacks.read_history(str(model_dir / "history.csv"))] == [1]

    # The same command again (in this process, to save the imports).
    trainer.train(_same_config(model_dir, dataset=str(image_folder), batch_size=4, epochs=2))
    # A normal run says nothing about its data feeding (the pipeline shuffles;
    # validation steps match the validation set).
    messages = [str(w.message) for w in recwarn]
    assert not [m for m in messages if "shuffle=True" in m or "ran out of data" in m], messages
    rows = callbacks.read_history(str(model_dir / "history.csv"))
    assert [r["epoch"] for r in rows] == [1, 2]
    # best.keras was written again: it scores the best epoch's val_accuracy.
    best = keras.models.load_model(model_dir / "checkpoints" / "best.keras")
    assert metadata.read_keras(str(model_dir / "checkpoints" / "best.keras")).class_names == (
        "class0", "class1", "class2")
    val = pipeline.make_datasets(str(image_folder), image_size=16, batch_size=4, augment="cifar").val
    hits = [np.argmax(best(x), -1) == np.argmax(y, -1) for x, y in val.as_numpy_iterator()]
    assert np.concatenate(hits).mean() == pytest.approx(max(r["val_accuracy"] for r in rows))
    _no_staging_files(model_dir)
    mode = 0o666 & ~_umask()
    for name in ARTEFACTS:
        assert os.stat(model_dir / name).st_mode & 0o777 == mode, name


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_second_run_is_refused_ctrl_c_stops_and_rerun_resumes(tmp_path, caplog):
    model_dir = tmp_path / "run"
    # 128 images: 8 steps an epoch, time enough to try a second run meanwhile.
    proc = _train_py([*TINY, "--synthetic_examples=128", "--epochs=3", f"--model_dir={model_dir}"],
                     tmp_path, preexec_fn=default_sigint)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not backed_up_epochs(model_dir):
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()

    # The same model_dir, while the first run trains: refused, nothing touched.
    config = _same_config(model_dir, synthetic_examples=128, epochs=3)
    history = (model_dir / "history.csv").read_bytes()
    with pytest.raises(files.LockedError, match=f"'{model_dir}' is in use by process {proc.pid}"):
        trainer.train(config)
    assert (model_dir / "history.csv").read_bytes() == history

    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert _one_line_error(stderr, "train.py: interrupted") == (
        "train.py: interrupted; run the same command to resume")
    backed_up = backed_up_epochs(model_dir)
    assert backed_up < 3

    # On the absl logger itself: an earlier test in this process may have
    # lowered its verbosity (python -m export sets WARNING).
    with caplog.at_level("INFO", logger="absl"):
        trainer.train(config)  # the same command again, in this process.
    assert re.search(f"Resuming after epoch ({backed_up}|{backed_up + 1}) \\(step \\d+\\) from "
                     f"{model_dir}/", caplog.text), caplog.text
    rows = callbacks.read_history(str(model_dir / "history.csv"))
    assert [r["epoch"] for r in rows] == [1, 2, 3]


def test_diverged_run_exits_1_and_saves_no_nan(tmp_path):
    model_dir = tmp_path / "run"
    code, _, stderr = _run([*TINY, "--epochs=3", "--learning_rate=1e6",
                            f"--model_dir={model_dir}"], tmp_path)
    assert code == 1, stderr
    line = _one_line_error(stderr, "train.py: error: Training diverged")
    assert "learning_rate" in line
    assert not (model_dir / "model.keras").exists()
    _all_weights_finite(str(model_dir))
    _no_staging_files(model_dir)
    # It saved nothing to resume: the advice, a lower rate, is not refused.
    result = trainer.train(_same_config(model_dir, epochs=1, learning_rate=0.01))
    assert result.summary["config"]["learning_rate"] == 0.01


def test_full_disk_says_which_file_and_leaves_nothing_partial(tmp_path):
    # Files may grow to 512 KiB: config.json, history.csv and the TensorBoard
    # logs fit, a ResNet-20 .keras file (~2.5 MB with its optimizer) does not.
    model_dir = tmp_path / "run"
    code, _, stderr = _run([*TINY, "--epochs=2", f"--model_dir={model_dir}"], tmp_path,
                           preexec_fn=file_size_limit(512 << 10))
    assert code == 2, stderr
    line = _one_line_error(stderr, f"train.py: error: Cannot write {model_dir}/checkpoints/")
    assert "File too large" in line and " free in " in line
    assert not glob.glob(f"{model_dir}/**/*.keras", recursive=True)
    _no_staging_files(model_dir)
    assert json.loads((model_dir / "config.json").read_text())["epochs"] == 2


def test_bad_input_is_one_line_naming_it_and_leaves_nothing_in_the_way(tmp_path, image_folder):
    (image_folder / "val" / "class7").mkdir()
    model_dir = tmp_path / "run"
    # A folder holding another run (a finished resnet32's), and a file.
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps(
        {"config": _same_config(other, model="resnet32").identifying_fields()}))
    (other / "model.keras").write_bytes(b"a finished run's model")
    (tmp_path / "file").write_text("a file, not a folder")
    commands = {
        "--learning_rate=0": "--learning_rate=0.0: must be > 0",
        "--learning_rate=-4": "--learning_rate=-4.0: must be > 0",
        "--batch_size=0": "--batch_size=0: must be >= 1",
        "--train_steps=0": "--train_steps=0: must be >= 1",
        "--image_size=2": "--image_size=2: must be >= 4 for resnet20",
        "--synthetic_examples=0": "--synthetic_examples=0: must be >= 1",
        "--model=resnet7": "Unknown model name: 'resnet7'",
        f"--dataset={image_folder}": f"'{image_folder}/val' has class folder 'class7', which "
                                     "the training split lacks",
        f"--model_dir={other}": f"--model_dir={other}: holds another run (model: 'resnet32' "
                                "there, 'resnet20' now); choose another folder",
        f"--model_dir={tmp_path}/file/run": f"--model_dir={tmp_path}/file/run: is not writable: "
                                            "Not a directory",
        # The published weights come from a mirror that lacks them (offline).
        "--model=resnet50 --image_size=32 --weights=imagenet": "Could not download "
            f"file://{tmp_path}/mirror/resnet50_weights_tf_dim_ordering_tf_kernels.h5",
    }
    argvs = [[*TINY, "--train_steps=1", *flags.split()] for flags in commands]
    argvs = [argv if any(a.startswith("--model_dir=") for a in argv)
             else [*argv, f"--model_dir={model_dir}"] for argv in argvs]
    (tmp_path / "mirror").mkdir()
    outcomes = run_commands("train.py", argvs, cwd=tmp_path, KERAS_HOME=str(tmp_path),
                            KERAS_RESNET_WEIGHTS_URL=f"file://{tmp_path}/mirror/")
    for expected, (code, stderr) in zip(commands.values(), outcomes, strict=True):
        line = error_line(code, stderr, "train.py")
        assert line.startswith(expected), stderr[-3000:]
    # The download's advice is the flag the user types, not Python.
    assert "pass its path: --weights=/path/to/resnet50_weights_tf_dim_ordering_tf_kernels" in line
    # Nothing left there refuses the corrected command.
    assert not (model_dir / "config.json").exists()


def test_offline_tfds_fails_fast_and_says_how_to_point_at_local_data(tmp_path):
    # `python train.py` with no network: a "proxy" that drops every connection
    # stands for it (no_proxy unset), so TFDS really tries its download.
    proxy = socket.create_server(("127.0.0.1", 0))
    attempts = []

    def drop_connections():
        while True:
            try:
                connection, _ = proxy.accept()
            except OSError:
                return
            attempts.append(1)
            connection.close()

    threading.Thread(target=drop_connections, daemon=True).start()
    url = f"http://127.0.0.1:{proxy.getsockname()[1]}"
    env = {name: url for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")}
    env.update(TFDS_DATA_DIR=str(tmp_path / "tfds"), no_proxy=None, NO_PROXY=None)
    start = time.time()
    try:
        code, _, stderr = _run([], tmp_path, env=env, timeout=120)
    finally:
        proxy.close()
    seconds = time.time() - start
    assert code == 2 and seconds < 30, (seconds, stderr[-2000:])
    line = _one_line_error(stderr, "train.py: error: Cannot download or prepare TFDS dataset "
                                   f"'cifar10' into '{tmp_path}/tfds/cifar10/")
    assert "www.cs.toronto.edu" in line
    # The arguments that point at local data, as their flags are named.
    assert "Point --data_dir at a TFDS data directory" in line and "--dataset=/path/to/folder" in line
    assert "--dataset=fashion_mnist, which reads Debian's dataset-fashion-mnist package" in line
    assert attempts, "TFDS never tried to download"
    # The error first: no progress bars, no retry warnings before it; the
    # reason whole; and nothing the failed download made is left.
    assert "Dl Completed" not in stderr and "Retrying" not in stderr, stderr[-3000:]
    assert len(stderr.strip().splitlines()) <= 6, stderr[-3000:]
    assert "Max retries exceeded with url: /~kriz/cifar-10-binary.tar.gz (Caused by" in line
    assert re.search(r"'\)\)\)\)\. Point --data_dir", line), line  # requests' reason, to its end
    assert not (tmp_path / "tfds").exists()
    assert not (tmp_path / "runs" / "resnet20_cifar10" / "config.json").exists()


def test_other_backend_is_refused_in_one_line(tmp_path):
    code, _, stderr = _run([f"--model_dir={tmp_path / 'run'}"], tmp_path,
                           env=dict(KERAS_BACKEND="jax"))
    assert code == 2
    _one_line_error(stderr, "train.py: error: train.py needs the TensorFlow backend")
    assert not (tmp_path / "run").exists()


# Stopped while the backup of the `at`-th epoch is written: the hook writes
# the first half of the real file to its staging path (as a write is when its
# process dies), then stops the process as `stop` says; "full_disk" lets
# files grow to 256 KiB from then on (the backup is ~2.4 MB).
STOP_IN_BACKUP = """
    import os, resource, signal
    from keras_resnet import files
    write, writes = files.write_bytes, []
    def stopped_mid_write(path, content):
        if not path.endswith("backup/latest.weights.h5"):
            return write(path, content)
        writes.append(path)
        if len(writes) == {at} and "{stop}" == "full_disk":
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (256 << 10, 256 << 10))
        elif len(writes) == {at}:
            with files.atomic_path(path) as staging:
                with open(staging, "wb") as f:
                    f.write(content[: len(content) // 2])
                    f.flush()
                    os.kill(os.getpid(), getattr(signal, "{stop}"))
        return write(path, content)
    files.write_bytes = stopped_mid_write
"""


def _rerun_completes(model_dir, epochs, **changes):
    """The same command again (in this process) ends with the whole run: a
    gap-free history, loadable model files, no staging left."""
    result = trainer.train(_same_config(model_dir, epochs=epochs, **changes))
    rows = callbacks.read_history(str(model_dir / "history.csv"))
    assert [r["epoch"] for r in rows] == list(range(1, epochs + 1))
    assert [r["iterations"] for r in rows] == [4 * (e + 1) for e in range(epochs)]
    for name in ("model.keras", "checkpoints/best.keras", "checkpoints/last.keras"):
        keras.models.load_model(model_dir / name)
    _no_staging_files(model_dir)
    return result


# SIGTERM has no handler, as SIGKILL: one `at` each covers both (the first
# backup; one with a previous backup to keep). SIGINT's handler finishes the
# write it interrupts: both.
# The others ~15 s each; the same path: test_stopped_while_the_backup_is_written_then_rerun
# (SIGKILL-1), SIGINT's handler: test_second_run_is_refused_ctrl_c_stops_and_rerun_resumes
@pytest.mark.parametrize("stop,at", [("SIGKILL", 1)] + [
    pytest.param(stop, at, marks=pytest.mark.slow) for stop, at in [("SIGTERM", 2), ("SIGINT", 1), ("SIGINT", 2)]])
def test_stopped_while_the_backup_is_written_then_rerun(tmp_path, stop, at, caplog):
    model_dir = tmp_path / "run"
    code, _, stderr = _run([*TINY, "--epochs=3", f"--model_dir={model_dir}"], tmp_path,
                           hook=STOP_IN_BACKUP.format(at=at, stop=stop),
                           preexec_fn=default_sigint)
    if stop == "SIGINT":
        assert code == 130 and _one_line_error(stderr, "train.py: interrupted"), stderr
    else:
        assert code == -getattr(signal, stop), stderr
    # The backup is the one of the epoch before, whole, or none.
    assert backed_up_epochs(model_dir) == at - 1
    with caplog.at_level("INFO", logger="absl"):
        _rerun_completes(model_dir, 3)
    # last.keras was saved before the backup: nothing of the epoch is lost.
    assert f"Resuming after epoch {at} (step {4 * at}) from {model_dir}/checkpoints/last.keras" in (
        caplog.text)
    assert backed_up_epochs(model_dir) == 3


# ~20 s; a full disk: test_full_disk_says_which_file_and_leaves_nothing_partial, a
# backup stopped mid-write: test_stopped_while_the_backup_is_written_then_rerun
@pytest.mark.slow
def test_full_disk_while_the_first_backup_is_written_then_rerun(tmp_path):
    model_dir = tmp_path / "run"
    code, _, stderr = _run([*TINY, "--epochs=2", f"--model_dir={model_dir}"], tmp_path,
                           hook=STOP_IN_BACKUP.format(at=1, stop="full_disk"))
    assert code == 2, stderr
    line = _one_line_error(stderr, f"train.py: error: Cannot write {model_dir}/backup/latest."
                                   "weights.h5: File too large")
    assert " free in " in line
    assert not (model_dir / "backup" / "latest.weights.h5").exists()
    _no_staging_files(model_dir)
    _rerun_completes(model_dir, 2)


def _damage(path, how):
    """Leaves `path` as a power loss or a killed writer may: empty, cut in half,
    or a valid HDF5 file that holds nothing."""
    if how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.unlink()
        h5py.File(path, "w").close()


def _drop_from_keras_file(path, group):
    """Removes the weights group `group` from the .keras file at `path`."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    weights = io.BytesIO(members["model.weights.h5"])
    with h5py.File(weights, "a") as f:
        dropped = []
        f.visit(lambda name: dropped.append(name) if name.endswith(f"/{group}") else None)
        assert dropped, "no such group"
        for name in dropped:
            del f[name]
    members["model.weights.h5"] = weights.getvalue()
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)


@pytest.fixture(scope="module")
def three_epochs(tmp_path_factory):
    """A finished 3-epoch run, which each test below copies: a moved run is
    the same run (its model_dir is not part of what it is)."""
    model_dir = tmp_path_factory.mktemp("three_epochs") / "run"
    trainer.train(_same_config(model_dir, epochs=3))
    return model_dir


@pytest.mark.parametrize("how", ["empty", "truncated", "hdf5_without_weights"])
def test_damaged_saved_states_resume_from_the_newest_intact_one(tmp_path, how, caplog, three_epochs):
    model_dir = tmp_path / "run"
    shutil.copytree(three_epochs, model_dir)
    backup_dir = model_dir / "backup"
    # last.keras and the backup of epoch 3 damaged: the previous backup (epoch
    # 2) is the newest intact state.
    _damage(model_dir / "checkpoints" / "last.keras", how)
    _damage(backup_dir / "latest.weights.h5", how)
    with caplog.at_level("INFO", logger="absl"):
        _rerun_completes(model_dir, 3)
    assert f"Resuming after epoch 2 (step 8) from {backup_dir}/latest.weights.h5.bkp" in caplog.text
    assert f"Passed over the unusable {model_dir}/checkpoints/last.keras (" in caplog.text
    assert backed_up_epochs(model_dir) == 3
    # The damaged backup was overwritten, not kept as the previous copy.
    with h5py.File(backup_dir / "latest.weights.h5.bkp") as f:
        assert f.attrs["epochs"] == 2


def test_no_intact_saved_state_restarts_the_run_in_one_line(tmp_path, caplog, monkeypatch):
    # The weights each run starts its first step from, as fit receives them:
    # compared exactly, where losses would differ in the last digits between
    # two runs on a loaded machine (seeded, but not deterministic).
    starts, fit = [], trainer.fit

    def recording_fit(run, model, data, model_dir):
        starts.append([keras.ops.convert_to_numpy(v) for v in model.weights])
        return fit(run, model, data, model_dir)

    monkeypatch.setattr(trainer, "fit", recording_fit)
    model_dir = tmp_path / "run"
    trainer.train(_same_config(model_dir, epochs=3))
    backup_dir = model_dir / "backup"
    for path in (backup_dir / "latest.weights.h5", backup_dir / "latest.weights.h5.bkp"):
        _damage(path, "empty")
    # last.keras without its top's weights (Keras 3 names a layer's group by
    # its class: the one Dense): Keras loads every other layer before it
    # fails, so the run must put back the weights it started with.
    _drop_from_keras_file(model_dir / "checkpoints" / "last.keras", "dense")
    # Keras' BackupAndRestore's metadata, left empty by a power loss.
    (backup_dir / "training_metadata.json").write_text("")
    with caplog.at_level("INFO", logger="absl"):
        result = _rerun_completes(model_dir, 3)
    (line,) = [r.getMessage() for r in caplog.records if "to resume from" in r.getMessage()]
    assert line.startswith(f"Nothing in {model_dir} to resume from: {model_dir}/checkpoints/"
                           "last.keras (")
    assert line.endswith("; starting the run again from its first step.")
    assert "\n" not in line and f"{backup_dir}/latest.weights.h5.bkp (" in line
    # Started again from the seeded initial weights, not from what the failed
    # load left: the same run as the first.
    assert len(result.history) == 3 and len(starts) == 2
    for first, again in zip(*starts, strict=True):
        np.testing.assert_array_equal(again, first)


# What TensorFlow says of its op determinism as the process ends (its public
# API can only turn it on).
REPORT_DETERMINISM = """
import atexit, sys

def _report():
    from tensorflow.python.framework import config
    print("op determinism:", config.is_op_determinism_enabled(), file=sys.stderr)

atexit.register(_report)
"""


def test_deterministic_runs_side_by_side_give_the_same_weights_bit_for_bit(tmp_path):
    # Two at once on the same cores: each runs on a loaded machine.
    dirs = [tmp_path / "a", tmp_path / "b"]
    procs = [_train_py([*TINY, "--deterministic", "--epochs=2", f"--model_dir={d}"], tmp_path,
                       hook=REPORT_DETERMINISM) for d in dirs]
    outputs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-3000:] for _, err in outputs]
    assert all(err.rstrip().endswith("op determinism: True") for _, err in outputs)
    histories = [(d / "history.csv").read_text() for d in dirs]
    assert histories[0] == histories[1] and len(histories[0].splitlines()) == 3
    first, second = (keras.models.load_model(d / "model.keras") for d in dirs)
    for a, b in zip(first.weights, second.weights, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b),
                                      err_msg=a.path)
    summary = json.loads((dirs[0] / "config.json").read_text())
    assert "deterministic" not in summary["config"]  # how a run runs, not which run it is
