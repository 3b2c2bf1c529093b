"""Shared test utilities: a file server on 127.0.0.1, md5 of a file, a full
disk for a subprocess, and a dead process id."""

import functools
import hashlib
import http.server
import subprocess
import threading


def md5(path):
    with open(path, "rb") as f:
        return hashlib.md5(f.read()).hexdigest()


class FolderServer:
    """Serves `folder` over HTTP on 127.0.0.1 and counts the GET requests."""

    def __init__(self, folder):
        self.requests = 0
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                server.requests += 1
                super().do_GET()

            def log_message(self, *args):
                pass

        handler = functools.partial(Handler, directory=str(folder))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def file_size_limit(limit_bytes):
    """A `preexec_fn` that makes a subprocess's disk look full: any write
    past `limit_bytes` in one file fails with EFBIG (SIGXFSZ ignored), as a
    write to a full disk fails with ENOSPC."""
    import resource
    import signal

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return limit


def dead_pid():
    """The id of a process that has ended, as a killed writer's would be."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid
