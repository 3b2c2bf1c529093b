"""Downloads of published files into Keras' cache, checksum-verified.

Downloads go to Keras' own cache, as `keras.utils.get_file` picks it:
`$KERAS_HOME/models`, else `~/.keras/models` (`/tmp/.keras/models` where that
is not writable). A file is streamed to a staging file and checked (md5 or sha256) before
it is renamed into place, so the cache never holds a partial or unverified
file. `keras.utils.get_file` is not used: it has no timeout (a stalled server
hangs it), writes into the cache directly and keeps a file whose hash is wrong.
"""

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING
from typing import Any
from typing import TypeVar

from keras_resnet import files

if TYPE_CHECKING:
    from keras_resnet.models.pretrained import PublishedFile

_Result = TypeVar("_Result")

# A base URL (http, https or file) used instead of the published locations:
# every file, weights and imagenet_class_index.json, is looked up there by name.
URL_VARIABLE = "KERAS_RESNET_WEIGHTS_URL"
# Seconds a download may wait for the server (per connection or read).
TIMEOUT_VARIABLE = "KERAS_RESNET_DOWNLOAD_TIMEOUT"
DEFAULT_TIMEOUT_S = 15.0


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


def _timeout_seconds() -> float:
    """`$KERAS_RESNET_DOWNLOAD_TIMEOUT`, else the default; ValueError unless > 0."""
    value = os.environ.get(TIMEOUT_VARIABLE) or DEFAULT_TIMEOUT_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ValueError(
            f"{TIMEOUT_VARIABLE} must be a number of seconds > 0. "
            f"Received: {TIMEOUT_VARIABLE}={value!r}"
        )
    return seconds


def download(file: "PublishedFile", *, argument: str, call: str) -> str:
    """The cached copy of the published `file` (keras_resnet.models.pretrained),
    downloaded if absent.

    It comes from `source_url(file)` into Keras' cache under `file.fname`
    and must have the checksum `file.checksum`; a cached copy that does not
    is removed and downloaded again, as keras.utils.get_file does.
    `argument` and `call` say how to pass a local copy instead, for the
    DownloadError (see there).
    """
    url = source_url(file)
    algorithm, expected = file.checksum.split(":")
    path = os.path.join(cache_dir(), file.fname)
    if os.path.exists(path):
        if _digest(path, algorithm).startswith(expected):
            return path
        os.remove(path)
    timeout = _timeout_seconds()
    local_copy = dict(fname=file.fname, argument=argument, call=call)
    try:
        with files.atomic_path(path) as staging:
            got = _streamed_digest(url, staging, timeout, algorithm)
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


def _streamed_digest(url: str, path: str, timeout: float, algorithm: str) -> str:
    """The `algorithm` digest of the file at `url`, which it copies into `path`."""
    response = _network_call(timeout, urllib.request.urlopen, url, timeout=timeout)
    digest, received = hashlib.new(algorithm), 0
    with response, open(path, "wb") as out:
        length = response.headers.get("Content-Length")
        while chunk := _network_call(timeout, response.read, 1 << 20):
            out.write(chunk)
            digest.update(chunk)
            received += len(chunk)
    if length is not None and received != int(length):
        raise _Interrupted(f"the connection closed after {received} of {length} bytes")
    return digest.hexdigest()


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
