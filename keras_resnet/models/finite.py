"""Weights that are not finite numbers, refused by every loader.

A diverged run saves NaN or inf weights that load without complaint and make
every prediction NaN; each reader of weights (Keras files, state dicts, a run's
backups, evaluate and export) checks what it loads here, naming the tensor.
"""

import numpy as np


def check_finite(values: np.ndarray, what: str, name: str, outcome: str) -> None:
    """Refuses (ValueError) `values`, weight `name` of `what`, if any is NaN or inf: `outcome` is not done."""
    if bad := int(np.size(values) - np.isfinite(values).sum()):
        raise ValueError(f"{what} holds non-finite weights: {name} has {bad} NaN or inf of "
                         f"{np.size(values)} values (a diverged run?); {outcome}")
