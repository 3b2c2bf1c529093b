"""What the command-line programs share: one-line errors, Ctrl-C, backend.

The programs of keras_resnet.programs (train.py, evaluate.py and `python -m
export` in a checkout; keras-resnet-train, -evaluate and -export once
installed) call `run_main`: expected
failures (bad flags, files, data; a full disk) print one line and exit 2 (1
for a failed run), Ctrl-C prints one line and exits 130 (the shell's code
for SIGINT), and none prints a traceback. `entry_point` starts them:
their --help lists their own flags, and a bad flag is bad input like any
other (one line, exit 2). `prepare_program`, which each program's module
calls before it imports anything that imports TensorFlow, sets the
programs' logging and says in one line what to install where TensorFlow is
missing.
"""

import functools
import importlib
import os
import re
import signal
import sys
import tempfile
import threading

from keras_resnet import files
from keras_resnet import launch
from keras_resnet.errors import ArgumentError
from keras_resnet.errors import DatasetUnavailableError
from keras_resnet.files import LockedError
from keras_resnet.files import WriteError
from keras_resnet.models.downloads import DownloadError

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
    import keras  # not at the top: prepare_program runs before Keras is imported.

    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise ValueError(
            f"{program} needs the TensorFlow backend of Keras (tf.data, "
            f"tf.distribute, SavedModel); KERAS_BACKEND is {backend!r}. Unset "
            "KERAS_BACKEND or set it to 'tensorflow' (the models themselves "
            "run on any backend)"
        )


INSTALL_TENSORFLOW = 'pip install "keras-resnet-paper[tensorflow]"'
# What TensorFlow's C++ code writes while it is imported, before
# absl::InitializeLog is called: whatever TF_CPP_MIN_LOG_LEVEL says (TF 2.21),
# and once per library that links it, hence twice.
_IMPORT_NOISE = (
    "All log messages before absl::InitializeLog() is called",
    "oneDNN custom operations are on",
    "Could not find cuda drivers on your machine",
)


def prepare_program():
    """Prepares the process of a program: each program's module calls it
    first, before anything it imports imports TensorFlow (in a program,
    `import keras_resnet` imports neither; keras_resnet.launch), and it does
    nothing in any other process, one that imports a program's module
    included. Without TensorFlow (`pip install .` leaves it out) it says in
    one line what to install, exit 2, instead of a traceback; with it,
    TensorFlow is imported without its C++ start-up lines."""
    if not launch.is_program():
        return
    # TensorFlow runs its CPU convolutions through oneDNN by default only on
    # CPUs with AVX-512 VNNI/BF16 or AMX; on others (AVX2 hosts) its own
    # kernels train a ResNet about 2x slower (benchmarks/RESULTS.md). A
    # user's own setting wins.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        _import_quietly("tensorflow")
    except ModuleNotFoundError as e:
        if e.name != "tensorflow":  # an install of TensorFlow that is broken.
            raise
        print(f"{program_name()}: error: it needs TensorFlow, which is not installed: "
              f"{INSTALL_TENSORFLOW}", file=sys.stderr)
        sys.exit(2)


def _import_quietly(module):
    """Imports `module`, leaving the lines of _IMPORT_NOISE out of stderr and
    keeping every other: no setting silences what C++ code writes before
    absl logging is initialised, so the file descriptor is captured."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            importlib.import_module(module)
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(l for l in lines if not any(n in l for n in _IMPORT_NOISE)))


def entry_point(main, flags_module, arguments=0, usage=None):
    """Runs `main` under absl.app, as each program's entry_point does.

    absl's --help and --helpshort list the flags of the main module only,
    which is train.py or a console script's wrapper, while the flags are
    defined in `flags_module` (keras_resnet.programs.*): they are made the
    main module's too (--helpfull still lists every flag). Flag errors go
    through `parse_flags`, which takes up to `arguments` arguments that are
    not flags. `usage` heads the help (absl prints the main module's doc).
    """
    from absl import app
    from absl import flags

    for flag in flags.FLAGS.get_key_flags_for_module(flags_module):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    if usage is not None:
        sys.modules["__main__"].__doc__ = usage
    app.run(main, flags_parser=functools.partial(parse_flags, arguments=arguments))


def parse_flags(argv, arguments=0):
    """absl's flag parsing, where a bad flag (a value out of its choices, a
    misspelt flag) is bad input like any other: one line naming the flag and
    what it accepts, exit 2 (absl prints two and exits 1, the code of a
    failed run), as is an argument that is not a flag; the help that was
    asked for exits 0 (absl's, 1)."""
    from absl import flags

    try:
        argv = flags.FLAGS(argv)
    except SystemExit:  # only absl's --help, --helpshort, --helpfull exit while parsing.
        sys.exit(0)
    except flags.Error as e:
        print(f"{program_name()}: error: {_one_line(e)}{_accepted(flags.FLAGS, e)}", file=sys.stderr)
        sys.exit(2)
    if len(argv) > 1 + arguments:  # absl would print its whole usage and exit 1.
        print(f"{program_name()}: error: unexpected arguments: {' '.join(argv[1:])}; every "
              "input is a flag, --name=value (--helpshort lists them)", file=sys.stderr)
        sys.exit(2)
    return argv


def _accepted(flag_values, error):
    """What the flag that `error` names accepts ("; it takes an integer"),
    where absl's message does not say it (`--epochs=`: "invalid literal for
    int()"); else ""."""
    match = re.match(r"flag --(\w+)=", str(error))
    if not match or match.group(1) not in flag_values:
        return ""
    accepted = flag_values[match.group(1)].parser.syntactic_help
    return f"; it takes {accepted}" if accepted and accepted not in str(error) else ""


def run_main(program, main, *args, failures=(), resume_hint=False):
    """Calls `main(*args)`; turns expected errors into one line and an exit code.

    `failures`: further exception types that mean the run failed (exit 1).
    A Ctrl-C is recorded (`files.record_interrupt`), so that a run whose
    KeyboardInterrupt Python swallowed still stops at its next write and
    exits 130 instead of 0. Each line starts a line of its own, also where
    Keras' progress bar left stdout mid-line.
    """
    previous = _record_sigint()
    stdout = sys.stdout
    sys.stdout = tracked = _LineTracker(stdout) if stdout is not None else None
    say = functools.partial(_say, tracked)
    try:
        result = main(*args)
        if files.interrupted():
            raise KeyboardInterrupt
        return result
    except ArgumentError as e:  # the library's argument is the program's flag.
        say(f"{program}: error: --{e.argument}={e.value}: {e.requirement}")
        sys.exit(2)
    except (DatasetUnavailableError, DownloadError) as e:  # each says what to pass instead.
        say(f"{program}: error: {' '.join(e.cause.split())}. {e.hint('--')}")
        sys.exit(2)
    except KeyboardInterrupt:
        hint = "; run the same command to resume" if resume_hint else ""
        say(f"{program}: interrupted{hint}")
        sys.exit(INTERRUPTED_EXIT)
    except (ValueError, WriteError, LockedError, OSError) as e:
        say(f"{program}: error: {_one_line(e)}")
        sys.exit(2)
    except failures as e:
        say(f"{program}: error: {_one_line(e)}")
        sys.exit(1)
    finally:
        sys.stdout = stdout
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


class _LineTracker:
    """A text stream that notes whether what was written to it last ended
    its line: Keras' progress bar leaves the cursor after the bar (on any
    stdout, "posix" in sys.modules turns its dynamic display on)."""

    def __init__(self, stream):
        self.stream = stream
        self.mid_line = False

    def write(self, text):
        if text:
            self.mid_line = not text.endswith("\n")
        return self.stream.write(text)

    def __getattr__(self, name):  # flush, isatty, fileno, encoding, ...
        return getattr(self.stream, name)


def _say(stdout, message):
    """Prints `message` to stderr on a line of its own: a line that `stdout`
    (a _LineTracker, or None) left open is ended first, where a terminal
    shows both streams on one screen."""
    try:
        if stdout is not None:
            if stdout.mid_line:
                stdout.write("\n")
            stdout.flush()  # what main printed comes before the message.
    except (OSError, ValueError):  # a closed stdout, or the pipe that failed main.
        pass
    print(message, file=sys.stderr)


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
