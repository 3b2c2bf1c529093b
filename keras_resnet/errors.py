"""The error the library raises for a bad argument, named as the caller wrote it.

Library code speaks of its arguments (`batch_size`); the command-line programs
(keras_resnet.cli) show the same error as the flag they read it from
(`--batch_size=-4: must be >= 1`).
"""

from typing import Any


class ArgumentError(ValueError):
    """`argument` holds `value`, which fails `requirement` (e.g. "must be >= 1")."""

    def __init__(self, argument: str, value: Any, requirement: str):
        super().__init__(f"{argument} {requirement}. Received: {argument}={value!r}")
        self.argument, self.value, self.requirement = argument, value, requirement
