"""Whether this process runs one of the package's programs.

The answer comes from the command line the interpreter was started with
(`sys.orig_argv`), which code run later does not rewrite as it may rewrite
`sys.argv`: `python train.py` or `python evaluate.py` of the checkout that
holds this package, `python -m export` there, `python -m keras_resnet` and
`python -m keras_resnet.reproduce`, and the console scripts. A user's own
train.py is not one of them, nor is `python -c`, a notebook or a server.

Standard library only: the package's root imports it before anything else.
"""

import os
import sys
from collections.abc import Sequence

CONSOLE_SCRIPTS = ("keras-resnet-train", "keras-resnet-evaluate", "keras-resnet-export",
                   "keras-resnet-reproduce")
# The checkout's root holds them beside keras_resnet/.
CHECKOUT_SCRIPTS = ("train.py", "evaluate.py", os.path.join("export", "__main__.py"))
MODULES = ("keras_resnet", "keras_resnet.reproduce")  # python -m NAME
CHECKOUT_MODULES = ("export",)  # python -m NAME, in the checkout
_CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Interpreter options whose value is the next argument (`-X dev`, `-W error`).
_OPTIONS_WITH_VALUE = ("-X", "-W")


def _started_with(argv: Sequence[str]) -> tuple[str, str] | None:
    """("module", name) for `python -m name`, ("script", path) for `python
    path`, None for `-c`, `-` or no argument, from an interpreter command line."""
    args = iter(argv[1:])
    for arg in args:
        if arg in _OPTIONS_WITH_VALUE:
            next(args, None)
        elif arg.startswith("-m"):
            return ("module", arg[2:] or next(args, ""))
        elif arg.startswith("-c") or arg == "-":
            return None
        elif not arg.startswith("-"):
            return ("script", arg)
    return None


def is_program(argv: Sequence[str] | None = None) -> bool:
    """Whether `argv` (default: this interpreter's command line) runs one of
    the package's programs."""
    started = _started_with(sys.orig_argv if argv is None else argv)
    if started is None:
        return False
    kind, name = started
    if kind == "module":
        return name in MODULES or (name in CHECKOUT_MODULES and os.path.isfile(
            os.path.join(_CHECKOUT, name, "__main__.py")))
    if os.path.basename(name) in CONSOLE_SCRIPTS:
        return True
    return any(os.path.realpath(name) == os.path.realpath(os.path.join(_CHECKOUT, script))
               for script in CHECKOUT_SCRIPTS)
