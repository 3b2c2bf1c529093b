"""A program's Ctrl-C line on a terminal (keras_resnet.programs.cli.run_main):
it starts a line of its own, also where Keras' progress bar left the cursor
after the bar."""

import os
import select
import subprocess
import sys
import textwrap
import time

import pytest

from tests.helpers import REPO

MESSAGE = "train.py: interrupted; run the same command to resume"
# What main writes before the Ctrl-C: Keras' own progress bar, mid-epoch
# (no newline after it), or a whole line.
WRITES = {
    "progress_bar": "import keras\nkeras.utils.Progbar(100).update(12)",
    "whole_line": 'print("Epoch 1/10")',
}


def _on_a_terminal(script, timeout=60):
    """Runs `script` with stdin, stdout and stderr on one pseudo-terminal:
    (exit code, all the terminal got)."""
    controller, terminal = os.openpty()
    process = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdin=terminal,
                               stdout=terminal, stderr=terminal,
                               env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    os.close(terminal)
    output, deadline = b"", time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([controller], [], [], 1)[0]:
                try:
                    chunk = os.read(controller, 4096)
                except OSError:  # EIO: the program exited, the terminal closed.
                    break
                if not chunk:
                    break
                output += chunk
        return process.wait(timeout=10), output.decode(errors="replace")
    finally:
        process.kill()
        os.close(controller)


@pytest.mark.parametrize("writes", list(WRITES))
def test_the_interrupt_line_starts_a_line_of_its_own(writes):
    script = textwrap.dedent("""
        from keras_resnet.programs import cli

        def main():
            {}
            raise KeyboardInterrupt

        cli.run_main("train.py", main, resume_hint=True)
    """).format(WRITES[writes].replace("\n", "\n    "))
    code, output = _on_a_terminal(script)
    assert code == 130, output
    before, found, after = output.partition(MESSAGE)
    assert found, output
    # The terminal ends each line with "\r\n"; the bar's line is ended once,
    # a whole line is not followed by an empty one.
    expected = "12/100" if writes == "progress_bar" else "Epoch 1/10"
    assert before.endswith("\r\n") and not before.endswith("\r\n\r\n"), repr(output)
    assert expected in before.splitlines()[-1], repr(output)
    assert after == "\r\n"
