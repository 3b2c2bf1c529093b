"""Exports a model as a TF Serving SavedModel or a TFLite file, and checks it.

    python -m export --model_path=runs/resnet20_cifar10/model.keras --output_dir=serving
    python -m export --model=resnet50 --weights=imagenet --output_dir=serving \
        --max_pixels=25000000
    python -m export --model_path=model.keras --output_dir=tflite --format=tflite \
        --quantize=int8 --representative_dataset=/data/flowers/val

The work is done by the export package; this file turns flags into its calls
and prints the report: where the artefact went, its size, and its largest
difference and top-1 agreement with the Keras model. Errors (bad flags or
files, a model whose outputs are not finite, a full disk) print one line and
exit 2; Ctrl-C exits 130 (keras_resnet.programs.cli).
"""

from keras_resnet.programs import cli

cli.prepare_program()  # before anything below imports TensorFlow

from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

from keras_resnet import export  # noqa: E402
from keras_resnet.export import inputs  # noqa: E402
from keras_resnet.export import saved_model  # noqa: E402
from keras_resnet.export import tflite  # noqa: E402


FORMATS = ("saved_model", "tflite")

FLAGS = flags.FLAGS
flags.DEFINE_string("model_path", None, "A .keras file (as train.py writes; it carries its preprocessing).")
flags.DEFINE_string("model", None, "Instead of --model_path: a name of keras_resnet.list_models().")
flags.DEFINE_string(
    "weights", None,
    "With --model: a name of list_weights() ('imagenet', 'tv2_in1k', ...) or a weights "
    "file; the weights' preprocessing is put in front. Default: He initialisation "
    "(smoke tests only).",
)
flags.DEFINE_integer("image_size", None, "With --model: square input size (default: the family's).")
flags.DEFINE_string("output_dir", None, "Where to write: <dir>/<name>/<version>/ or <dir>/<name>_<quantize>.tflite.")
flags.DEFINE_enum("format", "saved_model", FORMATS, "What to write.")
flags.DEFINE_enum("quantize", "none", tflite.QUANTIZATIONS, "TFLite quantization; int8 needs --representative_dataset.")
flags.DEFINE_string(
    "representative_dataset", None,
    "An image folder (with or without class subfolders) or tfds:NAME[:SPLIT]: "
    "int8 calibration, and the images the export is compared with Keras on "
    "(default: random images).",
)
flags.DEFINE_integer("num_images", 100, "How many images of --representative_dataset to use.",
                     lower_bound=1)
flags.DEFINE_string("data_dir", None, "TFDS data directory for tfds: datasets.")
flags.DEFINE_enum(
    "eval_transform", "auto", inputs.EVAL_TRANSFORMS,
    "The test view (serving_bytes, representative images): single resizes the "
    "whole image, center the shorter side to size * 256 / 224 then centre-crops; "
    "auto: the one the model's metadata names (needed for a .keras file without).",
)
flags.DEFINE_string("name", None, "Model folder or file name (default: the model's name).")
flags.DEFINE_integer("version", None, "SavedModel version (default: the highest existing + 1).")
flags.DEFINE_bool("overwrite", False, "Replace an existing version or file.")
flags.DEFINE_integer(
    "max_pixels", saved_model.MAX_PIXELS,
    "serving_bytes refuses images of more pixels (width x height, read from "
    "the header before decoding) with INVALID_ARGUMENT.", lower_bound=1,
)
flags.DEFINE_bool(
    "fold_bn", True,
    "saved_model: serve a graph with BatchNormalization folded into the convolutions "
    "(faster on CPU; checked against the Keras model like the rest).",
)
flags.DEFINE_bool(
    "freeze", True,
    "saved_model: store the weights as constants of the served graph (CPU serving reorders "
    "each kernel once instead of at every request); --nofreeze keeps them as variables.",
)
flags.mark_flag_as_required("output_dir")


def export_model():
    from keras_resnet.errors import ArgumentError

    cli.require_tensorflow_backend(cli.program_name())
    if FLAGS.format == "saved_model" and FLAGS.quantize != "none":
        raise ValueError(f"--quantize={FLAGS.quantize} is for --format=tflite")
    if FLAGS.quantize == "int8" and not FLAGS.representative_dataset:  # before loading the model
        raise ArgumentError("representative_dataset", None, tflite.INT8_NEEDS_IMAGES)
    if FLAGS.format == "tflite" and FLAGS["max_pixels"].present:
        raise ValueError("--max_pixels is for --format=saved_model (its serving_bytes signature)")
    if FLAGS.format == "tflite" and FLAGS["fold_bn"].present:
        raise ValueError("--fold_bn is for --format=saved_model: the TFLite converter folds BN itself")
    if FLAGS.format == "tflite" and FLAGS["freeze"].present:
        raise ValueError("--freeze is for --format=saved_model: a TFLite file holds its weights as constants")
    inputs.check_folder(FLAGS.output_dir)
    artefact = inputs.load_exportable(FLAGS.model_path, FLAGS.model, FLAGS.weights, FLAGS.image_size)
    model, size = artefact.model, inputs.input_size(artefact.model)[0]
    view = inputs.test_view(FLAGS.eval_transform, artefact.info, FLAGS.model_path or FLAGS.model)
    if artefact.info is None:
        logging.warning("%s carries no keras_resnet metadata: the export carries none either.",
                        FLAGS.model_path)
    images = None
    if FLAGS.representative_dataset:
        images = inputs.load_images(
            FLAGS.representative_dataset, size, inputs.eval_transform(view), FLAGS.num_images,
            data_dir=FLAGS.data_dir,
        )
    if FLAGS.format == "saved_model":
        return export.export_saved_model(
            model, FLAGS.output_dir, info=artefact.info, eval_transform=view, name=FLAGS.name,
            version=FLAGS.version, overwrite=FLAGS.overwrite, images=images,
            max_pixels=FLAGS.max_pixels, fold_bn=FLAGS.fold_bn, freeze=FLAGS.freeze,
        )
    return export.export_tflite(
        model, FLAGS.output_dir, info=inputs.exported_info(artefact.info, view),
        quantize=FLAGS.quantize, images=images, name=FLAGS.name, overwrite=FLAGS.overwrite,
    )


def main(argv):
    del argv  # keras_resnet.programs.cli.parse_flags refuses arguments that are not flags.
    # TensorFlow's INFO lines about writing SavedModels hide the report.
    logging.set_verbosity(logging.WARNING)
    print(cli.run_main(cli.program_name(), export_model))


def entry_point():
    """The console script `keras-resnet-export`; `python -m export` in a checkout."""
    cli.entry_point(main, __name__)
