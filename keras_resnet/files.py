"""Files and folders written whole or not at all, and a lock per run folder.

Every artefact (models, checkpoints, SavedModels, .tflite files, downloads) is
written inside a hidden staging folder beside it and renamed into place, so a
reader, or a run killed at any moment, sees the previous file or the new one,
never a partial one. The folders may be shared and writable by others (a runs
or serving folder), so nothing here follows a symlink it did not make: each
staging folder is made by the writer itself, exclusively and private (0700),
and the lock file is opened without following one (`open_regular`).
Staging names carry the writer's process id: a later writer removes those of
its own user whose process is gone (`remove_stale_staging`).

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
import re
import shutil
import stat
import threading
import uuid
from collections.abc import Iterable
from collections.abc import Iterator

STAGING_MARK = ".partial-"
LOCK_NAME = ".lock"  # RunLock's file in the folder it locks
# What `staging_path` names: hidden, the stem, the mark, the writer's process
# id, 8 hex digits, the extension (`_staging_pid` reads nothing else).
_STAGING_NAME = re.compile(
    r"\..*" + re.escape(STAGING_MARK) + r"([0-9]+)-[0-9a-f]{8}(\.[^.]*|\.weights\.h5)?")
_FILE_KINDS = {stat.S_IFLNK: "a symbolic link", stat.S_IFDIR: "a folder", stat.S_IFIFO: "a FIFO",
               stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a device", stat.S_IFBLK: "a device"}

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
    """A hidden sibling of `path` named for this process: `atomic_path`'s
    private folder, which the staging file or folder is written in."""
    folder, name = os.path.split(os.path.abspath(path))
    stem, ext = os.path.splitext(name)
    if name.endswith(".weights.h5"):
        stem, ext = name[: -len(".weights.h5")], ".weights.h5"
    token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    return os.path.join(folder, f".{stem}{STAGING_MARK}{token}{ext}")


def _staging_pid(name: str) -> int | None:
    """The process id in a staging name, or None if `name` is not one."""
    match = _STAGING_NAME.fullmatch(name)
    return int(match.group(1)) if match else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_staging(folder: str) -> list[str]:
    """Removes staging files and folders of processes that no longer run.

    Only what is provably staging of ours: named exactly as `staging_path`
    names it, a folder or a regular file (a symlink is never ours, nor
    followed), owned by this user (another user's file is never ours,
    whatever its name)."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:  # missing, or not a folder
        return []
    for entry in entries:
        pid = _staging_pid(entry.name)
        if pid is None or pid == os.getpid() or _alive(pid):
            continue  # not staging, or still being written
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        kind = stat.S_IFMT(info.st_mode)
        if info.st_uid != os.geteuid() or kind not in (stat.S_IFDIR, stat.S_IFREG):
            continue  # another user's, or a link: not ours, whatever its name
        _remove(entry.path)
        removed.append(entry.name)
    return removed


def _remove(path: str) -> None:
    """Removes a file or a folder with all it holds; of a symlink, the link
    alone. shutil.rmtree opens each folder without following symlinks
    (`shutil.rmtree.avoids_symlink_attacks`), so a folder swapped for a link
    meanwhile is not followed either."""
    try:
        info = os.lstat(path)
    except OSError:
        return
    if stat.S_ISDIR(info.st_mode):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            os.remove(path)


def foreign_entry(folder: str, marker: str, ours: Iterable[str] = ()) -> str | None:
    """A name in `folder` that a program which writes `marker` there first
    did not write, where `folder` lacks `marker`: the folder is someone
    else's, not to be written into. None for a missing or empty folder, or
    one holding `marker` (which the program reads to know it is its own).
    The lock file, staging of this package and the names in `ours` do not
    count: a run that failed before it wrote `marker` leaves them."""
    if os.path.lexists(os.path.join(folder, marker)):
        return None
    try:
        names = os.listdir(folder)
    except OSError:  # missing, or not a folder: whoever writes there says why
        return None
    known = {LOCK_NAME, *ours}
    return min((n for n in names if n not in known and _staging_pid(n) is None), default=None)


def open_regular(path: str, flags: int, mode: int = 0o666) -> int:
    """`os.open(path, flags)` of a regular file, never through a symlink
    (O_NOFOLLOW) nor waiting on a FIFO (O_NONBLOCK); ValueError naming
    `path` and what it is when it is anything else."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as e:
        if e.errno not in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
            raise
        kind = stat.S_IFMT(os.lstat(path).st_mode)
        if kind == stat.S_IFREG:  # replaced meanwhile: say what open said
            raise
        raise _not_regular(path, kind) from None
    kind = stat.S_IFMT(os.fstat(fd).st_mode)
    if kind != stat.S_IFREG:
        os.close(fd)
        raise _not_regular(path, kind)
    return fd


def _not_regular(path: str, kind: int) -> ValueError:
    return ValueError(f"{path} is {_FILE_KINDS.get(kind, 'not a regular file')}; "
                      "accepted: a regular file")


def read_bytes(path: str, max_bytes: int) -> bytes:
    """The content of the regular file `path` (`open_regular`), refused
    (ValueError naming it) above `max_bytes`, before any is read."""
    fd = open_regular(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(fd).st_size
        content = f.read(max_bytes + 1) if size <= max_bytes else b""
    if size > max_bytes or len(content) > max_bytes:
        raise ValueError(f"{path} holds {max(size, len(content))} bytes; accepted: at most "
                         f"{max_bytes}")
    return content


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
    path is removed; OSErrors (full disk, ...) become one-line `WriteError`s.

    The staging path has `path`'s own name (Keras checks the extension),
    inside a folder this call makes with mkdir: exclusive (an existing name,
    a symlink included, is never reused) and 0700 (no one else can put a
    link inside), so whatever a writer (Keras, h5py, TensorFlow) makes at
    the path it is given lands in a folder of ours, never through a link
    someone made; the rename out of it stays within `path`'s folder."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        remove_stale_staging(folder)
        private = _make_private_folder(path)
    except OSError as e:
        raise write_error(path, e) from None
    staging = os.path.join(private, os.path.basename(os.path.abspath(path)))
    try:
        yield staging
        if not os.path.lexists(staging):
            raise RuntimeError(f"Nothing was written to the staging path of {path}")
        _fsync(staging)
        if interrupted():
            raise KeyboardInterrupt
        _replace(staging, path)
        _remove(private)
    except BaseException as e:
        _remove(private)
        if isinstance(e, WriteError):
            raise
        if _oserror_in(e) is not None and not isinstance(e, KeyboardInterrupt):
            raise write_error(path, e) from None
        raise


def _make_private_folder(path: str) -> str:
    """A new folder named `staging_path(path)`, 0700, made by this call."""
    for _ in range(8):  # a name taken (by chance, or by someone's link): another token
        private = staging_path(path)
        try:
            os.mkdir(private, 0o700)
            return private
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free staging name", private)


def _replace(staging: str, path: str) -> None:
    """os.replace, also for a folder over an existing folder (moved into the
    staging folder, removed with it), and for a hard link to the file
    already there (rename(2) leaves both names then)."""
    if os.path.isdir(staging) and os.path.isdir(path) and not os.path.islink(path):
        os.replace(path, staging + ".previous")
        os.replace(staging, path)
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
        self.path = os.path.join(folder, LOCK_NAME)
        self.what = what
        self._fd = None

    def acquire(self) -> "RunLock":
        """Takes the lock, or raises LockedError (another process holds it)
        or ValueError (`.lock` is a symlink, not a regular file, or a hard
        link to another file: it is truncated and written, so never one
        that someone else made point elsewhere)."""
        folder = os.path.dirname(self.path)
        try:
            fd = open_regular(self.path, os.O_RDWR | os.O_CREAT)
        except ValueError as e:
            raise ValueError(f"{self.what} {folder!r} cannot be locked: {e} (remove it)") from None
        links = os.fstat(fd).st_nlink
        if links > 1:
            os.close(fd)
            raise ValueError(f"{self.what} {folder!r} cannot be locked: {self.path} has {links} "
                             "hard links; accepted: a file of its own (remove it)")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise LockedError(
                f"{self.what} {folder!r} is in use by process {holder}; "
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
