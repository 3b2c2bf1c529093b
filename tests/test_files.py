"""files.py (atomic writes, staging cleanup, the run lock) and cli.py."""

import os
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
            assert staging.endswith(".keras") and os.path.basename(staging).startswith(".")
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
