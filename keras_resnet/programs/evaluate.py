"""Evaluates a trained artefact with the paper's test protocols.

  python evaluate.py --model_path=runs/resnet20/model.keras --dataset=cifar10
  python evaluate.py --model=resnet50 --weights=imagenet --dataset=imagenet2012 \
      --manual_dir=~/imagenet --protocol=10crop --output_json=resnet50.json

--model_path: a .keras file (train.py's), a SavedModel folder (export/'s) or a
.tflite file. Protocols: single, center, 10crop, multiscale (the paper's) and
weights (the transform published weights were scored with; see
keras_resnet/evaluation/protocols.py). The protocol and image size default to
the weights' own transform for --model with published weights, else to the
artefact's metadata (--protocol, --image_size for one without). Errors
(bad flags, files or data, a model whose outputs are not finite) print one
line and exit 2; Ctrl-C exits 130 (keras_resnet.programs.cli). --output_json and
--confusion_png are written whole or not at all (keras_resnet.files).
"""

from keras_resnet.programs import cli

cli.prepare_program()  # before anything below imports TensorFlow

import json  # noqa: E402

from absl import flags  # noqa: E402


flags.DEFINE_string("model_path", None, "A .keras file, SavedModel folder or .tflite file.")
flags.DEFINE_string("model", None, "Instead of --model_path: a keras_resnet model name.")
flags.DEFINE_string("weights", "imagenet", "With --model: a name of list_weights() "
                    "('imagenet', 'tv2_in1k', ...) or a weights file.")
flags.DEFINE_string("dataset", "cifar10", "A TFDS name, a folder (train/ and val/ or "
                    "test/, one subfolder per class) or 'synthetic'.")
flags.DEFINE_string("split", None, "Split to evaluate (default: TFDS 'test', else "
                    "'validation'; a folder's val/ or test/).")
flags.DEFINE_string("data_dir", None, "TFDS data directory.")
flags.DEFINE_string("manual_dir", None, "TFDS manual download directory (imagenet2012).")
flags.DEFINE_enum("protocol", None, ["single", "center", "10crop", "multiscale", "weights"],
                  "Test protocol (default: with --model and published weights, 'weights', "
                  "their own transform; else the test view the artefact's metadata names; "
                  "needed for an artefact without metadata).")
flags.DEFINE_integer("image_size", None, "Square input size (default: the artefact's "
                     "metadata, else its fixed input; with --model: the family's).",
                     lower_bound=1)
flags.DEFINE_integer("batch_size", 64, "Images per batch.", lower_bound=1)
flags.DEFINE_enum("strategy", "auto", ["auto", "one_device", "mirrored"],
                  "auto: MirroredStrategy when more than one GPU is visible.")
flags.DEFINE_string("output_json", None, "Write the results here as JSON.")
flags.DEFINE_string("confusion_png", None, "Write the confusion matrix here as a PNG.")
FLAGS = flags.FLAGS


def _plot_confusion(confusion, class_names, path, title):
    """Shades each true class's row by its fraction (classes of unequal size
    compare), writes the counts in the cells up to 30 classes, names the
    classes on both axes up to 50."""
    import matplotlib
    import numpy as np

    from keras_resnet import files

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    n = len(class_names)
    rates = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    size = min(4 + 0.4 * n, 40)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    shading = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(shading, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    if n <= 30:
        for (row, col), count in np.ndenumerate(confusion):
            if count:
                ax.text(col, row, str(count), ha="center", va="center", fontsize=8,
                        color="white" if rates[row, col] > 0.5 else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    if n <= 50:
        ax.set_xticks(range(n), class_names, rotation=90)
        ax.set_yticks(range(n), class_names)
    fig.tight_layout()
    with files.atomic_path(path) as staging:
        fig.savefig(staging, format="png")
    plt.close(fig)


def evaluate_from_flags(argv_flags):
    import os

    from keras_resnet import files
    from keras_resnet.errors import ArgumentError
    from keras_resnet.evaluation import artefacts
    from keras_resnet.evaluation import protocols
    from keras_resnet.programs import cli
    from keras_resnet.training import distribute

    cli.require_tensorflow_backend(cli.program_name())

    f = argv_flags
    if (f.model_path is None) == (f.model is None):
        raise ValueError("Give exactly one of --model_path or --model")
    for flag in ("output_json", "confusion_png"):  # before minutes of evaluation
        if getattr(f, flag) and os.path.isdir(getattr(f, flag)):
            raise ArgumentError(flag, getattr(f, flag), "must be a file to write, not a folder")
    named = f.model is not None
    artefact = artefacts.load_artefact(
        f.model_path, f.model, f.weights if named else None,
        image_size=f.image_size if named else None,
        strategy=distribute.make_strategy(f.strategy), any_size=f.protocol == "multiscale",
    )
    result, confusion, split = protocols.evaluate_on(
        artefact, f.dataset, f.split, protocol=f.protocol, image_size=f.image_size,
        batch_size=f.batch_size, data_dir=f.data_dir, manual_dir=f.manual_dir,
    )
    print(f"\n{'artefact':<12}{result['artefact']}\n{'protocol':<12}{result['protocol']}: "
          f"{result['transform']}\n{'split':<12}{f.dataset} {result['split']}"
          f"\n{'examples':<12}{result['num_examples']}")
    print(f"{'top-1':<12}{100 * result['top1_accuracy']:.2f}% accuracy, "
          f"{100 * result['top1_error']:.2f}% error")
    print(f"{'top-' + str(result['top_k']):<12}{100 * result['top5_accuracy']:.2f}% "
          f"accuracy, {100 * result['top5_error']:.2f}% error")
    if f.output_json:
        files.write_text(f.output_json, json.dumps(result, indent=2))
    if f.confusion_png:
        title = (f"{os.path.basename(os.path.normpath(result['artefact']))} on {f.dataset}"
                 f" {result['split']}: top-1 {100 * result['top1_accuracy']:.2f}%")
        _plot_confusion(confusion, split.class_names, f.confusion_png, title)
    return result


def main(argv):
    del argv  # keras_resnet.programs.cli.parse_flags refuses arguments that are not flags.
    from keras_resnet.programs import cli

    cli.run_main(cli.program_name(), evaluate_from_flags, FLAGS)


def entry_point():
    """The console script `keras-resnet-evaluate`; `python evaluate.py` in a checkout."""
    from keras_resnet.programs import cli

    cli.entry_point(main, __name__)
