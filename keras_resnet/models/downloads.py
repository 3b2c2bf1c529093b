"""Downloads of published files into Keras' cache, checksum-verified.

Downloads go to Keras' own cache, as `keras.utils.get_file` picks it:
`$KERAS_HOME/models`, else `~/.keras/models` (`/tmp/.keras/models` where that
is not writable). A file is streamed to a staging file and checked (md5 or sha256) before
it is renamed into place, so the cache never holds a partial or unverified
file. `keras.utils.get_file` is not used: it has no timeout (a stalled server
hangs it), writes into the cache directly and keeps a file whose hash is wrong.

A server is not trusted to end what it sends: each wait for it is bounded
(`$KERAS_RESNET_DOWNLOAD_TIMEOUT`, seconds, default 15), the whole download
too (`$KERAS_RESNET_DOWNLOAD_DEADLINE`, seconds, default 60 plus the size
bound at 128 KiB/s), and so are the bytes it may send: the file's published
size (`PublishedFile.size`), else 512 MiB. Past any bound the download stops,
its partial file is removed and a DownloadError says why in one line; a bad
setting is a ValueError naming it.
"""

import hashlib
import http.client
import os
import socket
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING
from typing import Any
from typing import TypeVar

from keras_resnet import files

if TYPE_CHECKING:
    from keras_resnet.models.pretrained import PretrainedWeights
    from keras_resnet.models.pretrained import PublishedFile

_Result = TypeVar("_Result")

# A base URL (http, https or file) used instead of the published locations:
# every file, weights and imagenet_class_index.json, is looked up there by name.
URL_VARIABLE = "KERAS_RESNET_WEIGHTS_URL"
# Seconds a download may wait for the server (per connection or read).
TIMEOUT_VARIABLE = "KERAS_RESNET_DOWNLOAD_TIMEOUT"
DEFAULT_TIMEOUT_S = 15.0
# Seconds a whole download may take: by default DEADLINE_BASE_S plus the
# most bytes it may bring at MIN_RATE, so a server that sends a byte now and
# then, each within the timeout, cannot hold a download for ever.
DEADLINE_VARIABLE = "KERAS_RESNET_DOWNLOAD_DEADLINE"
DEADLINE_BASE_S = 60.0
MIN_RATE = 128 << 10  # bytes per second
# The most bytes a file of no published size may have: twice the largest
# file of the table (ResNet-152's, ~245 MB), so an endless body cannot fill
# the disk.
UNPUBLISHED_SIZE_CAP = 512 << 20
# A setting in seconds beyond a day is a slip; sockets refuse timeouts past
# ~1e10 s (OverflowError), and float() also reads "inf" and "nan".
MAX_SECONDS = 86_400.0


class DownloadError(OSError):
    """A published file could not be downloaded; nothing was cached.

    `cause` says why, in one sentence; the message adds how to pass a local
    copy instead (`hint`). The same copy goes to a function as a Python
    argument and to a program as a flag, so the error keeps the parts of both,
    as errors.DatasetUnavailableError does: `fname`, the file's published
    name; `argument`, the argument (and flag) that takes its path; `call`, the
    Python call that passes it, "{path}" standing for the path.
    """

    def __init__(self, cause: str, *, fname: str, argument: str, call: str):
        self.cause, self.fname, self.argument, self.call = cause, fname, argument, call
        super().__init__(f"{cause}. {self.hint('')}")

    def hint(self, prefix: str) -> str:
        """Where to get the file instead; `prefix` "--" passes it as the flag
        (`--weights=/path/to/...`), "" in the Python call."""
        path = f"/path/to/{self.fname}"
        local = f"{prefix}{self.argument}={path}" if prefix else self.call.format(path=repr(path))
        return (
            f"Download it where you can and pass its path: {local}; or set "
            f"{URL_VARIABLE} to a folder (http://, https:// or file://) that holds it."
        )


class ChecksumError(DownloadError, ValueError):
    """The downloaded file is not the published one (its checksum differs): a
    ValueError too, as a corrupt file given by path is."""


class _Interrupted(Exception):
    """A network failure, raised with no OSError in its chain, so that
    `files.atomic_path` does not report it as a failed write."""


class _WrongChecksum(Exception):
    """The checksum of a downloaded file is wrong; raised with no OSError in its
    chain, as `_Interrupted`, and reported as a ChecksumError."""


def cache_dir() -> str:
    """Keras' download folder for models, read when a file is needed."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    home = os.path.expanduser(home)
    try:
        os.makedirs(os.path.join(home, "models"), exist_ok=True)
    except OSError:
        pass
    if not os.access(home, os.W_OK):  # where keras.utils.get_file falls back to
        home = os.path.join("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir(), ".keras")
    return os.path.join(home, "models")


def source_url(file: "PublishedFile") -> str:
    """Where `file` is downloaded from: `$KERAS_RESNET_WEIGHTS_URL` + its
    name if that is set, else its published URL."""
    mirror = os.environ.get(URL_VARIABLE)
    if not mirror:
        return file.url
    if urllib.parse.urlsplit(mirror).scheme not in ("http", "https", "file"):
        raise ValueError(
            f"{URL_VARIABLE} must be an http://, https:// or file:// URL of a "
            f"folder. Received: {URL_VARIABLE}={mirror!r}"
        )
    return (mirror if mirror.endswith("/") else mirror + "/") + file.fname


def _seconds(variable: str, default: float) -> float:
    """`$variable` in seconds, else `default`; ValueError in one line unless
    it is a finite number in (0, MAX_SECONDS]."""
    value = os.environ.get(variable)
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds <= MAX_SECONDS:  # false for nan, inf and 1e400 too
        raise ValueError(
            f"{variable} must be a number of seconds > 0. Received: {variable}={value[:40]!r}, "
            f"which is not a finite number in (0, {MAX_SECONDS:g}]"
        )
    return seconds


class _Bounds:
    """What one download may take: `timeout` seconds per wait, `deadline`
    seconds in all, `size` bytes (`published`: the file's own size)."""

    def __init__(self, file: "PublishedFile"):
        self.published = file.size is not None
        self.size = file.size if file.size is not None else UNPUBLISHED_SIZE_CAP
        self.timeout = _seconds(TIMEOUT_VARIABLE, DEFAULT_TIMEOUT_S)
        self.deadline = _seconds(DEADLINE_VARIABLE, DEADLINE_BASE_S + self.size / MIN_RATE)

    def too_large(self, what: str) -> str:
        """Why a download of more than `size` bytes was refused."""
        limit = "its published size" if self.published else "the most for an unpublished size"
        return f"{what} more than {self.size:,} bytes, {limit}; stopped, nothing kept"


def download(file: "PublishedFile", *, argument: str, call: str) -> str:
    """The cached copy of the published `file` (keras_resnet.models.pretrained),
    downloaded if absent.

    It comes from `source_url(file)` into Keras' cache under `file.fname`
    and must have the checksum `file.checksum`; a cached copy that does not
    is removed and downloaded again, as keras.utils.get_file does. Each
    wait for the server, the whole download and the bytes it brings are
    bounded (see the module's docstring: `$KERAS_RESNET_DOWNLOAD_TIMEOUT`,
    `$KERAS_RESNET_DOWNLOAD_DEADLINE`, `file.size`). `argument` and `call`
    say how to pass a local copy instead, for the DownloadError (see there).
    """
    url = source_url(file)
    algorithm, expected = file.checksum.split(":")
    path = os.path.join(cache_dir(), file.fname)
    if os.path.exists(path):
        if _digest(path, algorithm).startswith(expected):
            return path
        os.remove(path)
    bounds = _Bounds(file)
    local_copy = dict(fname=file.fname, argument=argument, call=call)
    try:
        with files.atomic_path(path) as staging:
            got = _streamed_digest(url, staging, bounds, algorithm)
            if not got.startswith(expected):
                raise _WrongChecksum(
                    f"The file downloaded from {url} has {algorithm} {got}, not the "
                    f"expected {expected}{'...' if len(expected) < len(got) else ''}: "
                    "it was refused and not cached"
                )
    except _WrongChecksum as e:
        raise ChecksumError(str(e), **local_copy) from None
    except _Interrupted as e:
        raise DownloadError(f"Could not download {url}: {e}", **local_copy) from None
    return path


def _digest(path: str, algorithm: str) -> str:
    """The `algorithm` ("md5", "sha256") digest of the file at `path`, in hex."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _Deadline:
    """Ends the connections of one download once `seconds` have passed.

    A socket timeout bounds each wait only; a read that waits on a socket
    that is shut down returns at once, however slowly the server sends,
    headers included. A connection made after the deadline is ended too.
    """

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.passed = threading.Event()
        self._done = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._watch, daemon=True).start()

    def connection(self, cls: type) -> type:
        """`cls` (an http.client connection class) whose sockets it ends.
        The socket is kept, not the connection: urllib takes it off the
        connection once the response has it."""
        sockets = self._sockets

        class Connection(cls):
            def connect(self) -> None:
                super().connect()
                sockets.append(self.sock)

        return Connection

    def _watch(self) -> None:
        if self._done.wait(self.seconds):
            return
        self.passed.set()
        while True:
            for sock in list(self._sockets):
                try:  # the plain socket's shutdown: TLS state is the reader's
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
                except OSError:  # closed already
                    pass
            if self._done.wait(0.05):
                return

    def close(self) -> None:
        self._done.set()


def _opener(deadline: _Deadline) -> urllib.request.OpenerDirector:
    """urllib's opener, its HTTP(S) connections ended at `deadline`."""

    class HTTP(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(deadline.connection(http.client.HTTPConnection), req)

    class HTTPS(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(deadline.connection(http.client.HTTPSConnection), req,
                                context=self._context)

    return urllib.request.build_opener(HTTP, HTTPS)


def _streamed_digest(url: str, path: str, bounds: _Bounds, algorithm: str) -> str:
    """The `algorithm` digest of the file at `url`, which it copies into
    `path`, within `bounds`."""
    deadline, reason = _Deadline(bounds.deadline), None
    digest, received = hashlib.new(algorithm), 0
    try:
        opener = _opener(deadline)
        response = _network_call(bounds.timeout, opener.open, url, timeout=bounds.timeout)
        with response, open(path, "wb") as out:
            length = _declared_length(response)
            if length is not None and length > bounds.size:
                raise _Interrupted(bounds.too_large(f"the server announced {length:,} bytes,"))
            # read1: one read of the socket at most, so the count is checked
            # after each, and no more than one byte past the bound is read.
            while chunk := _network_call(bounds.timeout, response.read1,
                                         min(1 << 20, bounds.size + 1 - received)):
                received += len(chunk)
                if received > bounds.size:
                    raise _Interrupted(bounds.too_large("the server sent"))
                out.write(chunk)
                digest.update(chunk)
        if length is not None and received != length:
            raise _Interrupted(f"the connection closed after {received} of {length} bytes")
    except _Interrupted as e:
        reason = str(e)
    finally:
        deadline.close()
    if deadline.passed.is_set():  # whatever the shut socket made of the rest
        reason = (f"not done within {bounds.deadline:g} s ({received:,} bytes came); set "
                  f"{DEADLINE_VARIABLE} to more seconds if the server is only slow")
    if reason is not None:
        raise _Interrupted(reason)  # outside `except`: no OSError context
    return digest.hexdigest()


def _declared_length(response: Any) -> int | None:
    """The byte count of the response's Content-Length, or None where it has
    none that is one (http.client ignores such a header too)."""
    value = (response.headers.get("Content-Length") or "").strip()
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 20 else None


def _network_call(
    seconds: float, call: Callable[..., _Result], *args: Any, **kwargs: Any
) -> _Result:
    """`call(...)`, its network errors raised as `_Interrupted`; `seconds`
    is the timeout, for the message."""
    try:
        return call(*args, **kwargs)
    except (OSError, http.client.HTTPException) as e:
        reason = _failure_reason(e, seconds)
    raise _Interrupted(reason)  # outside `except`: no OSError context


def _failure_reason(error: Exception, timeout: float) -> str:
    """Why a download failed, in a few words."""
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP error {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError) and isinstance(error.reason, Exception):
        error = error.reason
    if isinstance(error, TimeoutError):
        return f"no answer within {timeout:g} s (see {TIMEOUT_VARIABLE})"
    if isinstance(error, http.client.RemoteDisconnected):
        return "the server closed the connection without answering"
    return str(error) or type(error).__name__


def fetch(entry: "PretrainedWeights", include_top: bool) -> str:
    """The file of the published weights `entry`: downloaded once, verified."""
    options = "".join(f", {k}={v!r}" for k, v in entry.options.items())
    top = "" if include_top or entry.notop is None else ", include_top=False"
    builder = entry.model.replace("resnet", "ResNet")
    return download(entry.file(include_top), argument="weights",
                    call=f"{builder}(weights={{path}}{options}{top})")
