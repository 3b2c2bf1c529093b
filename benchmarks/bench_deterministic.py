"""What `train.py --deterministic` costs: the training step with TensorFlow's
op determinism against the same step without it.

Op determinism is process-wide and cannot be turned off again, so each side is
a worker process of its own: the model and batch train.py's run would build
(`timing.training_model`: ResNet-20, the cifar_paper recipe, batch 128,
32x32), trained with `train_on_batch` on one fixed batch. The coordinator
warms both up, then times them in interleaved rounds, one side at a time while
the other waits, in an order reversed every other round (timing.interleave);
the ratio (deterministic / default img/s) is taken within each round.

  python benchmarks/bench_deterministic.py                # about 2 minutes on 2 cores
  python benchmarks/bench_deterministic.py --rounds=3 --steps=5 --output_json=d.json
"""

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import timing  # noqa: E402  (first: it asks for oneDNN before TensorFlow loads)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH, CLASSES = 128, 10


def worker(deterministic: bool) -> None:
    """Answers each line N on stdin with the seconds N training steps took."""
    import tensorflow as tf

    from keras_resnet.training import run as run_lib

    if deterministic:
        tf.config.experimental.enable_op_determinism()
    config = run_lib.Config(model="resnet20", recipe="cifar_paper", batch_size=BATCH,
                            dataset="synthetic", deterministic=deterministic)
    model = timing.training_model(config, CLASSES)
    images, labels = timing.fixed_batch(BATCH, 32, CLASSES)
    print("ready", flush=True)
    for line in sys.stdin:
        start = time.perf_counter()
        for _ in range(int(line)):
            model.train_on_batch(images, labels)
        print(time.perf_counter() - start, flush=True)


def _side(deterministic: bool):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker",
                             f"--deterministic={int(deterministic)}"], env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError(f"worker (deterministic={deterministic}) did not start")

    def run(steps: int) -> None:
        proc.stdin.write(f"{steps}\n")
        proc.stdin.flush()
        float(proc.stdout.readline())

    return proc, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--deterministic", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20, help="training steps a side a round")
    parser.add_argument("--output_json", default=None)
    args = parser.parse_args()
    if args.worker:
        return worker(bool(args.deterministic))
    sides = {name: _side(name == "deterministic") for name in ("deterministic", "default")}
    try:
        rates = timing.interleave({name: run for name, (_, run) in sides.items()}, BATCH,
                                  args.steps, rounds=args.rounds, warmup=3)
    finally:
        for proc, _ in sides.values():
            proc.stdin.close()
            proc.wait(timeout=60)
    result = {"case": "resnet20_train_step_batch128", **timing.compare(
        rates["deterministic"], rates["default"])}
    print(json.dumps(result, indent=2))
    if args.output_json:
        with open(args.output_json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
