"""SavedModel for TF Serving: `output_dir/<model name>/<version>/`.

Signatures (the first two with the model's preprocessing inside):
- `serving_default`: `images`, float32 RGB in [0, 255], [None, H, W, 3];
- `serving_bytes`: `image_bytes`, string [None] of encoded JPEG, PNG, GIF,
  BMP or WebP, decoded to RGB and put through the model's test view
  (export.inputs) inside the graph;
- `metadata`: no inputs; `metadata`, a string scalar: the JSON of the model's
  ModelInfo (keras_resnet.models.metadata), read from the asset file
  `assets/keras_resnet.json`, which travels with the SavedModel. TF Serving
  answers it over gRPC (Predict with no inputs); its REST API refuses a
  signature without inputs (tensorflow/serving#1676), so REST clients read
  the asset file.
The first two return `probabilities` [None, classes], `top_k_classes` (int32)
and `top_k_scores` [None, k], k = min(5, classes), best first. A model
without metadata (a user's own .keras file) is exported without the last.

Inputs are checked inside the graph, so a bad request fails with
InvalidArgument (TF Serving answers INVALID_ARGUMENT) and changes nothing: the
next request is served as usual. `serving_default` refuses NaN and infinite
pixels, and pixels outside [0, 255] (3e38 would overflow to NaN scores).
`serving_bytes` reads each image's width and height from its header
(a GIF's from its frames, every one of which is decoded; keras_resnet.data.images)
and refuses one of more than `max_pixels` (default 40 million) before
decoding it: decoding costs 3 bytes a pixel and more to resize, so a small
file (a 410 KB PNG of 12000x12000 zeros) would otherwise take gigabytes.
Other formats (JPEG XL, whose header is not read here), and truncated or
malformed GIFs, are refused.

Versions: TF Serving loads the numbered subfolders of a model's folder and
serves the highest. Without a version, the export takes the highest existing
number + 1 (1 for the first), so exporting again rolls out a new version and
keeps the old ones for rollback. An explicit version that exists is refused
unless `overwrite`. An export holds the model folder's lock (a `.lock` file,
keras_resnet.files.RunLock) from choosing its version to renaming it into
place: a second export into the same folder at once is refused, not given the
same version. The SavedModel is written to a hidden staging folder
beside the versions (keras_resnet.files), checked against the Keras model
there, and renamed into place: the server never sees a half-written or
unchecked one, and a killed export's staging is removed by the next one.
Files and folders get the umask's modes (0644/0755 by default), so a server
running as another user can read them.

The served graph has BatchNormalization folded into the convolutions
(keras_resnet.models.folding; `fold_bn=False` keeps it), which serves ResNets faster
on CPU (benchmarks/RESULTS.md); the check against the Keras model covers it.

The weights are frozen into the graph as constants (`freeze=False` keeps them
as variables, under `variables/`). On a CPU TensorFlow's oneDNN convolutions
then reorder each kernel into their own layout once, when the graph is first
run, and keep it; from variables they either reorder it at every request or,
as for a single image, fall back to a slower im2col kernel. ResNet-50 serves a
single image 1.3x as fast (benchmarks/RESULTS.md). The weights are stored
once, in saved_model.pb; a model of more than FREEZE_MAX_BYTES of weights keeps
its variables, as the SavedModel protocol buffer cannot exceed 2 GiB.
"""

import os
import tempfile
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from keras_resnet import files
from keras_resnet.data import sources
from keras_resnet.data.images import MAX_PIXELS
from keras_resnet.data.images import check_header
from keras_resnet.data.images import check_max_pixels
from keras_resnet.errors import ArgumentError
from keras_resnet.evaluation import artefacts
from keras_resnet.export import inputs
from keras_resnet.models import folding
from keras_resnet.models import metadata
from keras_resnet.data.images import header_size  # noqa: F401 (re-exported: serving's reader)
from keras_resnet.models.metadata import ModelInfo

TOP_K = 5
FREEZE_MAX_BYTES = 1 << 30  # half of protobuf's 2 GiB limit on saved_model.pb


def next_version(model_dir: str) -> int:
    """The highest numbered subfolder of `model_dir` + 1, or 1."""
    versions = [
        int(entry)
        for entry in (os.listdir(model_dir) if os.path.isdir(model_dir) else ())
        if entry.isdigit()
    ]
    return max(versions, default=0) + 1


def version_dir(output_dir: str, name: str, version: int | None = None, overwrite: bool = False) -> str:
    """Where the export goes; refuses an existing version without overwrite."""
    if not name or os.sep in name or name.startswith("."):
        raise ValueError(f"Model name must be a plain folder name. Received: {name!r}")
    inputs.check_folder(output_dir)
    model_dir = os.path.join(output_dir, name)
    inputs.check_folder(model_dir, "Model folder")
    if version is None:
        version = next_version(model_dir)
    elif int(version) < 1:
        raise ValueError(f"Version must be a positive integer. Received: version={version}")
    path = os.path.join(model_dir, str(int(version)))
    if os.path.exists(path) and not overwrite:
        raise ArgumentError("overwrite", overwrite, (
            f"must be set to replace version {version} of {name!r}, {path!r}, which "
            f"exists; or leave the version out to write version {next_version(model_dir)}"))
    return path


def weight_bytes(model: keras.Model) -> int:
    """The bytes of all of `model`'s weights."""
    return sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in model.variables)


def frozen_call(model: keras.Model) -> tf.types.experimental.PolymorphicFunction:
    """`model(images, training=False)` as a tf.function of a float32 batch,
    with the model's weights (as they are now) in its graph as constants.

    TensorFlow's oneDNN convolutions keep a constant kernel in the layout they
    reordered it into the first time (see the module's docstring). The
    function is traced once; functions that call it share it.
    """
    trainable = [v.numpy() for v in model.trainable_variables]
    non_trainable = [v.numpy() for v in model.non_trainable_variables]
    height, width = inputs.input_size(model)

    def call(images):
        outputs, _ = model.stateless_call(
            [tf.constant(w) for w in trainable],
            [tf.constant(w) for w in non_trainable],
            images,
            training=False,
        )
        return outputs

    return tf.function(call, input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32)])


def _scored(predict: Callable, num_classes: int) -> Callable:
    """fn(images) -> the signatures' outputs: probabilities and the top k."""
    k = min(TOP_K, num_classes)

    def outputs(images):
        # float32 also from a mixed-precision model. TF's CPU convolution
        # mishandles an empty batch (the BN after it fails): an empty request
        # gets an empty answer instead.
        probabilities = tf.cond(
            tf.shape(images)[0] > 0,
            lambda: tf.cast(predict(images), tf.float32),
            lambda: tf.zeros([0, num_classes], tf.float32),
        )
        scores, classes = tf.math.top_k(probabilities, k=k)
        return {
            "probabilities": probabilities,
            "top_k_classes": classes,
            "top_k_scores": scores,
        }

    return outputs


def _serving_images(outputs: Callable, height: int, width: int) -> Callable:
    """`serving_default`: float32 RGB pixels in [0, 255], checked."""

    def serve_images(images):
        # Fails with InvalidArgument naming both shapes (a fully
        # convolutional model would otherwise answer any size).
        images = tf.ensure_shape(images, [None, height, width, 3])
        # NaN would come back as NaN scores and a meaningless top-k; so
        # would finite pixels far outside [0, 255] (3e38 overflows).
        images = tf.debugging.assert_all_finite(images, "images holds NaN or infinity")
        # One mid-grey pixel more, so that an empty batch has a farthest pixel too.
        pixels = tf.concat([tf.reshape(images, [-1]), [127.5]], axis=0)
        farthest = tf.gather(pixels, tf.argmax(tf.abs(pixels - 127.5)))
        in_range = tf.debugging.Assert(
            tf.abs(farthest - 127.5) <= 127.5,
            ["images holds pixels outside [0, 255], the RGB values accepted; the farthest:",
             farthest])
        with tf.control_dependencies([in_range]):
            return outputs(tf.identity(images))

    return serve_images


def _serving_bytes(outputs: Callable, transform: Callable, height: int, width: int,
                   max_pixels: int) -> Callable:
    """`serving_bytes`: encoded images, their size checked from the header
    before decoding, then the test view."""

    def view(args):
        image_bytes, index = args
        with tf.control_dependencies(check_header(image_bytes, index, max_pixels)):
            image = sources.decode_bytes(image_bytes)
        return transform(image, height)

    def serve_bytes(image_bytes):
        image_bytes = tf.ensure_shape(image_bytes, [None])
        images = tf.map_fn(
            view,
            (image_bytes, tf.range(tf.size(image_bytes))),
            fn_output_signature=tf.TensorSpec([height, width, 3], tf.float32),
        )
        return outputs(images)

    return serve_bytes


def serving_functions(model: keras.Model, view: str, max_pixels: int = MAX_PIXELS,
                      freeze: bool = True) -> dict:
    """{signature name: (function, input signature)} for `model`, whose
    `serving_bytes` applies the test view `view` ("single" or "center");
    `freeze` puts the weights in the graph (`frozen_call`)."""
    check_max_pixels(max_pixels)
    height, width = inputs.input_size(model)
    if freeze:
        # One trace for both signatures: a tf.function called inside two
        # others would be traced (and saved, weights and all) once in each.
        predict = frozen_call(model).get_concrete_function()
    else:
        def predict(images):
            return model(images, training=False)
    outputs = _scored(predict, model.output_shape[-1])
    serve_bytes = _serving_bytes(outputs, inputs.eval_transform(view), height, width, max_pixels)
    return {
        "serving_default": (
            _serving_images(outputs, height, width),
            [tf.TensorSpec([None, height, width, 3], tf.float32, name="images")],
        ),
        "serving_bytes": (
            serve_bytes,
            [tf.TensorSpec([None], tf.string, name="image_bytes")],
        ),
    }


def write(model: keras.Model, path: str, view: str, info: ModelInfo | None = None,
          max_pixels: int = MAX_PIXELS, freeze: bool = True) -> None:
    """Writes the SavedModel of `model` to the folder `path`, with `info` as
    its asset file and `metadata` signature (none without `info`), and the
    weights as constants of the graph (`freeze`) or as its variables."""
    module = tf.Module()
    if not freeze:
        # The tf.Variables under the Keras ones, tracked once: Keras 3.15's
        # ExportArchive (and model.export) writes every weight twice.
        module.model_weights = [v.value for v in model.variables]
    functions = {
        name: tf.function(fn, input_signature=signature)
        for name, (fn, signature) in serving_functions(model, view, max_pixels, freeze).items()
    }
    with tempfile.TemporaryDirectory() as folder:
        if info is not None:
            asset_path = os.path.join(folder, metadata.FILE_NAME)
            with open(asset_path, "w") as f:
                f.write(info.to_json())
            # Tracked on the module, the file is copied into assets/.
            module.metadata_file = tf.saved_model.Asset(asset_path)
            functions[artefacts.METADATA_SIGNATURE] = tf.function(
                lambda: {artefacts.METADATA_SIGNATURE: tf.io.read_file(module.metadata_file)},
                input_signature=[],
            )
        for name, function in functions.items():
            setattr(module, name, function)
        signatures = {name: f.get_concrete_function() for name, f in functions.items()}
        tf.saved_model.save(module, path, signatures=signatures)


def _write_error(path, error):
    """files.write_error for TensorFlow's failed writes: OpErrors, not
    OSErrors, whose message ends with the system's reason ("<file>; No space
    left on device [Op:SaveV2]")."""
    reason = error.message.split("[Op:")[0].strip().rsplit("; ", 1)[-1]
    return files.write_error(path, OSError(reason))


def export_saved_model(
    model: keras.Model,
    output_dir: str,
    *,
    info: ModelInfo | None = None,
    eval_transform: str = "auto",
    name: str | None = None,
    version: int | None = None,
    overwrite: bool = False,
    images: inputs.Images | None = None,
    max_pixels: int = MAX_PIXELS,
    fold_bn: bool = True,
    freeze: bool = True,
) -> inputs.Report:
    """Exports `model` for TF Serving and checks the reloaded SavedModel.

    Args:
        model: a Keras model taking float32 RGB in [0, 255] (inputs.load_exportable).
        output_dir: the TF Serving model base path's parent.
        info: the model's ModelInfo, recorded in the SavedModel (None: none).
        eval_transform: `serving_bytes`' test view: "single", "center", or
            "auto", the one `info` names (inputs.test_view).
        name: the model's folder (default: `model.name`).
        version: a positive integer (default: the next free one).
        overwrite: replace an existing `version`.
        images: `inputs.Images` to compare on (default: 8 random images).
        max_pixels: `serving_bytes` refuses larger images (width x height).
        fold_bn: serve a graph with BN folded into the convolutions
            (folding.fold_batch_norm; a non-functional model is served as it is).
        freeze: store the weights as constants of the served graph (faster on
            CPU; see the module's docstring), else as its variables. A model
            of more than FREEZE_MAX_BYTES of weights keeps its variables.

    Returns:
        A `inputs.Report` of `serving_default` against the Keras model.
    """
    check_max_pixels(max_pixels)
    view = inputs.test_view(eval_transform, info, repr(model.name))
    path = version_dir(output_dir, name or model.name, version, overwrite)  # refused early
    with _claim(os.path.dirname(path)):
        # Chosen again under the lock: another export may have taken it meanwhile.
        path = version_dir(output_dir, name or model.name, version, overwrite)
        return _export(model, path, info, view, images, max_pixels, fold_bn, freeze)


def _claim(model_dir: str) -> files.RunLock:
    """The model folder's lock, held from choosing a version to renaming it
    into place: of two exports at once, the second is refused (LockedError)
    instead of taking the same version and replacing the first's."""
    try:
        os.makedirs(model_dir, exist_ok=True)
    except OSError as e:
        raise files.write_error(model_dir, e) from None
    return files.RunLock(model_dir, "Model folder")  # acquired by `with`


def _export(model, path, info, view, images, max_pixels, fold_bn, freeze) -> inputs.Report:
    """export_saved_model's work, once `path` is claimed."""
    height, _ = inputs.input_size(model)
    if images is None:
        images = inputs.load_images(None, height, None, limit=8)
    expected = inputs.keras_outputs(model, images)
    served = model
    if fold_bn and folding.is_functional(model):
        served = folding.fold_batch_norm(model)
    elif fold_bn:
        logging.info("Serving %s with its BN unfolded: a %s model is not functional.",
                     model.name, type(model).__name__)
    if freeze and weight_bytes(served) > FREEZE_MAX_BYTES:
        logging.info("Serving %s with its weights as variables: %d bytes of weights are more "
                     "than a SavedModel's graph may hold as constants (%d).",
                     model.name, weight_bytes(served), FREEZE_MAX_BYTES)
        freeze = False
    with files.atomic_path(path) as staging:
        try:
            write(served, staging, view, inputs.exported_info(info, view), max_pixels, freeze)
        except tf.errors.OpError as e:
            raise _write_error(path, e) from None
        # Checked before it is renamed into place: TF Serving never loads a
        # version whose outputs are not finite.
        served = tf.saved_model.load(staging).signatures["serving_default"]
        probabilities = served(images=tf.constant(images.pixels))["probabilities"]
        diff, agree = inputs.compare(expected, probabilities.numpy(), f"The SavedModel {path!r}")
    return inputs.Report(path, inputs.directory_size(path), diff, agree, images.source)
