"""What the command-line programs share: one-line errors, Ctrl-C, backend.

train.py, evaluate.py and `python -m export` call `run_main`: expected
failures (bad flags, files, data; a full disk) print one line and exit 2 (1
for a failed run), Ctrl-C prints one line and exits 130 (the shell's code
for SIGINT), and none prints a traceback.
"""

import sys

import keras

from keras_resnet.files import LockedError
from keras_resnet.files import WriteError

INTERRUPTED_EXIT = 130


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
    """
    try:
        return main(*args)
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


def _one_line(error):
    """The error's message on one line; an OSError's with its file name."""
    text = str(error)
    if isinstance(error, OSError) and error.strerror:
        text = error.strerror
        if error.filename and str(error.filename) not in text:
            text = f"{text}: {error.filename}"
    return " ".join(text.split())
