"""Is the input pipeline or the training loop the bottleneck?

Two measurements, each against the bare train step of the same model and
batch (`train_on_batch` on one fixed batch: what training consumes), timed in
the same process, in interleaved rounds (medians; ratio range over rounds):

(a) tf.data alone: images/s that `pipeline.make_datasets(...).train` delivers,
    iterated without a model, for
      cifar_png       a generated folder of 32x32 PNGs, augment="cifar"
                      (pad, crop, flip), batch 128, vs ResNet-20's step;
      imagenet_jpeg   a generated folder of 400-500 px JPEGs,
                      augment="imagenet" (scale 256-480, crop 224, flip, PCA
                      lighting 0.1), batch 32, vs ResNet-50's step. The decoded
                      folder is small enough to be cached; `--uncached` adds
                      imagenet_jpeg_uncached, which decodes every JPEG every
                      epoch, as a full ImageNet (over pipeline.CACHE_LIMIT_BYTES)
                      does.
    Target: pipeline >= 3x the step rate.
(b) train_end_to_end: keras_resnet.training.train (what `python train.py`
    runs: validation each epoch, history, checkpoints, backup, TensorBoard),
    ResNet-20, batch 128, vs ResNet-20's bare step, on synthetic data shaped
    as the paper's CIFAR-10 run: 45,000 training images (351 steps an epoch)
    and 5,625 validation images (CIFAR's: 5,000). The rate counts the epochs
    after the first (startup, tracing and the first pass are left out):
    images trained from the first epoch's end to the last's, over that time.
    Each epoch's time is split into training steps, validation and the
    epoch-end callbacks (the "cost" columns, in % of the epoch). An epoch's
    fixed costs (validation, checkpoints) weigh in as they do in a real run:
    a smaller --train_examples overstates them. Target: >= 0.9x.
    One round pairs minutes of training with 20 bare steps, so a host whose
    speed drifts moves it by tens of percent (RESULTS.md); (c) times the
    steps' share in interleaved rounds.
(c) train_step_fed: the compiled training step of ResNet-20 (batch 128), as
    fit calls it, fed by the CIFAR pipeline of (b) (45,000 synthetic images,
    shuffled and augmented while the steps run) vs fed one fixed batch, each
    reading the step's loss as fit does: what the pipeline's CPU costs the
    steps. Interleaved rounds of 40 steps, one iterator per side for all of
    them. Target: >= 0.9x.

Run from the repository root (a busy or shared CPU gives noisy figures):

  python benchmarks/bench_input.py                 # about 15 minutes on 2 cores
  python benchmarks/bench_input.py --quick         # smoke run, about 2 minutes
  python benchmarks/bench_input.py --cases=cifar_png --rounds=5 --output_json=b.json
"""

import importlib
import json
import os
import statistics
import sys
import tempfile
import time

from absl import app
from absl import flags

sys.path[:0] = [os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                os.path.dirname(os.path.abspath(__file__))]  # the repository, and benchmarks/

CASES = ("cifar_png", "imagenet_jpeg", "train_step_fed", "train_end_to_end")

flags.DEFINE_list("cases", list(CASES), f"Cases to run, of {', '.join(CASES)}.")
flags.DEFINE_integer("rounds", 5, "Interleaved timing rounds per case.", lower_bound=1)
flags.DEFINE_integer("epochs", 2, "train_end_to_end: epochs per train() run.", lower_bound=2)
flags.DEFINE_integer("train_examples", 45000, "train_end_to_end: training images (CIFAR-10's "
                     "45k split; validation gets an eighth).", lower_bound=256)
flags.DEFINE_integer("train_rounds", 1, "train_end_to_end: rounds, about 10 minutes each.",
                     lower_bound=1)
flags.DEFINE_bool("uncached", False, "Also time the JPEG pipeline decoding every epoch.")
flags.DEFINE_bool("quick", False, "Smoke run: 2 rounds, smaller folders, fewer batches.")
flags.DEFINE_string("output_json", None, "Write the table here as JSON.")
FLAGS = flags.FLAGS


def _quick(full, quick):
    return quick if FLAGS.quick else full


# -------------------------------------------------------------------- data


def _write_folder(root, count, size_range, ext, classes=4, seed=0):
    """train/ and val/ of `count` (and count // 8) images with sides in
    `size_range`: smooth colour ramps plus noise, so JPEGs are photo-sized."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    for split, n in (("train", count), ("val", max(classes, count // 8))):
        for i in range(n):
            folder = os.path.join(root, split, f"class{i % classes}")
            os.makedirs(folder, exist_ok=True)
            h, w = rng.integers(size_range[0], size_range[1] + 1, size=2)
            ramp = np.linspace(0, 1, w)[None, :, None] * rng.uniform(0, 255, 3)
            ramp = ramp + np.linspace(0, 1, h)[:, None, None] * rng.uniform(-128, 128, 3)
            image = np.clip(ramp + rng.normal(0, 12, (h, w, 3)), 0, 255).astype("uint8")
            encoded = tf.io.encode_png(image) if ext == "png" else tf.io.encode_jpeg(image, quality=90)
            tf.io.write_file(os.path.join(folder, f"{i}.{ext}"), encoded)
    return root


# ------------------------------------------------------------------ timing


def _model(model_name, batch, image_size, classes):
    """A model built and compiled as training builds and compiles it."""
    import timing
    from keras_resnet.training import run as run_lib

    return timing.training_model(run_lib.Config(
        model=model_name, dataset="synthetic", batch_size=batch, epochs=1, image_size=image_size),
        classes)


def _bare_step(model_name, batch, image_size, classes):
    """One train_on_batch of a model as training compiles it, on a fixed batch."""
    import timing

    model = _model(model_name, batch, image_size, classes)
    images, labels = timing.fixed_batch(batch, image_size, classes)
    return lambda: model.train_on_batch(images, labels)


def _time(fn, calls):
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return time.perf_counter() - start


def _row(case, batch, ours, reference, target, **extra):
    ratios = [o / r for o, r in zip(ours, reference)]
    return {
        "case": case, "batch": batch,
        "img_s": round(statistics.median(ours), 1),
        "step_img_s": round(statistics.median(reference), 1),
        "ratio": round(statistics.median(ratios), 2),
        "ratio_min": round(min(ratios), 2), "ratio_max": round(max(ratios), 2),
        "target": target, **extra,
    }


# ------------------------------------------------------------------- cases


def measure_pipeline(case, root, uncached=False):
    """(a): pipeline batches/s vs the bare step of the model that eats them."""
    from keras_resnet.data import augment
    from keras_resnet.data import pipeline

    if case.startswith("cifar"):
        model_name, batch, size, aug, opts = "resnet20", 128, 32, "cifar", None
        batches, steps = _quick(40, 12), _quick(6, 2)
    else:
        model_name, batch, size, aug = "resnet50", 32, 224, "imagenet"
        opts = augment.AugmentOptions(pca_std=0.1)
        batches, steps = _quick(16, 6), _quick(3, 1)
    limit = pipeline.CACHE_LIMIT_BYTES
    pipeline.CACHE_LIMIT_BYTES = 0 if uncached else limit
    try:
        data = pipeline.make_datasets(root, image_size=size, batch_size=batch, augment=aug, options=opts,
                             pixel_mean=aug == "cifar")
    finally:
        pipeline.CACHE_LIMIT_BYTES = limit
    fill = data.num_train // batch + 2  # batches that fill the shuffle buffer

    def pipeline_rate():
        # A new iterator each round: one kept across rounds would fill its
        # prefetch buffer while the step is timed, and time only that buffer.
        batches_it = iter(data.train)
        for _ in range(fill):
            next(batches_it)
        return batch * batches / _time(lambda: next(batches_it), batches)

    pipeline_rate()  # fills the cache (a first pass)
    step = _bare_step(model_name, batch, size, data.num_classes)
    _time(step, 2)
    fed, used = [], []
    for r in range(FLAGS.rounds):
        for which in (("pipe", "step") if r % 2 == 0 else ("step", "pipe")):
            if which == "pipe":
                fed.append(pipeline_rate())
            else:
                used.append(batch * steps / _time(step, steps))
    name = case + ("_uncached" if uncached else "")
    return _row(name, batch, fed, used, ">= 3x", num_train=data.num_train)


class _Clock:
    """Two callbacks, first and last in fit's list, that time each epoch's
    parts: training steps, validation, epoch-end callbacks."""

    def __init__(self):
        import keras

        self.events = []
        clock = self

        class First(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                clock.events.append(("begin", epoch, time.perf_counter()))

            def on_test_begin(self, logs=None):
                clock.events.append(("val_begin", None, time.perf_counter()))

            def on_test_end(self, logs=None):
                clock.events.append(("val_end", None, time.perf_counter()))

            def on_epoch_end(self, epoch, logs=None):
                clock.events.append(("callbacks_begin", epoch, time.perf_counter()))

        class Last(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                clock.events.append(("end", epoch, time.perf_counter()))

        self.first, self.last = First(), Last()

    def epochs(self):
        """[{part: seconds}] per epoch, and the epoch-end times."""
        rows, row, ends = [], {}, []
        for name, _, t in self.events:
            if name == "begin":
                row = {"begin": t}
            elif name == "val_begin":
                row["train"] = t - row["begin"]
                row["val_begin"] = t
            elif name == "val_end":
                row["validation"] = t - row["val_begin"]
            elif name == "callbacks_begin":
                row["cb_begin"] = t
            elif name == "end":
                row["callbacks"] = t - row["cb_begin"]
                ends.append(t)
                rows.append(row)
        return rows, ends


def measure_train(root=None):
    """(b): keras_resnet.training.train vs the bare step, interleaved."""
    from keras_resnet.training import trainer

    batch, examples = 128, _quick(FLAGS.train_examples, 1280)
    epochs = FLAGS.epochs if not FLAGS.quick else 3
    original = trainer.make_callbacks
    step = _bare_step("resnet20", batch, 32, 10)
    _time(step, 2)
    trained, used, parts = [], [], {"train": [], "validation": [], "callbacks": [], "gap": []}
    for _ in range(FLAGS.train_rounds):
        # The bare step's rate: the mean of 10 steps before and 10 after the run.
        before = batch * 10 / _time(step, 10)
        clock = _Clock()

        def with_clock(run, model_dir, clock=clock):
            history, callbacks = original(run, model_dir)
            return history, [clock.first, *callbacks, clock.last]

        trainer.make_callbacks = with_clock
        try:
            with tempfile.TemporaryDirectory() as model_dir:
                config = trainer.Config(
                    model="resnet20", dataset="synthetic", batch_size=batch, epochs=epochs,
                    synthetic_examples=examples, model_dir=model_dir, verbose=0,
                )
                trainer.train(config)
        finally:
            trainer.make_callbacks = original
        used.append((before + batch * 10 / _time(step, 10)) / 2)
        rows, ends = clock.epochs()
        steps = examples // batch
        trained.append(batch * steps * (len(ends) - 1) / (ends[-1] - ends[0]))
        for row, previous_end in zip(rows[1:], ends):
            total = row["cb_begin"] - row["begin"] + row["callbacks"]
            for part in ("train", "validation", "callbacks"):
                parts[part].append(row[part] / total)
            parts["gap"].append((row["begin"] - previous_end) / total)
    cost = {f"{p}_pct": round(100 * statistics.median(v), 1) for p, v in parts.items()}
    return _row("train_end_to_end", batch, trained, used, ">= 0.9x", **cost)


def measure_fed_step():
    """(c): the training step fed by the CIFAR pipeline vs fed one fixed batch."""
    import tensorflow as tf

    import timing
    from keras_resnet.data import pipeline

    batch, steps = 128, _quick(40, 4)
    data = pipeline.make_datasets("synthetic", image_size=32, batch_size=batch, augment="cifar",
                         synthetic_examples=_quick(FLAGS.train_examples, 1280))
    model = _model("resnet20", batch, 32, data.num_classes)
    model.make_train_function()
    fixed = tf.data.Dataset.from_tensors(next(iter(data.train))).repeat()

    def steps_of(dataset):
        iterator = iter(dataset)  # one for all rounds, as fit keeps one for all epochs

        def run(n):
            for _ in range(n):
                # fit reads every step's logs (Keras' TensorBoard and
                # BackupAndRestore take per-batch calls), so a step waits
                # for the one before it, as this loop does.
                float(model.train_function(iterator)["loss"])
        return run

    rates = timing.interleave({"fed": steps_of(data.train), "fixed": steps_of(fixed)}, batch, steps,
                              rounds=FLAGS.rounds, warmup=3, settle_s=0.2)
    return _row("train_step_fed", batch, rates["fed"], rates["fixed"], ">= 0.9x")


# -------------------------------------------------------------------- main


def _print(rows):
    print(f"{'case':28s} {'batch':>5s} {'img/s':>9s} {'step img/s':>10s} {'ratio':>6s} {'range':>13s}  target")
    for r in rows:
        print(f"{r['case']:28s} {r['batch']:5d} {r['img_s']:9.1f} {r['step_img_s']:10.1f} "
              f"{r['ratio']:6.2f} {r['ratio_min']:6.2f}-{r['ratio_max']:<6.2f}  {r['target']}")
        costs = {k: v for k, v in r.items() if k.endswith("_pct")}
        if costs:
            print("    share of an epoch (%): " + ", ".join(f"{k[:-4]} {v}" for k, v in costs.items()))


def main(argv):
    del argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    importlib.import_module("timing")  # before TensorFlow loads: it asks for oneDNN
    if FLAGS.quick:
        FLAGS.rounds = min(FLAGS.rounds, 2)
    unknown = sorted(set(FLAGS.cases) - set(CASES))
    if unknown:
        raise app.UsageError(f"Unknown case {unknown[0]!r}; cases: {', '.join(CASES)}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in FLAGS.cases:
            if case == "cifar_png":
                root = _write_folder(os.path.join(tmp, case), _quick(2048, 1024), (32, 32), "png", 10)
                rows.append(measure_pipeline(case, root))
            elif case == "imagenet_jpeg":
                root = _write_folder(os.path.join(tmp, case), _quick(320, 160), (400, 500), "jpg")
                rows.append(measure_pipeline(case, root))
                if FLAGS.uncached:
                    rows.append(measure_pipeline(case, root, uncached=True))
            elif case == "train_step_fed":
                rows.append(measure_fed_step())
            else:
                rows.append(measure_train())
            print(json.dumps(rows[-1]), flush=True)
    _print(rows)
    if FLAGS.output_json:
        with open(FLAGS.output_json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    app.run(main)
