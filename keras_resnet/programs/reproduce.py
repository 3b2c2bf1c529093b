"""`python -m keras_resnet.reproduce EXPERIMENT --flags`: the paper's experiments.

Flags are read here only; the experiments are keras_resnet.reproduce.
"""

from keras_resnet.programs import cli

cli.prepare_program()  # before anything below imports TensorFlow

import os  # noqa: E402

from absl import flags  # noqa: E402

from keras_resnet.reproduce import cifar  # noqa: E402
from keras_resnet.reproduce import experiments  # noqa: E402
from keras_resnet.reproduce import imagenet  # noqa: E402
from keras_resnet.reproduce import runs  # noqa: E402

USAGE = """Reproduces the paper's experiments: one command writes a table or figure.

  python -m keras_resnet.reproduce EXPERIMENT [--scale=paper|quick] [--flags]

Experiments (--scale=quick trains fewer depths on a short schedule, to see the
trend on a laptop CPU):
""" + "".join(f"  {name:<8}{e.description}\n" for name, e in experiments.EXPERIMENTS.items()) + """
Scales of the CIFAR experiments: """ + "; ".join(
    f"{name}: {s.cost}" for name, s in cifar.SCALES.items()) + """.
Of fig4 and table2: """ + "; ".join(f"{name}: {s.cost}" for name, s in imagenet.SCALES.items()) + """.

Each run is a train.py run in its own folder under --runs_dir: rerunning the
command after an interruption trains only what is missing (--dry_run prints the
train.py and evaluate.py commands, to run elsewhere). Figures (PNG), tables
(CSV and Markdown) and summary.json go to --output_dir.
"""

flags.DEFINE_string("dataset", None, "A TFDS name or an image folder (as train.py's). Default: "
                    "cifar10, or imagenet2012 for fig4 and tables 2 to 4.")
flags.DEFINE_enum("scale", "paper", list(cifar.SCALES), "How much to run: paper, quick "
                  "(a short schedule, fewer depths), tiny (for tests).")
flags.DEFINE_string("output_dir", None, "Figures, tables and summary.json. Default: "
                    "reproduce/<experiment>.")
flags.DEFINE_string("runs_dir", None, "One train.py model_dir per run below it, shared by the "
                    "experiments. Default: reproduce/runs/<dataset>-<scale>.")
flags.DEFINE_list("depths", None, "table6: the CIFAR depths (default: the scale's).")
flags.DEFINE_integer("seeds", 1, "table6: runs of each depth; their best and mean +- std.",
                     lower_bound=1)
flags.DEFINE_list("models", [], "table3, table4: model files to score (what evaluate.py takes).")
flags.DEFINE_string("weights", None, "table3, table4: 'imagenet' scores the published ResNet-50/101/152.")
flags.DEFINE_string("data_dir", None, "TFDS data directory.")
flags.DEFINE_string("manual_dir", None, "TFDS manual download directory (imagenet2012).")
flags.DEFINE_bool("dry_run", False, "Print the train.py and evaluate.py commands; train nothing.")
flags.DEFINE_integer("verbose", 2, "Keras' progress output of each run (0, 1 or 2).")

FLAGS = flags.FLAGS


def _depths(values: list[str] | None) -> tuple[int, ...] | None:
    from keras_resnet.errors import ArgumentError

    if values is None:
        return None
    if not all(v.strip().isdigit() for v in values):
        raise ArgumentError("depths", ",".join(values), "must be whole numbers, e.g. 20,56")
    depths = tuple(int(v) for v in values)
    cifar.check_depths(depths)
    return depths


def reproduce_from_flags(argv: list[str]) -> dict | None:
    from keras_resnet.errors import ArgumentError

    cli.require_tensorflow_backend(cli.program_name())
    if len(argv) != 2 or argv[1] not in experiments.EXPERIMENTS:
        given = repr(argv[1]) if len(argv) == 2 else "none"
        raise ValueError(f"unknown experiment: {given}; accepted: "
                         f"{', '.join(experiments.EXPERIMENTS)} (--help says what each does)")
    name = argv[1]
    dataset = FLAGS.dataset or experiments.EXPERIMENTS[name].dataset
    options = runs.Options(
        dataset=dataset, scale=FLAGS.scale, depths=_depths(FLAGS.depths), seeds=FLAGS.seeds,
        runs_dir=FLAGS.runs_dir or os.path.join(
            "reproduce", "runs", f"{os.path.basename(os.path.normpath(dataset))}-{FLAGS.scale}"),
        data_dir=FLAGS.data_dir, manual_dir=FLAGS.manual_dir, models=tuple(FLAGS.models),
        weights=FLAGS.weights, verbose=FLAGS.verbose)
    if FLAGS.output_dir is not None and os.path.isfile(FLAGS.output_dir):
        raise ArgumentError("output_dir", FLAGS.output_dir, "is a file; it must be a folder")
    output_dir = FLAGS.output_dir or os.path.join("reproduce", name)
    return experiments.run_experiment(name, options, output_dir, dry_run=FLAGS.dry_run)


def main(argv: list[str]) -> None:
    cli.run_main(cli.program_name(), reproduce_from_flags, argv, resume_hint=True)


def entry_point() -> None:
    """The console script `keras-resnet-reproduce`; `python -m keras_resnet.reproduce`."""
    cli.entry_point(main, __name__, arguments=1, usage=USAGE)
