"""The errors the library raises about its arguments, named as the caller wrote them.

Library code speaks of its arguments (`batch_size`); the command-line programs
(keras_resnet.programs.cli) show the same error as the flag they read it from
(`--batch_size=-4: must be >= 1`).
"""

from typing import Any


class DatasetUnavailableError(ValueError):
    """A data set cannot be read or downloaded here: `cause` says why, in one
    sentence; the message adds the arguments that point at local data."""

    def __init__(self, cause: str):
        super().__init__(f"{cause}. {self.hint('')}")
        self.cause = cause

    @staticmethod
    def hint(prefix: str) -> str:
        """Where to point instead; `prefix` "--" names the arguments as flags."""
        return (
            f"Point {prefix}data_dir at a TFDS data directory that holds it "
            f"({prefix}manual_dir for manually downloaded archives), or give "
            f"{prefix}dataset=/path/to/folder with train/ and val/ (or test/) "
            f"subfolders of class folders, or train on {prefix}dataset=fashion_mnist, "
            "which reads Debian's dataset-fashion-mnist package offline "
            "(apt-get install dataset-fashion-mnist)"
        )


class ArgumentError(ValueError):
    """`argument` holds `value`, which fails `requirement` (e.g. "must be >= 1")."""

    def __init__(self, argument: str, value: Any, requirement: str):
        super().__init__(f"{argument} {requirement}. Received: {argument}={value!r}")
        self.argument, self.value, self.requirement = argument, value, requirement
