"""GPU speed of keras_resnet on the JAX backend next to what a user would pick instead.

It is written for GPU machines with JAX, PyTorch, torchvision, flax and optax,
but no TensorFlow: Keras runs there on the JAX backend (`../shared/GPU.md` says how
to bring its wheels). Every side trains or infers on a synthetic batch already
on the card; the sides of a case are timed in the same interleaved rounds
(`timing.py`). Cases, in the order they run:

  r50_train_<B>  ResNet-50, bfloat16 mixed precision, batch B (--r50_batches):
    ours           keras_resnet.ResNet50(weight_decay=1e-4), SGD momentum 0.9,
                   the step jitted by XLA, trained by `model.fit`, which
                   queues steps without waiting for them
    ours_tob       the same model through `train_on_batch`, which returns each
                   step's loss to Python and so waits for every step (first
                   batch only)
    kapps          keras.applications.ResNet50 by `model.fit`, likewise
    flax           a plain Flax ResNet-50 v1.5 (flax_models.py): bf16 convs and
                   BN, optax SGD, its own jitted step
    torch          torchvision's ResNet-50 eager, channels_last, bf16 autocast
    torch_compile  the same under torch.compile
  r20_train      ResNet-20 (option A), float32, batch --r20_batch: ours by
                 `model.fit` vs PyTorch eager (torch_models.CifarResNet), and
                 torch.compile
  r50_infer      ResNet-50 inference, bfloat16, batch --infer_batch: ours
                 `predict_on_batch` vs torchvision eager under autocast, each
                 bringing its logits to the host every batch

Rows: ours / each reference, the median of per-round ratios with its min-max;
the speed targets are in the last column. XLA compiles (~15 s per ResNet-50)
and torch.compile (~45 s) fall in the warm-up, outside the timings. A side
that fails to build (out of memory, no torchvision) is reported and left out;
once --budget_s is spent, no new round or case starts.

  KERAS_BACKEND=jax python benchmarks/bench_gpu.py --output_json=$OUT/gpu.json
  python benchmarks/bench_gpu.py --small        # CPU smoke run, tiny sizes (~5 min)
  python benchmarks/bench_gpu.py --xla_cost --r50_batches=8   # the graphs' cost, on a CPU
"""

import dataclasses
import datetime
import gc
import importlib.metadata
import json
import os
import shlex
import sys
import time
import traceback
from collections.abc import Callable

os.environ.setdefault("KERAS_BACKEND", "jax")
# JAX takes 75% of the card by default; PyTorch, in the same process, needs the rest.
os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.5")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.dirname(os.path.abspath(__file__))]

import timing  # noqa: E402  (benchmarks/, put on the path above)

LEARNING_RATE, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 1e-4

flags.DEFINE_list("cases", ["r50_train", "r20_train", "r50_infer"], "Cases to run.")
flags.DEFINE_list("r50_batches", ["256", "512"], "ResNet-50 training batches, one case each.")
flags.DEFINE_integer("r20_batch", 128, "ResNet-20 training batch (32x32).", lower_bound=1)
flags.DEFINE_integer("infer_batch", 256, "ResNet-50 inference batch.", lower_bound=1)
flags.DEFINE_integer("rounds", 5, "Interleaved timing rounds per case.", lower_bound=1)
flags.DEFINE_integer("warmup", 3, "Untimed steps per side (the first compiles).", lower_bound=1)
flags.DEFINE_float("budget_s", 420, "No round or case starts after this many seconds.")
flags.DEFINE_bool("xla_cost", False,
                  "Instead of timing: XLA's cost analysis (FLOPs, bytes accessed) of one "
                  "ResNet-50 training step of ours, keras.applications and Flax, at the first "
                  "--r50_batches; on whatever device JAX has.")
flags.DEFINE_bool("small", False, "CPU smoke run: 64x64 ResNet-50 at batch 2, 2 rounds.")
flags.DEFINE_string("output_json", None, "Also write the environment and table here as JSON.")
FLAGS = flags.FLAGS

CASE_NAMES = ("r50_train", "r20_train", "r50_infer")
R50_SIDES = ("ours", "ours_tob", "kapps", "flax", "torch", "torch_compile")
LABELS = {"ours": "ours (fit)", "ours_tob": "ours train_on_batch", "kapps": "keras.applications",
          "flax": "Flax ResNet-50 v1.5", "torch": "PyTorch eager", "torch_compile": "torch.compile"}


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    family: str  # "resnet50" (224x224, 1000 classes) or "resnet20" (32x32, 10 classes)
    train: bool
    batch: int
    bfloat16: bool  # Keras' mixed_bfloat16 policy; autocast for PyTorch
    steps: int  # per side per round: about a second on an H100
    sides: tuple[str, ...]
    rows: tuple[tuple[str, str], ...]  # (reference side, the speed target for ours / it)

    @property
    def size(self) -> int:
        if self.family == "resnet20":
            return 32
        return 64 if FLAGS.small else 224

    @property
    def classes(self) -> int:
        return 10 if self.family == "resnet20" else 1000


def _cases() -> list[Case]:
    def steps(n: int) -> int:
        return 2 if FLAGS.small else n

    cases = []
    if "r50_train" in FLAGS.cases:
        for index, batch in enumerate(FLAGS.r50_batches):
            # train_on_batch's cost is measured at the first batch only: its compile
            # would take the device time of a later case.
            sides = R50_SIDES if index == 0 else tuple(s for s in R50_SIDES if s != "ours_tob")
            cases.append(Case(
                f"r50_train_{batch}", "resnet50", True, int(batch), True, steps(20), sides,
                (("torch_compile", ">= 1.1x"), ("flax", ">= 1.0x"), ("kapps", ""),
                 ("torch", ""), ("ours_tob", "(what waiting for each step costs)"))))
    if "r20_train" in FLAGS.cases:
        cases.append(Case("r20_train", "resnet20", True, FLAGS.r20_batch, False, steps(50),
                          ("ours", "torch", "torch_compile"),
                          (("torch", ">= 1.2x"), ("torch_compile", ""))))
    if "r50_infer" in FLAGS.cases:
        cases.append(Case("r50_infer", "resnet50", False, FLAGS.infer_batch, True, steps(40),
                          ("ours", "torch"), (("torch", ">= 1.3x"),)))
    return cases


def _data(case: Case):
    import numpy as np

    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (case.batch, case.size, case.size, 3)).astype("float32")
    return images, rng.integers(0, case.classes, case.batch).astype("int32")


def _keras_model(case: Case, side: str):
    import keras

    import keras_resnet

    keras.config.set_dtype_policy("mixed_bfloat16" if case.bfloat16 else "float32")
    try:
        keras.utils.set_random_seed(0)
        shape = (case.size, case.size, 3)
        if side == "kapps":
            return keras.applications.ResNet50(weights=None, input_shape=shape)
        builder = keras_resnet.ResNet50 if case.family == "resnet50" else keras_resnet.ResNet20
        return builder(weights=None, input_shape=shape, classes=case.classes,
                       weight_decay=WEIGHT_DECAY if case.train else 0.0)
    finally:
        keras.config.set_dtype_policy("float32")  # a layer reads the policy when built


def _keras_side(case: Case, side: str) -> Callable[[int], object]:
    import jax
    import keras

    model = _keras_model(case, side)
    images, labels = _data(case)
    x, y = jax.device_put(images), jax.device_put(labels)
    if not case.train:
        return lambda steps: [model.predict_on_batch(x) for _ in range(steps)]
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE, momentum=MOMENTUM),
                  loss="sparse_categorical_crossentropy", jit_compile=True)
    if side == "ours_tob":
        return lambda steps: [model.train_on_batch(x, y) for _ in range(steps)]

    def batches():
        while True:
            yield x, y

    def run(steps: int) -> None:
        model.fit(batches(), steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
        jax.block_until_ready(model.trainable_variables[0].value)

    return run


def _flax_side(case: Case) -> Callable[[int], object]:
    import jax

    import flax_models

    images, labels = _data(case)
    step = flax_models.train_step(jax.device_put(images), jax.device_put(labels), case.classes,
                                  learning_rate=LEARNING_RATE, momentum=MOMENTUM,
                                  weight_decay=WEIGHT_DECAY)
    return lambda steps: jax.block_until_ready([step() for _ in range(steps)])


def _torch_side(case: Case, side: str) -> Callable[[int], object]:
    import torch

    import torch_models

    torch.manual_seed(0)
    cuda = torch.cuda.is_available()
    torch.backends.cudnn.benchmark = True
    placement = torch_models.Placement("cuda" if cuda else "cpu", channels_last=True,
                                       bfloat16=case.bfloat16, compile=side == "torch_compile")
    if case.family == "resnet50":
        model = torch_models.resnet50(case.classes)
    else:
        model = torch_models.CifarResNet(20, case.classes)
    images, labels = _data(case)
    if case.train:
        step = torch_models.train_step(model, images, labels, learning_rate=LEARNING_RATE,
                                       momentum=MOMENTUM, weight_decay=WEIGHT_DECAY,
                                       placement=placement)
    else:
        step = torch_models.inference_step(model, images, placement=placement)

    def run(steps: int) -> None:
        for _ in range(steps):
            step()
        if cuda:
            torch.cuda.synchronize()

    return run


def _build(case: Case, side: str) -> Callable[[int], object]:
    if side == "flax":
        return _flax_side(case)
    if side.startswith("torch"):
        return _torch_side(case, side)
    return _keras_side(case, side)


def _xla_cost(case: Case) -> list[dict]:
    """FLOPs and bytes accessed of one training step of each JAX side, as XLA compiled it."""
    import jax
    import keras

    import flax_models

    images, labels = _data(case)
    x, y = jax.device_put(images), jax.device_put(labels)
    compiled = {}
    for side in ("ours", "kapps"):
        model = _keras_model(case, side)
        model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE, momentum=MOMENTUM),
                      loss="sparse_categorical_crossentropy", jit_compile=True)
        model.train_on_batch(x[:1], y[:1])  # builds the optimizer's and metrics' variables
        # The state of Keras' JAX train step, in the order `fit` passes it.
        state = tuple([v.value for v in variables] for variables in (
            model.trainable_variables, model.non_trainable_variables,
            model.optimizer.variables, model.metrics_variables))
        compiled[side] = jax.jit(model.train_step).lower(state, (x, y)).compile()
    step, state = flax_models.init_step(x, case.classes, learning_rate=LEARNING_RATE,
                                        momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    compiled["flax"] = step.lower(state, x, y).compile()
    rows = []
    for side, executable in compiled.items():
        cost = executable.cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        rows.append({"case": case.name, "batch": case.batch, "side": side,
                     "gflop": round(cost["flops"] / 1e9, 1),
                     "gb_accessed": round(cost["bytes accessed"] / 1e9, 2)})
        print(f"{side:<6} batch {case.batch}: {rows[-1]['gflop']:8.1f} GFLOP "
              f"{rows[-1]['gb_accessed']:7.2f} GB accessed", flush=True)
    return rows


def _error(exc: BaseException) -> str:
    first_line = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first_line[:200]}"


def _measure(case: Case, deadline: float) -> tuple[list[dict], dict]:
    """The rows of one case, and the sides that failed (side -> error)."""
    runs, failed = {}, {}
    for side in case.sides:
        try:
            runs[side] = _build(case, side)
            runs[side](FLAGS.warmup)  # compiles in the warm-up, not in a timed round
        except Exception as exc:  # a side that cannot run must not hide the others
            traceback.print_exc()
            failed[side] = _error(exc)
            runs.pop(side, None)
    if "ours" not in runs:
        return [], failed
    try:
        rates = timing.interleave(runs, case.batch, case.steps, rounds=FLAGS.rounds, warmup=1,
                                  deadline=deadline)
    except Exception as exc:  # out of memory in a round: the later cases still run
        traceback.print_exc()
        return [], {**failed, "rounds": _error(exc)}
    rows = []
    for reference, target in case.rows:
        if reference in runs:
            rows.append({"case": case.name, "batch": case.batch, "ours": LABELS["ours"],
                         "reference": LABELS[reference], "target": target,
                         **timing.compare(rates["ours"], rates[reference])})
    return rows, failed


def _release() -> None:
    """Frees the last case's models and device buffers before the next case."""
    import keras

    keras.backend.clear_session()
    gc.collect()
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _environment() -> dict:
    import jax

    versions = {}
    for package in ("jax", "jaxlib", "keras", "flax", "optax", "torch", "torchvision"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {
        "device": jax.devices()[0].device_kind, "devices": len(jax.devices()),
        "python": sys.version.split()[0], **versions,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join(["python", *sys.argv]),
    }


def _print_table(rows: list[dict]) -> None:
    print(f"{'case':<15} {'batch':>5} {'reference':<22} {'ours img/s':>10} {'ref img/s':>10} "
          f"{'ratio':>6} {'range':>11}  target")
    for row in rows:
        print(f"{row['case']:<15} {row['batch']:>5} {row['reference']:<22} "
              f"{row['ours_img_s']:>10.1f} {row['reference_img_s']:>10.1f} {row['ratio']:>6.3f} "
              f"{row['ratio_min']:>5.2f}-{row['ratio_max']:<5.2f}  {row['target']}")


def main(argv):
    del argv
    unknown = sorted(set(FLAGS.cases) - set(CASE_NAMES))
    if unknown:
        raise app.UsageError(f"Unknown --cases {unknown}; accepted: {', '.join(CASE_NAMES)}.")
    bad = [b for b in FLAGS.r50_batches if not b.isdigit() or int(b) < 1]
    if bad:
        raise app.UsageError(f"--r50_batches must be positive integers. Received: {bad}")
    import keras

    if keras.backend.backend() != "jax":
        raise app.UsageError(f"bench_gpu.py measures the JAX backend; KERAS_BACKEND is "
                             f"{keras.backend.backend()!r}. Unset it or set it to 'jax'.")
    if FLAGS.small:
        FLAGS.r50_batches, FLAGS.r20_batch, FLAGS.infer_batch = ["2"], 8, 2
        FLAGS.rounds, FLAGS.warmup = 2, 1
    start = time.monotonic()
    deadline = start + FLAGS.budget_s
    environment = _environment()
    for key, value in environment.items():
        print(f"{key}: {value}", flush=True)
    if FLAGS.xla_cost:
        _write_report({"environment": environment,
                       "xla_cost": _xla_cost(next(c for c in _cases() if c.family == "resnet50"))})
        return
    report = {"environment": environment, "rows": [], "failed": {}, "skipped": []}
    for case in _cases():
        if time.monotonic() > deadline:
            report["skipped"].append(case.name)
            continue
        case_start = time.monotonic()
        rows, failed = _measure(case, deadline)
        report["rows"] += rows
        report["failed"].update({f"{case.name}:{side}": error for side, error in failed.items()})
        report["seconds"] = round(time.monotonic() - start)
        print(f"{case.name}: {time.monotonic() - case_start:.0f} s", flush=True)
        _print_table(rows)
        _write_report(report)  # after every case: a run cut short by its timeout keeps them
        _release()
    print("\nratio = ours / reference img/s, median of per-round ratios (above 1: ours "
          "faster); range: min-max over rounds.\n")
    _print_table(report["rows"])
    for side, error in report["failed"].items():
        print(f"failed: {side}: {error}")
    if report["skipped"]:
        print(f"skipped (--budget_s={FLAGS.budget_s:g} spent): {', '.join(report['skipped'])}")


def _write_report(report: dict) -> None:
    if FLAGS.output_json:
        from keras_resnet import files

        files.write_text(FLAGS.output_json, json.dumps(report, indent=2) + "\n")

if __name__ == "__main__":
    app.run(main)
