"""Files and folders written whole or not at all, and a lock per run folder.

Every artefact (models, checkpoints, SavedModels, .tflite files, downloads) is
written to a hidden sibling ("staging") path and renamed into place, so a
reader, or a run killed at any moment, sees the previous file or the new one,
never a partial one. Staging names carry the writer's process id: a later
writer removes those whose process is gone (`remove_stale_staging`).

Created files and folders get the modes the umask gives (0644/0755 by
default), so a server running as another user (TF Serving) can read them.

A write that fails (full disk, quota, file size limit) removes its staging
path and raises `WriteError`: one line naming the file and the free space.

A Ctrl-C that the programs record (`record_interrupt`) stops every later
write before its rename, even where Python swallowed the KeyboardInterrupt.
"""

import contextlib
import errno
import fcntl
import os
import shutil
import threading
import uuid
from collections.abc import Iterator

STAGING_MARK = ".partial-"

_interrupt = threading.Event()


class WriteError(OSError):
    """A file could not be written; nothing partial was left behind."""

    def __str__(self) -> str:
        return self.strerror


class LockedError(RuntimeError):
    """Another live process holds the lock."""


def record_interrupt() -> None:
    """Records a Ctrl-C; from now on no write is renamed into place.

    Python raises the KeyboardInterrupt of a SIGINT wherever the main thread
    happens to be. Inside a `__del__` (TensorFlow runs many while it saves a
    model) it only prints "Exception ignored in ..." and the run goes on, so
    the programs' SIGINT handler records the interrupt here as well, and each
    write checks it before it commits (`atomic_path`).
    """
    _interrupt.set()


def interrupted() -> bool:
    """Whether a Ctrl-C was recorded in this process."""
    return _interrupt.is_set()


def staging_path(path: str) -> str:
    """A hidden sibling of `path` with the same extension (Keras checks it)."""
    folder, name = os.path.split(os.path.abspath(path))
    stem, ext = os.path.splitext(name)
    if name.endswith(".weights.h5"):
        stem, ext = name[: -len(".weights.h5")], ".weights.h5"
    token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    return os.path.join(folder, f".{stem}{STAGING_MARK}{token}{ext}")


def _staging_pid(name: str) -> int | None:
    """The process id in a staging name, or None if `name` is not one."""
    if not name.startswith(".") or STAGING_MARK not in name:
        return None
    token = name.split(STAGING_MARK, 1)[1]
    pid = token.split("-", 1)[0]
    return int(pid) if pid.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_staging(folder: str) -> list[str]:
    """Removes staging files and folders of processes that no longer run."""
    if not os.path.isdir(folder):
        return []
    removed = []
    for name in os.listdir(folder):
        pid = _staging_pid(name)
        if pid is None or pid == os.getpid() or _alive(pid):
            continue  # not staging, or still being written
        _remove(os.path.join(folder, name))
        removed.append(name)
    return removed


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        with contextlib.suppress(OSError):
            os.remove(path)


def _free_space(folder: str) -> str:
    try:
        free = float(shutil.disk_usage(folder).free)
    except OSError:
        return "unknown space"
    for unit in ("bytes", "KiB", "MiB"):
        if free < 1024:
            return f"{free:.0f} bytes" if unit == "bytes" else f"{free:.1f} {unit}"
        free /= 1024
    return f"{free:.1f} GiB"


def _oserror_in(error: BaseException | None) -> OSError | None:
    """The first OSError in `error`'s chain (libraries wrap them), or None."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError) and error.errno is not None:
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def write_error(path: str, error: BaseException) -> WriteError:
    """A one-line `WriteError` for a failed write of `path`."""
    folder = os.path.dirname(os.path.abspath(path))
    cause = _oserror_in(error)
    reason = cause.strerror if cause is not None and cause.strerror else str(error).split("\n")[0]
    return WriteError(
        cause.errno if cause is not None else errno.EIO,
        f"Cannot write {path}: {reason} ({_free_space(folder)} free in {folder}); "
        "nothing was written there",
    )


def _fsync(path: str) -> None:
    """Flushes a file (or each file of a folder) and its folder to disk."""
    paths = [path]
    if os.path.isdir(path):
        paths = [os.path.join(d, f) for d, _, files in os.walk(path) for f in files]
    for p in paths + [os.path.dirname(os.path.abspath(path))]:
        try:
            fd = os.open(p, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yields a staging path to write (a file or a folder); on success it
    replaces `path`. On any error, or after a recorded Ctrl-C, the staging
    path is removed; OSErrors (full disk, ...) become one-line `WriteError`s."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise write_error(path, e) from None
    remove_stale_staging(folder)
    staging = staging_path(path)
    try:
        yield staging
        if not os.path.lexists(staging):
            raise RuntimeError(f"Nothing was written to the staging path of {path}")
        _fsync(staging)
        if interrupted():
            raise KeyboardInterrupt
        _replace(staging, path)
    except BaseException as e:
        _remove(staging)
        if isinstance(e, WriteError):
            raise
        if _oserror_in(e) is not None and not isinstance(e, KeyboardInterrupt):
            raise write_error(path, e) from None
        raise


def _replace(staging: str, path: str) -> None:
    """os.replace, also for a folder over an existing folder, and for a hard
    link to the file already there (rename(2) leaves both names then)."""
    if os.path.isdir(staging) and os.path.isdir(path) and not os.path.islink(path):
        old = staging_path(path)
        os.replace(path, old)
        os.replace(staging, path)
        _remove(old)
    elif os.path.exists(path) and os.path.samefile(staging, path):
        os.remove(staging)
    else:
        os.replace(staging, path)


def write_bytes(path: str, content: bytes) -> None:
    """Writes `content` to `path` atomically."""
    with atomic_path(path) as staging:
        with open(staging, "wb") as f:
            f.write(content)


def write_text(path: str, text: str) -> None:
    """Writes `text` to `path` atomically."""
    write_bytes(path, text.encode("utf8"))


class RunLock:
    """An exclusive lock on a folder: `flock` on `folder/.lock`.

    The kernel drops the lock when its process ends, killed or not, so a
    leftover lock file never blocks a later run. `what` names the folder in
    the message (e.g. the argument it came from, "model_dir").
    """

    def __init__(self, folder: str, what: str = "folder"):
        self.path = os.path.join(folder, ".lock")
        self.what = what
        self._fd = None

    def acquire(self) -> "RunLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise LockedError(
                f"{self.what} {os.path.dirname(self.path)!r} is in use by process {holder}; "
                "wait for it to finish or use another folder"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
