"""files.py (atomic writes, staging cleanup, the run lock) and cli.py."""

import os
import re
import signal
import stat
import subprocess
import sys
import textwrap

import pytest

from keras_resnet import files
from keras_resnet.programs import cli
from tests.helpers import dead_pid
from tests.helpers import default_sigint
from tests.helpers import file_size_limit


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask():
    """Sets a umask for the test and restores the previous one."""
    previous = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(previous)


@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_atomic_writes_get_the_modes_of_the_umask(tmp_path, umask, mask, file_mode, dir_mode):
    umask(mask)
    files.write_text(str(tmp_path / "a.json"), "{}")
    with files.atomic_path(str(tmp_path / "saved")) as staging:
        os.mkdir(staging)
        (open(os.path.join(staging, "x.pb"), "w")).close()
    assert _mode(tmp_path / "a.json") == file_mode
    assert _mode(tmp_path / "saved") == dir_mode
    assert _mode(tmp_path / "saved" / "x.pb") == file_mode
    assert sorted(os.listdir(tmp_path)) == ["a.json", "saved"]


# What the audit hook below records while `_recording` is a list: (event,
# path) of every file opened for writing, renamed, linked or removed.
_recording = None
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _audit(event, args):
    if _recording is None:
        return
    if event == "open":
        path, mode, flags = args
        if (mode and set(mode) & set("wax+")) or (not mode and flags & _WRITE_FLAGS):
            _record(event, path)
    elif event in ("os.rename", "os.link", "shutil.copyfile"):  # os.replace is os.rename
        _record(event, args[1])
    elif event in ("os.remove", "os.truncate"):
        _record(event, args[0])


def _record(event, path):
    if isinstance(path, (str, bytes, os.PathLike)):  # not a file descriptor
        _recording.append((event, os.fsdecode(path)))


def test_only_the_rename_touches_a_final_name(tmp_path):
    # Every file of a run (the Keras checkpoints, h5py's backup, matplotlib's
    # curves, the history and summary) is written under a staging name and
    # renamed: the rename is the only operation on its final name, so a
    # reader or a kill never meets a partial file there.
    from keras_resnet.training import run as run_lib
    from keras_resnet.training import trainer

    global _recording
    sys.addaudithook(_audit)  # stays for the process; records only inside the try
    model_dir = tmp_path / "run"
    config = run_lib.Config(dataset="synthetic", recipe="smoke", batch_size=16, image_size=16,
                            synthetic_examples=32, strategy="one_device", verbose=0,
                            epochs=2, model_dir=str(model_dir))
    _recording = []
    try:
        trainer.train(config)
    finally:
        recorded, _recording = _recording, None
    # Not renamed: the lock, and TensorBoard's event files, logs that grow by
    # appending as TensorBoard reads them (it skips a last record cut short).
    finals = {str(p) for p in model_dir.rglob("*") if p.is_file() and p.name != ".lock"
              and "tensorboard" not in p.relative_to(model_dir).parts}
    assert {os.path.relpath(p, model_dir) for p in finals} >= {
        "model.keras", "checkpoints/best.keras", "checkpoints/last.keras", "config.json",
        "history.csv", "curves.png", "backup/latest.weights.h5", "backup/latest.weights.h5.bkp"}
    on_finals = [(event, path) for event, path in recorded if os.path.abspath(path) in finals]
    assert {event for event, _ in on_finals} == {"os.rename"}, on_finals
    assert {os.path.abspath(path) for _, path in on_finals} == finals


def test_a_failed_write_keeps_the_old_file_and_leaves_no_staging(tmp_path):
    path = str(tmp_path / "model.keras")
    files.write_text(path, "old")
    with pytest.raises(ZeroDivisionError):
        with files.atomic_path(path) as staging:
            # The final name (Keras checks the extension), in a hidden folder of its own.
            assert os.path.basename(staging) == "model.keras"
            assert os.path.basename(os.path.dirname(staging)).startswith(".model.partial-")
            with open(staging, "w") as f:
                f.write("half")
            1 / 0
    assert open(path).read() == "old"
    assert os.listdir(tmp_path) == ["model.keras"]


def test_a_folder_replaces_a_folder_whole(tmp_path):
    target = tmp_path / "1"
    for content in ("first", "second"):
        with files.atomic_path(str(target)) as staging:
            os.mkdir(staging)
            with open(os.path.join(staging, content), "w") as f:
                f.write(content)
    assert os.listdir(target) == ["second"]
    assert os.listdir(tmp_path) == ["1"]


def test_full_disk_is_one_line_naming_the_file_and_nothing_partial_stays(tmp_path):
    path = tmp_path / "big.bin"
    path.write_bytes(b"previous")
    script = textwrap.dedent(
        f"""
        from keras_resnet import files
        try:
            files.write_bytes({str(path)!r}, b"x" * 200_000)
        except files.WriteError as e:
            print(e)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
        preexec_fn=file_size_limit(100_000), env=_env(),
    ).stdout.strip()
    assert out.startswith(f"Cannot write {path}: File too large (")
    assert " free in " in out and "\n" not in out
    assert path.read_bytes() == b"previous"
    assert os.listdir(tmp_path) == ["big.bin"]


def test_staging_of_dead_processes_is_removed_and_of_live_ones_kept(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = tmp_path / f".1{files.STAGING_MARK}{dead_pid()}-abcd1234"
        live = tmp_path / f".2{files.STAGING_MARK}{sleeper.pid}-abcd1234.tflite"
        dead.mkdir()
        (dead / "saved_model.pb").write_bytes(b"partial")
        live.write_bytes(b"being written")
        (tmp_path / ".hidden").write_bytes(b"not ours")
        assert files.remove_stale_staging(str(tmp_path)) == [dead.name]
        assert sorted(os.listdir(tmp_path)) == sorted([live.name, ".hidden"])
    finally:
        sleeper.kill()
        sleeper.wait()


def test_run_lock_refuses_a_second_holder_and_not_a_killed_one(tmp_path):
    with files.RunLock(str(tmp_path), "model_dir"):
        with pytest.raises(files.LockedError, match=f"in use by process {os.getpid()}"):
            files.RunLock(str(tmp_path), "model_dir").acquire()
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(
            f"""
            import sys, time
            from keras_resnet import files
            files.RunLock({str(tmp_path)!r}).acquire()
            print("locked", flush=True)
            time.sleep(120)
            """
        )],
        stdout=subprocess.PIPE, text=True, env=_env(),
    )
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(files.LockedError, match=str(holder.pid)):
        files.RunLock(str(tmp_path)).acquire()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert os.path.exists(tmp_path / ".lock")  # the leftover file holds nothing
    files.RunLock(str(tmp_path)).acquire().release()


# ------------------------------------ a shared folder: links and names of others


def _victim(tmp_path):
    """A file of someone else's that a link made in a shared folder points at."""
    victim = tmp_path / "elsewhere" / "victim.txt"
    victim.parent.mkdir()
    victim.write_bytes(b"someone else's file\n")
    return victim


@pytest.mark.parametrize("planted", ["symlink", "dangling_symlink", "folder", "fifo", "hard_link"])
def test_a_lock_file_that_is_not_a_plain_file_of_its_own_is_refused(tmp_path, planted):
    victim, folder = _victim(tmp_path), tmp_path / "run"
    folder.mkdir()
    lock = folder / ".lock"
    {"symlink": lambda: lock.symlink_to(victim),
     "dangling_symlink": lambda: lock.symlink_to(tmp_path / "elsewhere" / "made.txt"),
     "folder": lock.mkdir, "fifo": lambda: os.mkfifo(lock),
     "hard_link": lambda: os.link(victim, lock)}[planted]()
    with pytest.raises(ValueError) as error:
        files.RunLock(str(folder), "model_dir").acquire()
    kind = {"symlink": "is a symbolic link", "dangling_symlink": "is a symbolic link",
            "folder": "is a folder", "fifo": "is a FIFO", "hard_link": "has 2 hard links"}[planted]
    assert re.fullmatch(rf"model_dir '{re.escape(str(folder))}' cannot be locked: "
                        rf"{re.escape(str(lock))} {kind}; accepted: a (regular file|file of its "
                        r"own) \(remove it\)", str(error.value))
    assert victim.read_bytes() == b"someone else's file\n"
    assert sorted(os.listdir(tmp_path / "elsewhere")) == ["victim.txt"]  # nothing made there


def test_the_export_lock_does_not_follow_a_symlink(tmp_path):
    import keras

    from keras_resnet.export import saved_model

    victim, model_dir = _victim(tmp_path), tmp_path / "serving" / "m"
    model_dir.mkdir(parents=True)
    (model_dir / ".lock").symlink_to(victim)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten()], name="m")
    lock = re.escape(str(model_dir / ".lock"))
    with pytest.raises(ValueError, match=rf"^Model folder '{re.escape(str(model_dir))}' cannot be "
                                         rf"locked: {lock} is a symbolic link; accepted: a regular"):
        saved_model.export_saved_model(model, str(tmp_path / "serving"), eval_transform="single")
    assert victim.read_bytes() == b"someone else's file\n"
    assert os.listdir(model_dir) == [".lock"]  # no version, no staging


def _planted_tokens(monkeypatch, *tokens):
    """The uuid4()s files.staging_path takes its tokens from: `tokens`, then random."""
    import uuid

    queue, random = list(tokens), uuid.uuid4
    monkeypatch.setattr(uuid, "uuid4",
                        lambda: uuid.UUID(queue.pop(0) + "0" * 24) if queue else random())


def test_a_staging_name_planted_as_a_link_is_not_followed(tmp_path, monkeypatch):
    # A link under the very name the next write would stage at, one to a
    # file and one to a folder holding the file name written inside it.
    victim = _victim(tmp_path)
    (tmp_path / "elsewhere" / "model.keras").write_bytes(b"their model")
    target = tmp_path / "run" / "model.keras"
    target.parent.mkdir()
    links = [tmp_path / "run" / f".model{files.STAGING_MARK}{os.getpid()}-{token}.keras"
             for token in ("0badf00d", "cafebabe")]
    links[0].symlink_to(victim)
    links[1].symlink_to(tmp_path / "elsewhere")
    _planted_tokens(monkeypatch, "0badf00d", "cafebabe")
    with files.atomic_path(str(target)) as staging:
        private = os.path.dirname(staging)
        assert private not in map(str, links) and not os.path.islink(private)
        # Made by this write, for it alone, and empty: nothing in it to follow.
        assert stat.S_IMODE(os.lstat(private).st_mode) == 0o700 and os.listdir(private) == []
        with open(staging, "wb") as f:
            f.write(b"the run's model")
    assert target.read_bytes() == b"the run's model"
    assert victim.read_bytes() == b"someone else's file\n"
    assert (tmp_path / "elsewhere" / "model.keras").read_bytes() == b"their model"
    assert sorted(os.listdir(tmp_path / "run")) == sorted(["model.keras", *(p.name for p in links)])


def test_only_staging_of_ours_is_removed_and_no_link_is_followed(tmp_path):
    victim, dead = _victim(tmp_path), dead_pid()
    folder = tmp_path / "runs"
    folder.mkdir()
    others = [f"notes{files.STAGING_MARK}x", f"notes{files.STAGING_MARK}{dead}",
              f".notes{files.STAGING_MARK}{dead}", f".notes{files.STAGING_MARK}{dead}-xyz.txt",
              f".notes{files.STAGING_MARK}{dead}-0badf00d.txt.bak"]
    for name in others:
        (folder / name).write_bytes(b"a user's notes")
    # Named as ours, but a link (to a folder: rmtree would empty it), and a
    # file of another user's (only root can make one here).
    link = folder / f".1{files.STAGING_MARK}{dead}-0badf00d"
    link.symlink_to(victim.parent, target_is_directory=True)
    kept = [*others, link.name]
    if os.geteuid() == 0:
        theirs = folder / f".m{files.STAGING_MARK}{dead}-0badf00d.keras"
        theirs.write_bytes(b"another user's")
        os.chown(theirs, 12345, -1)
        kept.append(theirs.name)
    # Ours: a killed write's folder, holding links that are not followed.
    ours = folder / f".2{files.STAGING_MARK}{dead}-cafebabe"
    ours.mkdir()
    (ours / "saved_model.pb").symlink_to(victim)
    (ours / "variables").symlink_to(victim.parent, target_is_directory=True)
    assert files.remove_stale_staging(str(folder)) == [ours.name]
    assert sorted(os.listdir(folder)) == sorted(kept)
    assert all((folder / name).read_bytes() == b"a user's notes" for name in others)
    assert victim.read_bytes() == b"someone else's file\n"
    assert os.listdir(victim.parent) == ["victim.txt"]


def test_a_fifo_is_refused_without_waiting_and_a_large_file_before_it_is_read(tmp_path):
    fifo, big = tmp_path / "fifo", tmp_path / "big"
    os.mkfifo(fifo)

    def waited(signum, frame):
        raise TimeoutError("open waited for a writer")

    previous = signal.signal(signal.SIGALRM, waited)
    signal.alarm(10)
    try:
        with pytest.raises(ValueError, match=rf"^{re.escape(str(fifo))} is a FIFO; accepted: a "
                                             "regular file$"):
            files.read_bytes(str(fifo), 100)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    with open(big, "wb") as f:
        f.truncate(1 << 33)  # sparse: 8 GiB that reading would allocate
    with pytest.raises(ValueError, match=rf"^{re.escape(str(big))} holds {1 << 33} bytes; accepted: "
                                         "at most 100$"):
        files.read_bytes(str(big), 100)
    (tmp_path / "small").write_bytes(b"x" * 100)
    assert files.read_bytes(str(tmp_path / "small"), 100) == b"x" * 100


def test_a_folder_is_foreign_by_any_name_but_its_marker_lock_and_staging(tmp_path):
    folder = tmp_path / "out"
    assert files.foreign_entry(str(folder), "config.json") is None  # missing
    folder.mkdir()
    assert files.foreign_entry(str(folder), "config.json") is None  # empty
    (folder / ".lock").write_bytes(b"")
    (folder / f".config{files.STAGING_MARK}{dead_pid()}-0badf00d.json").mkdir()
    (folder / "workers").mkdir()
    assert files.foreign_entry(str(folder), "config.json", ours=("workers",)) is None
    assert files.foreign_entry(str(folder), "config.json") == "workers"
    (folder / "model.keras").write_bytes(b"a user's")
    assert files.foreign_entry(str(folder), "config.json", ours=("workers",)) == "model.keras"
    (folder / "config.json").symlink_to(tmp_path / "nowhere")  # its reader decides on it
    assert files.foreign_entry(str(folder), "config.json") is None


def test_run_main_interrupt_and_errors_are_one_line(capsys):
    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as exit_info:
        cli.run_main("train.py", interrupted, resume_hint=True)
    assert exit_info.value.code == cli.INTERRUPTED_EXIT == 130
    assert capsys.readouterr().err == "train.py: interrupted; run the same command to resume\n"

    def bad(value):
        raise ValueError(f"--batch_size must be >= 1. Received: {value}\n(detail)")

    with pytest.raises(SystemExit) as exit_info:
        cli.run_main("train.py", bad, -4)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "train.py: error: --batch_size must be >= 1. Received: -4 (detail)\n"
    assert cli.run_main("x", lambda: 7) == 7


@pytest.mark.parametrize("writes", [True, False], ids=["then_writes", "then_returns"])
def test_a_ctrl_c_python_swallows_still_stops_the_run(tmp_path, writes):
    # A KeyboardInterrupt raised inside a __del__ (TensorFlow runs many while
    # it saves a model) is only printed, and the run goes on: the interrupt
    # recorded by run_main must still keep the next write out and exit 130.
    target = tmp_path / "model.bin"
    target.write_bytes(b"old")
    script = f"""
        import os, signal
        from keras_resnet import files
        from keras_resnet.programs import cli

        class InterruptedInDel:
            def __del__(self):
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(1000):  # the handler runs here, inside __del__
                    pass

        def main():
            InterruptedInDel()
            print("went on", flush=True)
            if {writes}:
                files.write_bytes({str(target)!r}, b"new")
            return "done"

        print(cli.run_main("export", main))
        """
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)],
                          capture_output=True, text=True, env=_env(), timeout=120,
                          preexec_fn=default_sigint)
    assert "Exception ignored" in proc.stderr and "KeyboardInterrupt" in proc.stderr, proc.stderr
    assert proc.stdout == "went on\n"
    assert proc.returncode == 130 and proc.stderr.splitlines()[-1] == "export: interrupted"
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["model.bin"]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.getcwd(), env.get("PYTHONPATH", "")])
    return env


def test_history_csv_is_read_only_as_a_plain_file_of_bounded_size(tmp_path, monkeypatch):
    from keras_resnet.training import callbacks

    good = tmp_path / "good.csv"
    callbacks.write_history(str(good), [{"epoch": 1, "iterations": 10, "lr": 0.1, "loss": 2.0}])
    assert [r["iterations"] for r in callbacks.read_history(str(good))] == [10]
    fifo = tmp_path / "fifo.csv"  # planted: a plain open would wait for a writer for ever
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match=re.escape(f"{fifo} is a FIFO; accepted: a regular file")):
        callbacks.read_history(str(fifo))
    link = tmp_path / "link.csv"
    link.symlink_to(good)
    with pytest.raises(ValueError, match=re.escape(f"{link} is a symbolic link")):
        callbacks.read_history(str(link))
    monkeypatch.setattr(callbacks, "MAX_HISTORY_BYTES", 8)
    with pytest.raises(ValueError, match=re.escape(f"{good} holds ")):
        callbacks.read_history(str(good))


def test_an_output_dir_of_something_else_is_refused_naming_a_file(tmp_path):
    from keras_resnet.reproduce import experiments

    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=re.escape(
            "output_dir holds files of something else (e.g. 'notes.txt'): choose an empty or new "
            "folder")):
        experiments.check_output_dir(str(tmp_path), {"experiment": "fig6"})
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]
