"""Speed of keras_resnet's models next to a reference, measured in the same run.

Cases (synthetic data, float32, compiled tf.function graphs without XLA):
  resnet50_inference  keras_resnet.ResNet50 vs keras.applications.ResNet50
                      (same architecture; the reference has conv biases, BN eps
                      1.001e-5 and TF "same" padding), `predict_on_batch`.
  resnet50_train      the same pair, one SGD-momentum step of sparse categorical
                      cross-entropy, `train_on_batch`.
  resnet20_train      CIFAR ResNet-20 (32x32, batch 128): shortcut option A (the
                      parameter-free ZeroPadShortcut) vs option B (projections).

After a warm-up, each round times `--steps` calls of one model, then of the
other (the order alternates per round); the table gives the median images/s
over `--rounds` rounds and the median of the per-round ratios ours / reference
(above 1: ours is faster; `rounds`: their range). `--rss` adds each model's
peak resident memory, measured in a fresh subprocess per model. Run from the
repository root:

  python benchmarks/bench_models.py
  python benchmarks/bench_models.py --quick    # smoke run, about a minute (graph tracing)
  python benchmarks/bench_models.py --cases=resnet20_train --output_json=b.json
"""

import json
import os
import statistics
import subprocess
import sys
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CASES = ("resnet50_inference", "resnet50_train", "resnet20_train")

flags.DEFINE_list("cases", list(CASES), f"Cases to run, of {', '.join(CASES)}.")
flags.DEFINE_integer("batch_size", 16, "ResNet-50 inference batch.", lower_bound=1)
flags.DEFINE_integer("train_batch_size", 8, "ResNet-50 training batch.", lower_bound=1)
flags.DEFINE_integer("cifar_batch_size", 128, "ResNet-20 training batch.", lower_bound=1)
flags.DEFINE_integer("rounds", 7, "Interleaved timing rounds per case.", lower_bound=1)
flags.DEFINE_integer("steps", 3, "Calls per model per round.", lower_bound=1)
flags.DEFINE_integer("warmup", 2, "Untimed calls per model before timing.", lower_bound=1)
flags.DEFINE_bool("quick", False, "Smoke run: 2 rounds of 1 call, batches of 2 (ResNet-20: 16).")
flags.DEFINE_bool("rss", False, "Also measure each model's peak RSS in a fresh subprocess.")
flags.DEFINE_string("output_json", None, "Write the table here as JSON.")
flags.DEFINE_string("rss_probe", None, "Internal: CASE:ours|reference, print peak RSS (MiB).")
FLAGS = flags.FLAGS


def _build(case, which):
    """Returns (batch, step) for one side of one case: step() runs one call."""
    import keras
    import numpy as np

    import keras_resnet

    keras.utils.set_random_seed(0)
    if case == "resnet20_train":
        if which == "ours":
            model = keras_resnet.ResNet20(shortcut="A", name="resnet20_A")
        else:
            model = keras_resnet.ResNet20(shortcut="B", name="resnet20_B")
        batch, size, classes = FLAGS.cifar_batch_size, 32, 10
    else:
        if which == "ours":
            model = keras_resnet.ResNet50(weights=None)
        else:
            model = keras.applications.ResNet50(weights=None)
        batch = FLAGS.batch_size if case == "resnet50_inference" else FLAGS.train_batch_size
        size, classes = 224, 1000
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
        loss="sparse_categorical_crossentropy",
        jit_compile=False,
    )
    rng = np.random.default_rng(0)
    images = rng.normal(size=(batch, size, size, 3)).astype("float32")
    labels = rng.integers(0, classes, size=(batch,)).astype("int32")
    if case == "resnet50_inference":
        return batch, lambda: model.predict_on_batch(images)
    return batch, lambda: model.train_on_batch(images, labels)


def _time_calls(step, calls):
    start = time.perf_counter()
    for _ in range(calls):
        step()
    return time.perf_counter() - start


def _measure(case):
    """Interleaved timing of ours and the reference; returns a table row."""
    built = {which: _build(case, which) for which in ("ours", "reference")}
    # Warm up only once both are built: set_random_seed clears TF's kernel
    # cache, which would make the first timed call of the first model slow.
    steps = {which: step for which, (_, step) in built.items()}
    for step in steps.values():
        _time_calls(step, FLAGS.warmup)  # traces the graph, warms caches
    batch = built["ours"][0]
    rates = {"ours": [], "reference": []}
    for r in range(FLAGS.rounds):
        order = ("ours", "reference") if r % 2 == 0 else ("reference", "ours")
        for which in order:
            seconds = _time_calls(steps[which], FLAGS.steps)
            rates[which].append(batch * FLAGS.steps / seconds)
    # The ratio is the median of the per-round ratios: a round's two models
    # share the machine's state, so pairing cancels slow spells of a shared CPU.
    ratios = [o / r for o, r in zip(rates["ours"], rates["reference"])]
    return {
        "case": case,
        "batch": batch,
        "ours_img_s": round(statistics.median(rates["ours"]), 2),
        "reference_img_s": round(statistics.median(rates["reference"]), 2),
        "ratio": round(statistics.median(ratios), 3),
        "ratio_min": round(min(ratios), 3),
        "ratio_max": round(max(ratios), 3),
        "ours_rounds": [round(x, 2) for x in rates["ours"]],
        "reference_rounds": [round(x, 2) for x in rates["reference"]],
    }


def _vm_hwm_mib():
    """This process's peak RSS. Not getrusage's ru_maxrss: on Linux a child
    inherits the parent's high-water mark at fork, and exec keeps it."""
    with open("/proc/self/status") as f:
        line = next(l for l in f if l.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024  # kB


def _peak_rss_mib(case, which):
    """Peak RSS of a fresh process that builds one model and runs its warm-up."""
    argv = [sys.executable, os.path.abspath(__file__), f"--rss_probe={case}:{which}"]
    for name in ("batch_size", "train_batch_size", "cifar_batch_size", "warmup"):
        argv.append(f"--{name}={getattr(FLAGS, name)}")
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def _print_table(rows):
    header = (f"{'case':<20} {'batch':>5} {'ours img/s':>11} {'ref img/s':>10} {'ratio':>6}"
              f" {'rounds':>11}")
    if any("ours_rss_mib" in row for row in rows):
        header += f" {'ours MiB':>9} {'ref MiB':>8}"
    print(header)
    for row in rows:
        line = (f"{row['case']:<20} {row['batch']:>5} {row['ours_img_s']:>11.2f} "
                f"{row['reference_img_s']:>10.2f} {row['ratio']:>6.3f}"
                f" {row['ratio_min']:>5.2f}-{row['ratio_max']:<5.2f}")
        if "ours_rss_mib" in row:
            line += f" {row['ours_rss_mib']:>9.0f} {row['reference_rss_mib']:>8.0f}"
        print(line)


def main(argv):
    del argv
    if FLAGS.rss_probe:
        case, which = FLAGS.rss_probe.split(":")
        _, step = _build(case, which)
        _time_calls(step, FLAGS.warmup)
        print(_vm_hwm_mib())
        return
    unknown = sorted(set(FLAGS.cases) - set(CASES))
    if unknown:
        raise app.UsageError(f"Unknown --cases {unknown}; accepted: {', '.join(CASES)}.")
    if FLAGS.quick:
        FLAGS.rounds, FLAGS.steps, FLAGS.warmup = 2, 1, 1
        FLAGS.batch_size = FLAGS.train_batch_size = 2
        FLAGS.cifar_batch_size = 16

    rows = []
    for case in [c for c in CASES if c in FLAGS.cases]:
        start = time.perf_counter()
        row = _measure(case)
        if FLAGS.rss:
            row["ours_rss_mib"] = round(_peak_rss_mib(case, "ours"), 1)
            row["reference_rss_mib"] = round(_peak_rss_mib(case, "reference"), 1)
        row["wall_s"] = round(time.perf_counter() - start, 1)
        print(f"{case}: {row}", flush=True)
        rows.append(row)

    print("\nreference: keras.applications.ResNet50 (resnet50_*), ResNet-20 option B "
          "(resnet20_train); ratio = ours / reference, above 1 is faster.\n")
    _print_table(rows)
    if FLAGS.output_json:
        settings = {name: getattr(FLAGS, name) for name in (
            "batch_size", "train_batch_size", "cifar_batch_size", "rounds", "steps", "warmup",
            "quick")}
        from keras_resnet import files

        files.write_text(FLAGS.output_json, json.dumps({"settings": settings, "rows": rows}, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    app.run(main)
