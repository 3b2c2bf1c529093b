"""Side-by-side timing in interleaved rounds, shared by `bench_cpu.py` and `bench_gpu.py`.

A side is a runner: `run(n)` makes n steps and returns once they are done (on
a GPU, once the device has finished them). Every side is warmed up first, then
each round times every side once, one after the other, in an order reversed
every other round. A ratio is taken within a round, whose sides shared the
machine's state, and reported as the median over rounds with its min-max.
"""

import statistics
import time
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
