"""Side-by-side timing in interleaved rounds, shared by `bench_cpu.py` and `bench_gpu.py`,
and the training model and batch that `bench_input.py` and `bench_reproduce.py` time.

A side is a runner: `run(n)` makes n steps and returns once they are done (on
a GPU, once the device has finished them). Every side is warmed up first, then
each round times every side once, one after the other, in an order reversed
every other round. A ratio is taken within a round, whose sides shared the
machine's state, and reported as the median over rounds with its min-max.
"""

import os
import statistics
import time

# What the programs ask TensorFlow for (keras_resnet.programs.cli.prepare_program),
# and docs/development.md advises a script on a CPU without AVX-512: oneDNN's convolutions.
# It counts only before TensorFlow is imported, so the benchmarks import this
# module first.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
from collections.abc import Callable


def interleave(runs: dict[str, Callable[[int], object]], batch: int, steps: int, *,
               rounds: int, warmup: int, settle_s: float = 0.0,
               deadline: float | None = None) -> dict[str, list[float]]:
    """Images/s of every side in every round. After `deadline` (a `time.monotonic()`
    value) no new round starts, but the first always runs."""
    for run in runs.values():
        run(warmup)
    rates = {side: [] for side in runs}
    order = list(runs)
    for round_index in range(rounds):
        if round_index and deadline is not None and time.monotonic() > deadline:
            break
        for side in order if round_index % 2 == 0 else order[::-1]:
            time.sleep(settle_s)
            start = time.perf_counter()
            runs[side](steps)
            rates[side].append(batch * steps / (time.perf_counter() - start))
    return rates


def compare(ours: list[float], reference: list[float]) -> dict:
    """Medians of both sides' img/s and the median and range of their per-round ratio."""
    ratios = [o / r for o, r in zip(ours, reference)]
    return {
        "ours_img_s": round(statistics.median(ours), 2),
        "reference_img_s": round(statistics.median(reference), 2),
        "ratio": round(statistics.median(ratios), 3),
        "ratio_min": round(min(ratios), 3), "ratio_max": round(max(ratios), 3),
        "ours_rounds": [round(x, 2) for x in ours],
        "reference_rounds": [round(x, 2) for x in reference],
    }


def training_model(config, classes: int):
    """The model train.py builds and compiles for `config` (a
    keras_resnet.training.run.Config), as a run on `classes` classes; where it
    subtracts a training set's per-pixel mean, a flat one (no data is read)."""
    import numpy as np

    from keras_resnet.training import model as model_lib
    from keras_resnet.training import run as run_lib

    settings = run_lib.resolve_settings(config)
    run = settings.with_data([str(c) for c in range(classes)], settings.batch_size * 10)
    size = settings.image_size
    mean = np.full((size, size, 3), 120.0, "float32")
    return model_lib.build_model(run, mean if run.preprocessing == "pixel_mean" else None)


def fixed_batch(batch: int, image_size: int, classes: int, seed: int = 0):
    """(images, one-hot labels): one batch of random RGB images in [0, 255]."""
    import numpy as np

    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (batch, image_size, image_size, 3)).astype("float32")
    return images, np.eye(classes, dtype="float32")[rng.integers(0, classes, batch)]
