"""CPU speed of keras_resnet next to what a user would pick instead.

Rows (a fixed synthetic batch, float32 unless said; Keras on the TF backend):
  resnet20_train   keras_resnet.ResNet20(weight_decay=1e-4) compiled as train.py
                   compiles it (SGD momentum 0.9, categorical cross-entropy,
                   accuracy), one training step, vs PyTorch eager CIFAR
                   ResNet-20, option A, SGD momentum 0.9 weight_decay 1e-4
                   (benchmarks/torch_models.py), torch.set_num_threads(cores).
  resnet20_infer   the same two models' inference: `predict_on_batch` vs eager
                   under `torch.inference_mode()`.
  resnet50_train   keras_resnet.ResNet50(weights=None) vs
  resnet50_infer   keras.applications.ResNet50(weights=None), compiled alike.
  resnet20_evaluate  what evaluate.py runs per batch of a Keras model
                   (artefacts.keras_artefact(...).predict) vs `model.predict`
                   on the batch, as a user's evaluation loop would call it.
  resnet50_serve   what TF Serving would run (--serve_batch images a request,
                   default 1): the SavedModel that keras_resnet's export
                   writes of ResNet50(weights=None) (BN folded, weights frozen
                   into the graph), loaded back, its serving_default, vs
                   keras.applications.ResNet50(weights=None) exported by
                   Keras' own `model.export`. Both get random BN statistics
                   and biases first, as a trained net has: with weights=None
                   they are zeros and ones, and TensorFlow drops an add of a
                   constant zero bias, which changes which ops it fuses; and
  resnet50_serve+frozen  the same export of ours with frozen weights vs with
                   variables (freeze=False).
Variant rows of ours, added by flags:
  <case>+xla       ours compiled with jit_compile=True vs the case's reference
                   (--jit_compile).
  <case>+bfloat16  ours under the mixed_bfloat16 policy vs ours in float32
                   (--mixed_precision=bfloat16).
  <case>+folded    ours with BN folded into the convolutions
                   (keras_resnet.fold_batch_norm) vs ours unfolded, and
  <case>+folded/ref  the same folded model vs the case's reference, for the
                   inference cases (--fold_bn).
  <case>+bfloat16+folded  ours folded under mixed_bfloat16 vs ours folded in
                   float32 (both flags): TensorFlow fuses a float32 BN into
                   the convolution before it, a bfloat16 one it does not.
  resnet50_<train|infer>+torch  ours vs PyTorch eager ResNet-50, v1 as ours
                   (torch_models.ResNet50, the same 25,557,032 parameters),
                   what a PyTorch user would run instead (--torch_resnet50).
  <case>+torch_cl  ours vs the case's PyTorch model in the channels_last
                   memory format, which PyTorch recommends for CPU speed
                   (--torch_channels_last; training and inference cases).

How: each case runs in a fresh process of this script (one case: this one).
Every side of a case is built and warmed up first (tracing, XLA compiles
and first-call allocations stay out of the timings). Then each of `--rounds`
rounds runs `--steps` steps of every side, one side after the other (never two
at once), the order reversed every other round, with a pause before each side
so no thread pool of the previous one is still spinning. Keras trains through
`model.fit` over a repeated tf.data of the batch (steps_per_epoch = steps; or
`--keras_loop=train_on_batch`) and infers through `predict_on_batch`.

Reading: img/s are medians over rounds. ratio = ours / reference, the median
of the per-round ratios (above 1: ours is faster), with their min-max over the
rounds: a round's sides share the machine's state, so pairing cancels the slow
spells of a shared host; a range that straddles 1 means "not distinguishable".
`--rss` adds each side's peak resident memory, from a fresh process per side.
Run from the repository root:

  python benchmarks/bench_cpu.py                     # the six cases, ~9 min on 2 cores
  python benchmarks/bench_cpu.py --quick             # smoke run, tiny batches
  python benchmarks/bench_cpu.py --cases=resnet20_train --jit_compile \\
      --mixed_precision=bfloat16 --output_json=cpu.json
"""

import dataclasses
import datetime
import importlib
import importlib.metadata
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from absl import app
from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.dirname(os.path.abspath(__file__))]

import timing  # noqa: E402  (benchmarks/, put on the path above)

LEARNING_RATE, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 1e-4
SETTLE_S = 0.2  # Pause before each timed side: spinning OpenMP/Eigen threads go idle.


@dataclasses.dataclass(frozen=True)
class Case:
    family: str  # "resnet20" (32x32, 10 classes) or "resnet50" (224x224, 1000 classes)
    train: bool
    steps: int  # default steps per side per round: about 1-2 s each on 2 cores
    evaluate: bool = False  # evaluation's call per batch vs Keras' `predict`
    serve: bool = False  # exported SavedModels, loaded back


CASES = {
    "resnet20_train": Case("resnet20", train=True, steps=5),
    "resnet20_infer": Case("resnet20", train=False, steps=10),
    "resnet50_train": Case("resnet50", train=True, steps=2),
    "resnet50_infer": Case("resnet50", train=False, steps=2),
    "resnet20_evaluate": Case("resnet20", train=False, steps=10, evaluate=True),
    "resnet50_serve": Case("resnet50", train=False, steps=10, serve=True),
}
LABELS = {"ours": "ours", "ours_xla": "ours XLA", "ours_bf16": "ours bf16", "folded": "ours folded",
          "folded_bf16": "ours folded bf16"}
SERVE_FOLDER = None  # tempfile.TemporaryDirectory of the serving case's SavedModels

flags.DEFINE_list("cases", list(CASES), f"Cases to run, of {', '.join(CASES)}.")
flags.DEFINE_integer("resnet20_batch", 128, "ResNet-20 batch (32x32).", lower_bound=1)
flags.DEFINE_integer("resnet50_batch", 16, "ResNet-50 batch (224x224).", lower_bound=1)
flags.DEFINE_integer("serve_batch", 1, "resnet50_serve: images a request.", lower_bound=1)
flags.DEFINE_integer("rounds", 7, "Interleaved timing rounds per case.", lower_bound=1)
flags.DEFINE_integer("steps", None, "Steps per side per round (default: per case).",
                     lower_bound=1)
flags.DEFINE_integer("warmup", 2, "Untimed steps per side before timing.", lower_bound=1)
flags.DEFINE_enum("keras_loop", "fit", ["fit", "train_on_batch"], "Keras training path.")
flags.DEFINE_bool("jit_compile", False, "Add a row per case: ours with XLA.")
flags.DEFINE_enum("mixed_precision", "none", ["none", "bfloat16"],
                  "bfloat16: add a row per case, ours mixed_bfloat16 vs ours float32.")
flags.DEFINE_bool("fold_bn", False, "Add a row per inference case: BN folded vs unfolded.")
flags.DEFINE_bool("torch_resnet50", False,
                  "Add a row per ResNet-50 training and inference case: ours vs PyTorch eager.")
flags.DEFINE_bool("torch_channels_last", False,
                  "Add a row per training and inference case: ours vs PyTorch eager in "
                  "channels_last.")
flags.DEFINE_integer("inter_op_threads", 0,
                     "TensorFlow's inter-op threads (0: its default, one a core); 1 runs one op "
                     "at a time, as TF Serving's --tensorflow_inter_op_parallelism=1 does.",
                     lower_bound=0)
flags.DEFINE_bool("quick", False, "Smoke run: 2 rounds of 1 step, batches of 16 and 2.")
flags.DEFINE_bool("rss", False, "Also measure each side's peak RSS in a fresh process.")
flags.DEFINE_string("output_json", None, "Also write the environment and table here as JSON.")
flags.DEFINE_string("rss_probe", None, "Internal: CASE:SIDE, print that side's peak RSS (MiB).")
FLAGS = flags.FLAGS
# The flags a case's measurement depends on: printed, and passed on to this
# script's child processes.
SETTINGS = ("resnet20_batch", "resnet50_batch", "serve_batch", "rounds", "steps", "warmup",
            "keras_loop", "jit_compile", "mixed_precision", "fold_bn", "torch_resnet50",
            "torch_channels_last", "inter_op_threads", "rss")


def _batch_size(case: Case) -> int:
    if case.serve:
        return FLAGS.serve_batch
    return FLAGS.resnet20_batch if case.family == "resnet20" else FLAGS.resnet50_batch


def _data(case: Case):
    """The fixed batch: NHWC float32 images and integer labels."""
    import numpy as np

    size, classes = (32, 10) if case.family == "resnet20" else (224, 1000)
    rng = np.random.default_rng(0)
    images = rng.normal(size=(_batch_size(case), size, size, 3)).astype("float32")
    return images, rng.integers(0, classes, size=_batch_size(case)), classes


def _repeat(step: Callable[[], object]) -> Callable[[int], None]:
    """A side's runner: `run(n)` makes n calls of `step`."""
    def run(steps: int) -> None:
        for _ in range(steps):
            step()
    return run


def _torch_side(case: Case, channels_last: bool = False) -> Callable[[int], None]:
    import torch

    import torch_models

    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)
    model = torch_models.CifarResNet(20) if case.family == "resnet20" else torch_models.ResNet50()
    images, labels, _ = _data(case)
    placement = torch_models.Placement(channels_last=channels_last)
    if not case.train:
        return _repeat(torch_models.inference_step(model, images, placement=placement))
    return _repeat(torch_models.train_step(model, images, labels, learning_rate=LEARNING_RATE,
                                           momentum=MOMENTUM, weight_decay=WEIGHT_DECAY,
                                           placement=placement))


def _keras_model(case: Case, side: str):
    """The uncompiled model of one Keras side, built under its dtype policy."""
    import keras

    import keras_resnet

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16" if side == "ours_bf16" else "float32")
    try:
        if side == "reference" and not case.evaluate:
            return keras.applications.ResNet50(weights=None)
        if case.family == "resnet20":
            return keras_resnet.ResNet20(weight_decay=WEIGHT_DECAY)
        return keras_resnet.ResNet50(weights=None)
    finally:
        keras.config.set_dtype_policy(previous)


def _keras_side(case: Case, side: str) -> Callable[[int], None]:
    """One Keras side, compiled as train.py compiles its model."""
    import keras

    model = _keras_model(case, side)
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE, momentum=MOMENTUM),
                  loss=keras.losses.CategoricalCrossentropy(),
                  metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
                  jit_compile=side == "ours_xla")
    images, labels, classes = _data(case)
    if case.evaluate and side != "reference":
        from keras_resnet.evaluation import artefacts

        predict = artefacts.keras_artefact(model, "bench", None).predict
        return _repeat(lambda: predict(images))
    if case.evaluate:
        return _repeat(lambda: model.predict(images, batch_size=len(images), verbose=0))
    if not case.train:
        return _repeat(lambda: model.predict_on_batch(images))
    targets = keras.utils.to_categorical(labels, classes)
    if FLAGS.keras_loop == "train_on_batch":
        return _repeat(lambda: model.train_on_batch(images, targets))
    import tensorflow as tf

    # Without tf.data's autotuner: at the end of a fit call, the teardown of
    # its iterator waits out the autotuner's sleep, which stretched 5 steps
    # (3.4-3.9 s) to exactly 5.11 s in one run of three. A training run pays
    # that once; a call per round would pay it every round. One repeated batch
    # has nothing to tune.
    options = tf.data.Options()
    options.autotune.enabled = False
    dataset = tf.data.Dataset.from_tensors((images, targets)).repeat().with_options(options)
    return lambda steps: model.fit(dataset, epochs=1, steps_per_epoch=steps,
                                   shuffle=False, verbose=0)


def _folded_side(case: Case, side: str) -> Callable[[int], None]:
    """Our model with BN folded into its convolutions, inferring (under
    mixed_bfloat16 for side "folded_bf16")."""
    import keras_resnet

    model = _keras_model(case, "ours_bf16" if side == "folded_bf16" else "ours")
    folded = keras_resnet.fold_batch_norm(model)
    images, _, _ = _data(case)
    return _repeat(lambda: folded.predict_on_batch(images))


def _trained_like(model):
    """`model` with random BN statistics, scales, offsets and biases, as a
    trained model has (a new one has zeros and ones)."""
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = (w.shape for w in layer.get_weights())
            layer.set_weights([rng.uniform(0.5, 1.5, gamma), rng.normal(0, 0.1, beta),
                               rng.normal(0, 0.1, mean), rng.uniform(0.5, 1.5, variance)])
        elif getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape))
    return model


def _serving_side(case: Case, side: str) -> Callable[[int], None]:
    """One side of resnet50_serve: a SavedModel written to a temporary folder
    and loaded back, its serving_default called on the batch."""
    global SERVE_FOLDER
    import keras
    import tensorflow as tf

    import keras_resnet
    from keras_resnet.export import saved_model

    if SERVE_FOLDER is None:
        SERVE_FOLDER = tempfile.TemporaryDirectory(prefix="bench_serve_")
    if side == "reference":
        path = os.path.join(SERVE_FOLDER.name, "keras_applications")
        _trained_like(keras.applications.ResNet50(weights=None)).export(path, verbose=False)
    else:
        path = saved_model.export_saved_model(
            _trained_like(keras_resnet.ResNet50(weights=None)), SERVE_FOLDER.name, name=side,
            eval_transform="center", freeze=side == "ours").path
    serve = tf.saved_model.load(path).signatures["serving_default"]
    (input_name,) = serve.structured_input_signature[1]
    images = {input_name: tf.constant(_data(case)[0])}
    return _repeat(lambda: serve(**images))


def _build_side(case: Case, side: str) -> Callable[[int], None]:
    if case.serve:
        return _serving_side(case, side)
    if side in ("torch", "torch_cl") or (side == "reference" and case.family == "resnet20"
                                         and not case.evaluate):
        return _torch_side(case, channels_last=side == "torch_cl")
    if side in ("folded", "folded_bf16"):
        return _folded_side(case, side)
    return _keras_side(case, side)


def _pairs(name: str, case: Case) -> list[tuple[str, str, str]]:
    """The rows of a case: (row name, ours side, reference side)."""
    pairs = [(name, "ours", "reference")]
    if case.serve:
        return pairs + [(f"{name}+frozen", "ours", "variables")]
    if FLAGS.jit_compile:
        pairs.append((f"{name}+xla", "ours_xla", "reference"))
    if FLAGS.mixed_precision == "bfloat16":
        pairs.append((f"{name}+bfloat16", "ours_bf16", "ours"))
    if FLAGS.torch_resnet50 and case.family == "resnet50" and not case.evaluate:
        pairs.append((f"{name}+torch", "ours", "torch"))
    if FLAGS.torch_channels_last and not case.evaluate:
        pairs.append((f"{name}+torch_cl", "ours", "torch_cl"))
    if FLAGS.fold_bn and not case.train and not case.evaluate:
        pairs.append((f"{name}+folded", "folded", "ours"))
        pairs.append((f"{name}+folded/ref", "folded", "reference"))
        if FLAGS.mixed_precision == "bfloat16":
            pairs.append((f"{name}+bfloat16+folded", "folded_bf16", "folded"))
    return pairs


def _reference_label(case: Case, side: str) -> str:
    if side == "ours":
        return "ours float32"
    if side == "variables":
        return "ours, variables"
    if side == "folded":
        return "ours folded f32"
    if side == "torch":
        return "PyTorch eager"
    if side == "torch_cl":
        return "PyTorch eager CL"
    if case.serve:
        return "Keras model.export"
    if case.evaluate:
        return "Keras predict"
    return "PyTorch eager" if case.family == "resnet20" else "keras.applications"


def _row(row: str, case: Case, ours: str, reference: str, rates) -> dict:
    return {"row": row, "ours": LABELS[ours], "reference": _reference_label(case, reference),
            "batch": _batch_size(case), **timing.compare(rates[ours], rates[reference])}


def _measure(name: str, case: Case) -> list[dict]:
    """All rows of one case, its sides timed together in the same rounds."""
    pairs = _pairs(name, case)
    sides = list(dict.fromkeys(side for _, *both in pairs for side in both))
    # Build every side before any warm-up: a later build (set_random_seed,
    # graph building) would disturb an earlier side's warmed caches.
    runs = {side: _build_side(case, side) for side in sides}
    rates = timing.interleave(runs, _batch_size(case), FLAGS.steps or case.steps,
                              rounds=FLAGS.rounds, warmup=FLAGS.warmup, settle_s=SETTLE_S)
    rows = [_row(row, case, ours, reference, rates) for row, ours, reference in pairs]
    if FLAGS.rss:
        mib = {side: _peak_rss_mib(name, side) for side in sides}
        for row, (_, ours, reference) in zip(rows, pairs):
            row["ours_rss_mib"], row["reference_rss_mib"] = mib[ours], mib[reference]
    return rows


def _vm_hwm_mib() -> float:
    """This process's peak RSS. Not getrusage's ru_maxrss: on Linux a child
    inherits the parent's high-water mark at fork, and exec keeps it."""
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024  # kB


def _peak_rss_mib(name: str, side: str) -> float:
    """Peak RSS of a fresh process that builds one side and runs its warm-up."""
    out = subprocess.run(_child_argv(f"--rss_probe={name}:{side}"), check=True,
                         capture_output=True, text=True).stdout
    return round(float(out.strip().splitlines()[-1]), 1)


def _child_argv(*extra: str) -> list[str]:
    """The command line of a child process of this script, with these settings."""
    argv = [sys.executable, os.path.abspath(__file__), *extra]
    return argv + [f"--{flag}={getattr(FLAGS, flag)}" for flag in SETTINGS
                   if getattr(FLAGS, flag) is not None]


def _measure_apart(name: str) -> list[dict]:
    """The rows of case `name`, measured by a fresh process of this script,
    so that no case runs with the threads, caches and memory that the cases
    before it left, as none would in use."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "rows.json")
        subprocess.run(_child_argv(f"--cases={name}", f"--output_json={path}"), check=True,
                       stdout=subprocess.DEVNULL)
        with open(path) as f:
            return json.load(f)["rows"]


def _environment() -> dict:
    """What RESULTS.md quotes: machine, versions, date and command."""
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
    versions = {}
    for package in ("tensorflow", "keras", "torch"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {
        "cpu": fields.get("Model name", platform.processor()).strip(),
        "cores": os.cpu_count(), "avx512_bf16": "avx512_bf16" in fields.get("Flags", ""),
        "load_average_1min": round(os.getloadavg()[0], 2),  # above `cores`: a busy host.
        "python": platform.python_version(), **versions,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join(["python", *sys.argv]),
    }


def _print_table(rows: list[dict]) -> None:
    rss = any("ours_rss_mib" in row for row in rows)
    print(f"{'row':<24} {'ours':<11} {'reference':<18} {'batch':>5} {'ours img/s':>10} "
          f"{'ref img/s':>10} {'ratio':>6} {'range':>11}" + (" ours MiB  ref MiB" if rss else ""))
    for row in rows:
        line = (f"{row['row']:<24} {row['ours']:<11} {row['reference']:<18} {row['batch']:>5} "
                f"{row['ours_img_s']:>10.2f} {row['reference_img_s']:>10.2f} "
                f"{row['ratio']:>6.3f} {row['ratio_min']:>5.2f}-{row['ratio_max']:<5.2f}")
        if rss:
            line += f" {row['ours_rss_mib']:>8.0f} {row['reference_rss_mib']:>8.0f}"
        print(line)


def _settings() -> dict:
    if FLAGS.quick:
        FLAGS.rounds, FLAGS.steps, FLAGS.warmup = 2, 1, 1
        FLAGS.resnet20_batch, FLAGS.resnet50_batch = 16, 2
    return {name: getattr(FLAGS, name) for name in ("cases", *SETTINGS, "quick")}


def main(argv):
    del argv
    if FLAGS.inter_op_threads:
        # TensorFlow reads it when it starts, before any op (the package
        # itself is imported first by every side; see _keras_side).
        os.environ["TF_NUM_INTEROP_THREADS"] = str(FLAGS.inter_op_threads)
    if FLAGS.rss_probe:
        name, side = FLAGS.rss_probe.split(":")
        _build_side(CASES[name], side)(FLAGS.warmup)
        print(_vm_hwm_mib())
        return
    unknown = sorted(set(FLAGS.cases) - set(CASES))
    if unknown:
        raise app.UsageError(f"Unknown --cases {unknown}; accepted: {', '.join(CASES)}.")
    settings, environment = _settings(), _environment()
    for key, value in {**environment, **settings}.items():
        print(f"{key}: {value}")
    rows = []
    names = [name for name in CASES if name in FLAGS.cases]
    for name in names:
        start = time.perf_counter()
        rows += _measure_apart(name) if len(names) > 1 else _measure(name, CASES[name])
        print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)
    print("\nratio = ours / reference img/s, median of per-round ratios (above 1: ours "
          "faster); range: min-max over rounds.\n")
    _print_table(rows)
    if FLAGS.output_json:
        from keras_resnet import files

        report = {"environment": environment, "settings": settings, "rows": rows}
        files.write_text(FLAGS.output_json, json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    app.run(main)
