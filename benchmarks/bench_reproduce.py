"""What the paper's experiments cost at `--scale=quick` on the host it runs on.

Where no CIFAR-10 or ImageNet is at hand, a quick experiment cannot be run
whole; its cost can be measured all the same, as it does not depend on the
pixels. For every training run of `fig6` and
`fig4` at the quick scale (the runs `python -m keras_resnet.reproduce EXP
--scale=quick` trains: their model, batch, image size and steps, from the
experiment's own specs), this times the model's training step as train.py
builds and compiles it (`train_on_batch` on one fixed batch), all the runs'
models in interleaved rounds (benchmarks/timing.py), and gives

    minutes = steps x batch / (step img/s x end_to_end) / 60

where `end_to_end` is the whole train.py run's rate over the bare step's
(validation each epoch, checkpoints, backup, the input pipeline):
bench_input.py's `train_end_to_end` measured 0.94-0.96x on the AMX host
(benchmarks/RESULTS.md, 2026-12-02), so the default is 0.95. Scoring the test split once
at the end (10,000 CIFAR images, or the fig4 folder's) takes seconds and is
left out. `table6` and `fig7` reuse `fig6`'s runs, `table2` `fig4`'s.

Run from the repository root with nothing else running:

  python benchmarks/bench_reproduce.py                  # about 5 minutes on 2 cores
  python benchmarks/bench_reproduce.py --rounds=1 --steps=2 --experiments=fig6   # smoke
"""

import json
import os
import statistics
import sys
import tempfile
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import timing  # noqa: E402  (benchmarks/, put on the path above; before TensorFlow loads)

FLAGS = flags.FLAGS
flags.DEFINE_list("experiments", ["fig6", "fig4"], "Training experiments to cost.")
flags.DEFINE_integer("steps", 6, "Training steps a side makes in a round.", lower_bound=1)
flags.DEFINE_integer("rounds", 3, "Interleaved rounds.", lower_bound=1)
flags.DEFINE_float("end_to_end", 0.95, "A whole run's rate over the bare step's "
                   "(bench_input.py train_end_to_end).", lower_bound=0.01, upper_bound=1.0)
flags.DEFINE_string("output_json", None, "Also write the rows here.")


def _specs(experiment, runs_dir):
    """The experiment's quick-scale runs (keras_resnet.reproduce's own specs)."""
    from keras_resnet.reproduce import experiments
    from keras_resnet.reproduce.runs import Options

    chosen = experiments.EXPERIMENTS[experiment]
    options = Options(dataset=chosen.dataset, scale="quick", runs_dir=runs_dir)
    return chosen.specs(options)


def _step(config):
    """The run's training step, as train.py builds and compiles its model,
    on one fixed batch; (step, batch size, steps of the run)."""
    from keras_resnet.models.resnet import FAMILIES
    from keras_resnet.training import run as run_lib

    settings = run_lib.resolve_settings(config)
    classes = FAMILIES[settings.family].classes
    model = timing.training_model(config, classes)
    images, labels = timing.fixed_batch(settings.batch_size, settings.image_size, classes)
    steps = settings.with_data([str(c) for c in range(classes)], settings.batch_size * 10).train_steps
    return (lambda n: [model.train_on_batch(images, labels) for _ in range(n)],
            settings.batch_size, steps)


def _cost(experiment, runs_dir):
    """One row per run of `experiment` and one for the experiment."""
    steps = {spec.name: _step(spec.config) for spec in _specs(experiment, runs_dir)}
    start = time.perf_counter()
    rates = {}
    for batch in sorted({batch for _, batch, _ in steps.values()}):  # one interleave a batch
        sides = {name: run for name, (run, size, _) in steps.items() if size == batch}
        rates.update(timing.interleave(sides, batch, FLAGS.steps, rounds=FLAGS.rounds, warmup=2))
    rows = []
    for name, (_, batch, total) in steps.items():
        rate = statistics.median(rates[name])
        minutes = total * batch / (rate * FLAGS.end_to_end) / 60
        rows.append({"experiment": experiment, "run": name, "batch": batch, "steps": total,
                     "step_img_s": round(rate, 1), "img_s_min": round(min(rates[name]), 1),
                     "img_s_max": round(max(rates[name]), 1), "minutes": round(minutes, 1)})
    rows.append({"experiment": experiment, "run": "all", "steps": sum(r["steps"] for r in rows),
                 "minutes": round(sum(r["minutes"] for r in rows), 1),
                 "timed_s": round(time.perf_counter() - start, 1)})
    return rows


def main(argv):
    del argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    rows = []
    with tempfile.TemporaryDirectory() as runs_dir:
        for experiment in FLAGS.experiments:
            rows += _cost(experiment, runs_dir)
    for row in rows:
        print(json.dumps(row))
    if FLAGS.output_json:
        with open(FLAGS.output_json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    app.run(main)
