"""What the command-line programs share: one-line errors, Ctrl-C, backend.

The programs of keras_resnet.commands (train.py, evaluate.py and `python -m
export` in a checkout; keras-resnet-train, -evaluate and -export once
installed) call `run_main`: expected
failures (bad flags, files, data; a full disk) print one line and exit 2 (1
for a failed run), Ctrl-C prints one line and exits 130 (the shell's code
for SIGINT), and none prints a traceback.
"""

import os
import signal
import sys
import threading

import keras

from keras_resnet import files
from keras_resnet.errors import ArgumentError
from keras_resnet.errors import DatasetUnavailableError
from keras_resnet.files import LockedError
from keras_resnet.files import WriteError

INTERRUPTED_EXIT = 130


def program_name():
    """The name the user ran: "train.py", "keras-resnet-train", or "export"
    for `python -m export`; messages start with it."""
    path = sys.argv[0] if sys.argv and sys.argv[0] else "keras_resnet"
    name = os.path.basename(path)
    return os.path.basename(os.path.dirname(path)) if name == "__main__.py" else name


def require_tensorflow_backend(program):
    """Raises ValueError unless Keras runs on TensorFlow (tf.data,
    tf.distribute and SavedModels need it; the models do not)."""
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise ValueError(
            f"{program} needs the TensorFlow backend of Keras (tf.data, "
            f"tf.distribute, SavedModel); KERAS_BACKEND is {backend!r}. Unset "
            "KERAS_BACKEND or set it to 'tensorflow' (the models themselves "
            "run on any backend)"
        )


def run_main(program, main, *args, failures=(), resume_hint=False):
    """Calls `main(*args)`; turns expected errors into one line and an exit code.

    `failures`: further exception types that mean the run failed (exit 1).
    A Ctrl-C is recorded (`files.record_interrupt`), so that a run whose
    KeyboardInterrupt Python swallowed still stops at its next write and
    exits 130 instead of 0.
    """
    previous = _record_sigint()
    try:
        result = main(*args)
        if files.interrupted():
            raise KeyboardInterrupt
        return result
    except ArgumentError as e:  # the library's argument is the program's flag.
        print(f"{program}: error: --{e.argument}={e.value}: {e.requirement}", file=sys.stderr)
        sys.exit(2)
    except DatasetUnavailableError as e:
        print(f"{program}: error: {' '.join(e.cause.split())}. {e.hint('--')}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        hint = "; run the same command to resume" if resume_hint else ""
        print(f"{program}: interrupted{hint}", file=sys.stderr)
        sys.exit(INTERRUPTED_EXIT)
    except (ValueError, WriteError, LockedError, OSError) as e:
        print(f"{program}: error: {_one_line(e)}", file=sys.stderr)
        sys.exit(2)
    except failures as e:
        print(f"{program}: error: {_one_line(e)}", file=sys.stderr)
        sys.exit(1)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _on_sigint(signum, frame):
    files.record_interrupt()
    raise KeyboardInterrupt


def _record_sigint():
    """Installs `_on_sigint` in place of Python's default SIGINT handler;
    returns the handler to restore, or None where nothing was installed (a
    thread other than the main one, or a handler of the caller's own)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.default_int_handler:
        return None
    signal.signal(signal.SIGINT, _on_sigint)
    return previous


def _one_line(error):
    """The error's message on one line; an OSError's with its file name."""
    text = str(error)
    if isinstance(error, OSError) and error.strerror:
        text = error.strerror
        if error.filename and str(error.filename) not in text:
            text = f"{text}: {error.filename}"
    return " ".join(text.split())
