"""Running hostile input in a subprocess under limits: `run_bounded`.

A crafted file or request can segfault the process that reads it, or make it
allocate gigabytes, so the tests feed it to a child process with an address
space limit (RLIMIT_AS) and a wall-clock timeout, and read what came of it:
the exit code (a segfault is -11), stdout, stderr and the wall time.
"""

import dataclasses
import os
import resource
import subprocess
import sys
import textwrap
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass(frozen=True)
class Outcome:
    returncode: int  # negative: killed by that signal (-11: segfault)
    stdout: str
    stderr: str
    seconds: float

    @property
    def last_line(self) -> str:
        lines = self.stderr.strip().splitlines()
        return lines[-1] if lines else ""


def run_bounded(code: str, *args: str, memory_mb: int, timeout_s: float = 120,
                cwd: str | None = None, env: dict | None = None) -> Outcome:
    """Runs `python -c code args...` with at most `memory_mb` MiB of address
    space. The limit counts what the process maps, not what it touches, so it
    must leave room for the libraries `code` imports (NumPy alone maps about
    100 MiB; TensorFlow about 2 GiB): a test gives the bound it claims on top
    of a baseline it measured with the same imports."""

    def limit() -> None:
        size = memory_mb << 20
        resource.setrlimit(resource.RLIMIT_AS, (size, size))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a segfault writes no core file

    environment = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args], cwd=cwd, env=environment,
        capture_output=True, text=True, timeout=timeout_s, preexec_fn=limit,
    )
    return Outcome(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)
