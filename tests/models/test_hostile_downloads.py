"""Downloads from a hostile or broken server (keras_resnet.models.downloads):
one that sends a byte now and then is stopped at the whole download's
deadline, one whose body never ends is cut at the file's size bound, and bad
timeout settings are refused in one line, by the library and by a program;
each time nothing partial is cached and the next download works.

The servers run on 127.0.0.1 in a thread of the test. Each stops on its own
after a few seconds (or 64 MiB), so a test whose defence is broken fails
instead of hanging or filling the disk."""

import dataclasses
import os
import random
import re
import socketserver
import threading
import time

import pytest

from keras_resnet.models import downloads
from keras_resnet.models import pretrained
from tests.helpers import FolderServer
from tests.helpers import error_line
from tests.helpers import run_commands
from tests.helpers import use_stand_ins

FNAME = "resnet18.tv_in1k.safetensors"  # timm's file: its size is published
NOTOP = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"  # its size is not
BOUND = 1 << 20  # bytes: the size bound the tests give, small so they take seconds
GIVE_UP_S = 6.0  # a slow server's own end, past every deadline the tests set
SAFETY_BYTES = 64 << 20  # an endless server's own end: 64 times BOUND
HINT = ("Download it where you can and pass its path: {call}; or set "
        "KERAS_RESNET_WEIGHTS_URL to a folder (http://, https:// or file://) that holds it.")


class _Server:
    """A server on 127.0.0.1 that answers each connection with `behave(conn)`
    in a thread of its own."""

    def __init__(self, behave):
        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                self.request.recv(65536)  # the request
                try:
                    behave(self.request)
                except OSError:  # the client hung up: what a defence does
                    pass

        self.tcp = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.tcp.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.tcp.server_address[1]}/"
        threading.Thread(target=self.tcp.serve_forever, daemon=True).start()

    def close(self):
        self.tcp.shutdown()
        self.tcp.server_close()


def _trickle(conn, data):
    """Sends `data` a byte every 0.5 s, for GIVE_UP_S at most."""
    start = time.monotonic()
    for byte in data:
        if time.monotonic() - start > GIVE_UP_S:
            return
        conn.sendall(bytes([byte]))
        time.sleep(0.5)


def _slow_headers(conn):
    _trickle(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")


def _slow_body(conn):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    _trickle(conn, b"x" * 1000)


def _endless(announce):
    def behave(conn):
        length = f"Content-Length: {1 << 30}\r\n" if announce else ""  # 1 GiB
        conn.sendall(f"HTTP/1.0 200 OK\r\n{length}\r\n".encode())
        for _ in range(SAFETY_BYTES // 65536):
            conn.sendall(bytes(65536))

    return behave


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """Keras' cache in $KERAS_HOME, and a stand-in of each file the tests
    fetch served by a FolderServer: (cache folder, good server, its folder)."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    served = tmp_path / "served"
    served.mkdir()
    for seed, name in enumerate((FNAME, NOTOP)):
        (served / name).write_bytes(random.Random(seed).randbytes(200_000))
    use_stand_ins(monkeypatch, *(str(served / name) for name in (FNAME, NOTOP)))  # test data
    server = FolderServer(served)
    yield tmp_path / "keras_home" / "models", server, served
    server.close()


def _fetch(model, name, include_top=True):
    return downloads.fetch(pretrained.find(model, name), include_top=include_top)


def _fetches_after(cache, monkeypatch):
    """The next download, from a good server, works and caches only its file."""
    folder, server, served = cache
    monkeypatch.setenv("KERAS_RESNET_WEIGHTS_URL", server.url)
    requests = server.requests
    assert _fetch("resnet18", "tv_in1k") == str(folder / FNAME)
    assert (folder / FNAME).read_bytes() == (served / FNAME).read_bytes()
    assert os.listdir(folder) == [FNAME] and server.requests == requests + 1


@pytest.mark.parametrize("behave", [_slow_headers, _slow_body], ids=["headers", "body"])
def test_a_server_sending_a_byte_every_half_second_fails_at_the_deadline(
    cache, monkeypatch, behave
):
    # Each byte comes well within the 15 s timeout: only the deadline stops it.
    server = _Server(behave)
    monkeypatch.setenv("KERAS_RESNET_WEIGHTS_URL", server.url)
    monkeypatch.setenv("KERAS_RESNET_DOWNLOAD_DEADLINE", "1.5")
    start = time.monotonic()
    try:
        with pytest.raises(downloads.DownloadError) as error:
            _fetch("resnet18", "tv_in1k")
    finally:
        seconds = time.monotonic() - start
        server.close()
    assert seconds < 1.5 + 1.0  # the deadline and a slack for a loaded machine
    message = str(error.value)
    assert re.fullmatch(
        re.escape(f"Could not download {server.url}{FNAME}: not done within 1.5 s (")
        + r"\d+ bytes came" + re.escape(
            "); set KERAS_RESNET_DOWNLOAD_DEADLINE to more seconds if the server is only "
            "slow. " + HINT.format(call=f"ResNet18(weights='/path/to/{FNAME}')")),
        message), message
    assert os.listdir(cache[0]) == []  # nothing partial cached
    monkeypatch.delenv("KERAS_RESNET_DOWNLOAD_DEADLINE")
    _fetches_after(cache, monkeypatch)


@pytest.mark.parametrize("announce", [False, True], ids=["endless", "announced_1GiB"])
@pytest.mark.parametrize("published", [True, False], ids=["published_size", "no_size"])
def test_an_endless_body_is_cut_at_the_size_bound_and_nothing_is_kept(
    cache, monkeypatch, announce, published
):
    """The published size bounds what a server may send (the tests give it
    BOUND bytes); a file with none gets UNPUBLISHED_SIZE_CAP (BOUND here)."""
    if published:
        weights = tuple(
            dataclasses.replace(e, top=dataclasses.replace(e.top, size=BOUND))
            if e.top.fname == FNAME else e for e in pretrained.WEIGHTS)
        monkeypatch.setattr(pretrained, "WEIGHTS", weights)
        model, name, include_top, fname = "resnet18", "tv_in1k", True, FNAME
        call, limit = f"ResNet18(weights='/path/to/{FNAME}')", "its published size"
    else:
        monkeypatch.setattr(downloads, "UNPUBLISHED_SIZE_CAP", BOUND)
        model, name, include_top, fname = "resnet50", "imagenet", False, NOTOP
        call = f"ResNet50(weights='/path/to/{NOTOP}', include_top=False)"
        limit = "the most for an unpublished size"
    server = _Server(_endless(announce))
    monkeypatch.setenv("KERAS_RESNET_WEIGHTS_URL", server.url)
    start = time.monotonic()
    try:
        with pytest.raises(downloads.DownloadError) as error:
            _fetch(model, name, include_top)
    finally:
        seconds = time.monotonic() - start
        server.close()
    what = "the server announced 1,073,741,824 bytes," if announce else "the server sent"
    assert str(error.value) == (
        f"Could not download {server.url}{fname}: {what} more than 1,048,576 bytes, {limit}; "
        f"stopped, nothing kept. " + HINT.format(call=call))
    assert seconds < 5
    assert not cache[0].exists() or os.listdir(cache[0]) == []  # no file, no staging file
    _fetches_after(cache, monkeypatch)


_BAD_SECONDS = ["inf", "-inf", "nan", "-1", "0", "1e400", "1e10", "abc", "15 s"]


@pytest.mark.parametrize("variable", ["KERAS_RESNET_DOWNLOAD_TIMEOUT",
                                      "KERAS_RESNET_DOWNLOAD_DEADLINE"])
def test_bad_seconds_are_refused_in_one_line_naming_the_variable(cache, monkeypatch, variable):
    folder, server, _ = cache
    monkeypatch.setenv("KERAS_RESNET_WEIGHTS_URL", server.url)
    for value in _BAD_SECONDS:
        monkeypatch.setenv(variable, value)
        with pytest.raises(ValueError) as error:
            _fetch("resnet18", "tv_in1k")
        assert str(error.value) == (
            f"{variable} must be a number of seconds > 0. Received: {variable}={value!r}, which "
            "is not a finite number in (0, 86400]"), value
    assert server.requests == 0 and (not folder.exists() or os.listdir(folder) == [])
    monkeypatch.setenv(variable, "86400")  # the largest accepted
    _fetches_after(cache, monkeypatch)


def test_a_program_prints_one_line_for_an_infinite_timeout(cache, tmp_path):
    """evaluate.py with KERAS_RESNET_DOWNLOAD_TIMEOUT=inf: the OverflowError
    a socket raised for it came out as a traceback."""
    folder, server, _ = cache
    (code, stderr), = run_commands(
        "evaluate.py", [["--model=resnet18", "--weights=imagenet", "--dataset=synthetic"]],
        cwd=tmp_path, KERAS_HOME=str(folder.parent), KERAS_RESNET_WEIGHTS_URL=server.url,
        KERAS_RESNET_DOWNLOAD_TIMEOUT="inf")
    assert error_line(code, stderr, "evaluate.py") == (
        "KERAS_RESNET_DOWNLOAD_TIMEOUT must be a number of seconds > 0. Received: "
        "KERAS_RESNET_DOWNLOAD_TIMEOUT='inf', which is not a finite number in (0, 86400]")
    assert server.requests == 0


def test_the_deadline_is_derived_from_the_size_bound(monkeypatch):
    """60 s plus the most bytes a download may bring at 128 KiB/s: ResNet-18's
    published 46,807,446 bytes give 60 + 357.1 s; a file of no published size
    gets 60 s + 512 MiB at that rate (4,156 s)."""
    monkeypatch.delenv("KERAS_RESNET_DOWNLOAD_DEADLINE", raising=False)
    resnet18 = downloads._Bounds(pretrained.find("resnet18", "tv_in1k").top)
    assert (resnet18.size, round(resnet18.deadline, 1)) == (46_807_446, 417.1)
    keras_h5 = downloads._Bounds(pretrained.find("resnet50", "imagenet").top)
    assert (keras_h5.size, keras_h5.deadline) == (512 << 20, 4156.0)
    monkeypatch.setenv("KERAS_RESNET_DOWNLOAD_DEADLINE", "30")
    assert downloads._Bounds(pretrained.find("resnet18", "tv_in1k").top).deadline == 30.0
