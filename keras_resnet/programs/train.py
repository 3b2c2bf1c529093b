"""Trains a ResNet as the paper did (He et al. 2015) or with a modern recipe.

    python train.py                  # ResNet-20, CIFAR-10, paper Sec. 4.2
    python train.py --model=resnet50 --dataset=imagenet2012 --manual_dir=...
    python train.py --dataset=/data/flowers --weights=imagenet --freeze_backbone

The work is done by keras_resnet.training.train; this file turns flags into
its keras_resnet.training.run.Config (a library error about an argument is shown as
its flag). See keras_resnet.training for the outputs written to --model_dir.

Bad flags, data or files print one line and exit 2, a diverged run exits 1,
Ctrl-C exits 130; running the same command again resumes.
"""

from keras_resnet.programs import cli

cli.prepare_program()  # before anything below imports TensorFlow

import os  # noqa: E402

from absl import flags  # noqa: E402

from keras_resnet.models.blocks import SHORTCUT_OPTIONS  # noqa: E402
from keras_resnet.training import distribute  # noqa: E402
from keras_resnet.training import recipes  # noqa: E402
from keras_resnet.training import trainer  # noqa: E402
from keras_resnet.training.callbacks import DivergedError  # noqa: E402
from keras_resnet.training.run import Config  # noqa: E402
from keras_resnet.training.run import PRECISIONS  # noqa: E402

_DEFAULTS = Config()
FLAGS = flags.FLAGS
flags.DEFINE_string("model", _DEFAULTS.model, "Any name of keras_resnet.list_models().")
flags.DEFINE_string(
    "dataset", _DEFAULTS.dataset,
    "A TFDS name (cifar10, cifar100, imagenette, imagenet2012 with --manual_dir), "
    "a folder with train/ and val/ (or test/) holding one subfolder of JPEG/PNG "
    "images per class, or 'synthetic' for smoke runs and benchmarks.",
)
flags.DEFINE_string(
    "recipe", None,
    f"One of {', '.join(recipes.RECIPES)}. Default: the paper's recipe of the "
    "model's family (cifar_paper or imagenet_paper).",
)
flags.DEFINE_integer("batch_size", None, "Global batch size, split across replicas. Default: the recipe's.")
flags.DEFINE_integer("epochs", None, "Train this many epochs instead of the recipe's iterations.")
flags.DEFINE_integer("train_steps", None, "Train this many iterations instead of the recipe's.")
flags.DEFINE_float(
    "learning_rate", None,
    "Base learning rate. Default: the recipe's, scaled by batch_size / recipe batch size.",
)
flags.DEFINE_integer(
    "warmup_steps", None,
    "Warm up for this many iterations first: at --warmup_learning_rate (the paper's ResNet-110: "
    "400 at 0.01), or rising linearly where the recipe's warm-up does. Default: the recipe's.",
)
flags.DEFINE_float(
    "warmup_learning_rate", None,
    "The rate of a constant warm-up. Default: the recipe's, or a tenth of the learning rate.",
)
flags.DEFINE_string(
    "model_dir", None,
    "Where checkpoints, backup, logs and the model go. Default: runs/<model>_<dataset>. "
    "Running the same command again resumes from its backup.",
)
flags.DEFINE_enum("strategy", _DEFAULTS.strategy, distribute.STRATEGIES,
                  "auto: multi_worker if TF_CONFIG is set, mirrored with >1 GPU, else one_device.")
flags.DEFINE_enum("mixed_precision", _DEFAULTS.mixed_precision, list(PRECISIONS),
                  "Mixed precision compute type.")
flags.DEFINE_bool("jit_compile", _DEFAULTS.jit_compile, "XLA-compile the train step.")
flags.DEFINE_bool("deterministic", _DEFAULTS.deterministic, "TensorFlow's op determinism: the same "
                  "seed gives the same weights bit for bit, however loaded the machine (no cost "
                  "measured on a CPU: benchmarks/bench_deterministic.py).")
flags.DEFINE_integer("seed", _DEFAULTS.seed, "Seed of initialisation, shuffling and augmentation.")
flags.DEFINE_integer("image_size", None, "Square input size. Default: 32 (CIFAR family) or 224.")
flags.DEFINE_enum("shortcut", None, list(SHORTCUT_OPTIONS), "Residual nets' shortcuts (Sec. 3.3): A "
                  "zero-pads where the channels grow, B projects there, C projects everywhere. "
                  "Default: B for the ImageNet nets, A for the CIFAR ones.")
flags.DEFINE_string("weights", None, "Start from published weights (a name of list_weights(): "
                    "'imagenet', 'tv2_in1k', ...) or a weights file (fine-tuning).")
flags.DEFINE_bool("freeze_backbone", _DEFAULTS.freeze_backbone,
                  "Train only the classifier; BatchNorm statistics stay frozen too.")
flags.DEFINE_string("data_dir", None, "TFDS data directory (default: TFDS's, ~/tensorflow_datasets).")
flags.DEFINE_string("manual_dir", None, "TFDS manual download directory (imagenet2012).")
flags.DEFINE_integer("synthetic_examples", _DEFAULTS.synthetic_examples,
                     "Training images of --dataset=synthetic.")
flags.DEFINE_float("val_fraction", _DEFAULTS.val_fraction,
                   "Of a folder's train/ held out (seeded) to validate when it has test/ but "
                   "no val/; test/ is then scored once, after training.")
flags.DEFINE_integer("max_pixels", _DEFAULTS.max_pixels,
                     "Training images of more pixels (width x height, read from their headers) "
                     "are skipped and counted, never decoded.")
flags.DEFINE_integer("verbose", _DEFAULTS.verbose, "0: silent, 1: progress bars, 2: a line per epoch.")


def train_from_flags(argv: list[str]) -> None:
    cli.require_tensorflow_backend(cli.program_name())
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments: {' '.join(argv[1:])}")
    config = Config(**{name: FLAGS[name].value for name in Config.__dataclass_fields__})
    result = trainer.train(config)
    last, test = result.history[-1], result.test
    tested = f", test accuracy {test['accuracy']:.4f} ({test['num_examples']} images)" if test else ""
    print(
        f"Done: val_accuracy {last.get('val_accuracy', float('nan')):.4f}{tested} after "
        f"{last['iterations']} iterations; model in {os.path.join(result.model_dir, 'model.keras')}"
    )


def main(argv: list[str]) -> None:
    cli.run_main(cli.program_name(), train_from_flags, argv, failures=(DivergedError,), resume_hint=True)


def entry_point() -> None:
    """The console script `keras-resnet-train`; `python train.py` in a checkout."""
    cli.entry_point(main, __name__)
