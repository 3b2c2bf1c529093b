"""Where a CPU step's time goes, by oneDNN primitive: the profile behind RESULTS.md's misses.

Runs `--steps` steps of one model (after a warm-up) in a fresh process with
ONEDNN_VERBOSE=1, which oneDNN reads when it loads, and sums the execution
times it logs per kind of primitive: convolutions by kernel size and
direction (forward, backward data, backward weights), batch normalization,
pooling, reorders (layout changes). It prints each kind's milliseconds a step,
its share of all oneDNN time, and the conv kinds' GFLOP/s.

The profiled process runs one op at a time (`inter_op_parallelism_threads=1`;
each op still uses every core). TensorFlow's default runs independent ops side
by side, two on two cores, and then each one's logged time includes waiting
for the cores the other holds: a conv's weight and input gradients, run
together, would each look half as fast. The default is no faster on this
host (ResNet-50 training 2.73-3.28 img/s either way). Ops that TensorFlow runs
without oneDNN (element-wise ops, additions, keras.applications' batch
normalization, which Keras computes op by op) are not in the log: the step's
wall time, also printed, less the oneDNN sum is their time.

  python benchmarks/profile_cpu.py --model=ours --train             # ResNet-50, batch 16
  python benchmarks/profile_cpu.py --model=keras.applications --train
  python benchmarks/profile_cpu.py --model=ours --fold_bn           # inference, BN folded
  python benchmarks/profile_cpu.py --mixed_precision=bfloat16       # either, under mixed_bfloat16
"""

import collections
import os
import re
import subprocess
import sys
import time

from absl import app
from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARK = "--- profiled steps ---"

flags.DEFINE_enum("model", "ours", ["ours", "keras.applications"], "Which ResNet-50.")
flags.DEFINE_bool("train", False, "Profile a training step (SGD momentum); else inference.")
flags.DEFINE_bool("fold_bn", False, "Inference of ours with BN folded into the convolutions.")
flags.DEFINE_enum("mixed_precision", None, ["bfloat16"], "Keras' mixed_bfloat16 policy for either model.")
flags.DEFINE_integer("batch", 16, "Batch of 224x224 images.", lower_bound=1)
flags.DEFINE_integer("steps", 2, "Profiled steps (after 3 of warm-up).", lower_bound=1)
flags.DEFINE_bool("child", False, "Internal: run the steps and print oneDNN's log.")
FLAGS = flags.FLAGS


def _run_steps() -> None:
    """The child: build, warm up, mark the log, run the profiled steps."""
    sys.path.insert(0, REPO)
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as the programs do, before TensorFlow
    import keras_resnet

    import keras
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_inter_op_parallelism_threads(1)
    if FLAGS.mixed_precision:
        keras.mixed_precision.set_global_policy(f"mixed_{FLAGS.mixed_precision}")
    if FLAGS.model == "ours":
        model = keras_resnet.ResNet50(weights=None)
        if FLAGS.fold_bn:
            model = keras_resnet.fold_batch_norm(model)
    else:
        model = keras.applications.ResNet50(weights=None)
    rng = np.random.default_rng(0)
    images = rng.normal(size=(FLAGS.batch, 224, 224, 3)).astype("float32")
    labels = rng.integers(0, 1000, size=FLAGS.batch)
    if FLAGS.train:
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                      loss="sparse_categorical_crossentropy")
        step = lambda: model.train_on_batch(images, labels)  # noqa: E731
    else:
        step = lambda: model.predict_on_batch(images)  # noqa: E731
    for _ in range(3):
        step()
    print(MARK, flush=True)
    start = time.perf_counter()
    for _ in range(FLAGS.steps):
        step()
    print(f"wall_s_per_step {(time.perf_counter() - start) / FLAGS.steps:.4f}", flush=True)


def _kind(fields: list[str]) -> tuple[str, float]:
    """A log line's kind of primitive, and its multiply-adds if it is a convolution."""
    primitive, propagation, shape = fields[5], fields[7], fields[-2]
    if primitive != "convolution":
        return f"{primitive} {propagation}".replace(" undef", ""), 0.0
    dims = dict(re.findall(r"([a-z]+)(\d+)", shape))
    kernel = f"{dims['kh']}x{dims['kw']}" if "kw" in dims else dims["kh"]
    macs = (int(dims["mb"]) * int(dims["ic"]) * int(dims["oc"]) * int(dims["kh"])
            * int(dims.get("kw", dims["kh"])) * int(dims["oh"]) * int(dims.get("ow", dims["oh"])))
    direction = {"forward_training": "forward", "forward_inference": "forward"}.get(
        propagation, propagation)
    return f"conv {kernel} {direction}", float(macs)


def _summarize(log: str) -> None:
    profiled = log.split(MARK, 1)[1]
    ms, macs, calls = collections.Counter(), collections.Counter(), collections.Counter()
    for line in profiled.splitlines():
        fields = line.split(",")
        if line.startswith("onednn_verbose") and len(fields) > 8 and fields[3] == "exec":
            kind, mac = _kind(fields)
            ms[kind] += float(fields[-1]) / FLAGS.steps
            macs[kind] += mac / FLAGS.steps
            calls[kind] += 1
    wall_ms = 1000 * float(re.search(r"wall_s_per_step (\S+)", profiled).group(1))
    total = sum(ms.values())
    print(f"{FLAGS.model}, {'training' if FLAGS.train else 'inference'}"
          f"{', BN folded' if FLAGS.fold_bn else ''}, batch {FLAGS.batch}: wall {wall_ms:.0f} ms "
          f"a step, oneDNN primitives {total:.0f} ms a step\n")
    print(f"{'kind':<34} {'calls':>5} {'ms/step':>8} {'share':>6} {'GFLOP/s':>8}")
    for kind, kind_ms in ms.most_common():
        rate = f"{2 * macs[kind] / kind_ms / 1e6:8.1f}" if macs[kind] else ""
        print(f"{kind:<34} {calls[kind] // FLAGS.steps:>5} {kind_ms:>8.1f} "
              f"{100 * kind_ms / total:>5.1f}% {rate}")


def main(argv):
    del argv
    if FLAGS.fold_bn and (FLAGS.train or FLAGS.model != "ours"):
        raise app.UsageError("--fold_bn profiles the inference of --model=ours only.")
    if FLAGS.child:
        _run_steps()
        return
    argv = [sys.executable, os.path.abspath(__file__), "--child", f"--model={FLAGS.model}",
            f"--train={FLAGS.train}", f"--fold_bn={FLAGS.fold_bn}", f"--batch={FLAGS.batch}",
            f"--steps={FLAGS.steps}"]
    if FLAGS.mixed_precision:
        argv.append(f"--mixed_precision={FLAGS.mixed_precision}")
    env = {**os.environ, "ONEDNN_VERBOSE": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    child = subprocess.run(argv, env=env, capture_output=True, text=True)
    if child.returncode or MARK not in child.stdout:
        sys.exit(f"the profiled process failed (exit {child.returncode}): "
                 f"{child.stderr.strip().splitlines()[-1:]}")
    _summarize(child.stdout)


if __name__ == "__main__":
    app.run(main)
