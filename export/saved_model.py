"""SavedModel for TF Serving: `output_dir/<model name>/<version>/`.

Signatures (both with the model's preprocessing inside):
- `serving_default`: `images`, float32 RGB in [0, 255], [None, H, W, 3];
- `serving_bytes`: `image_bytes`, string [None] of encoded JPEG or PNG (GIF
  and BMP decode too), decoded to RGB and put through the model's evaluation
  transform (export.source) inside the graph.
Both return `probabilities` [None, classes], `top_k_classes` (int32) and
`top_k_scores` [None, k], k = min(5, classes), best first.

Inputs are checked inside the graph, so a bad request fails with
InvalidArgument (TF Serving answers INVALID_ARGUMENT) and changes nothing: the
next request is served as usual.

Versions: TF Serving loads the numbered subfolders of a model's folder and
serves the highest. Without a version, the export takes the highest existing
number + 1 (1 for the first), so exporting again rolls out a new version and
keeps the old ones for rollback. An explicit version that exists is refused
unless `overwrite`. The SavedModel is written to a hidden folder beside the
versions and renamed into place, so the server never sees a half-written one.
"""

import os
import shutil
import tempfile

import tensorflow as tf

from export import source
from keras_resnet import data as data_lib

TOP_K = 5


def next_version(model_dir):
    """The highest numbered subfolder of `model_dir` + 1, or 1."""
    versions = [
        int(entry)
        for entry in (os.listdir(model_dir) if os.path.isdir(model_dir) else ())
        if entry.isdigit()
    ]
    return max(versions, default=0) + 1


def version_dir(output_dir, name, version=None, overwrite=False):
    """Where the export goes; refuses an existing version without overwrite."""
    if not name or os.sep in name or name.startswith("."):
        raise ValueError(f"Model name must be a plain folder name. Received: {name!r}")
    model_dir = os.path.join(output_dir, name)
    if version is None:
        version = next_version(model_dir)
    elif int(version) < 1:
        raise ValueError(f"Version must be a positive integer. Received: version={version}")
    path = os.path.join(model_dir, str(int(version)))
    if os.path.exists(path) and not overwrite:
        raise ValueError(
            f"Version {version} of {name!r} exists: {path!r}. Pass overwrite "
            f"(--overwrite) to replace it, or leave the version out to write "
            f"version {next_version(model_dir)}."
        )
    return path


def serving_functions(model, transform_name="auto"):
    """{signature name: (function, input signature)} for `model`."""
    height, width = source.input_size(model)
    transform = source.eval_transform(transform_name, height, model.name)
    num_classes = model.output_shape[-1]
    k = min(TOP_K, num_classes)

    def outputs(images):
        # float32 also from a mixed-precision model. TF's CPU convolution
        # mishandles an empty batch (the BN after it fails): an empty request
        # gets an empty answer instead.
        probabilities = tf.cond(
            tf.shape(images)[0] > 0,
            lambda: tf.cast(model(images, training=False), tf.float32),
            lambda: tf.zeros([0, num_classes], tf.float32),
        )
        scores, classes = tf.math.top_k(probabilities, k=k)
        return {
            "probabilities": probabilities,
            "top_k_classes": classes,
            "top_k_scores": scores,
        }

    def serve_images(images):
        # Fails with InvalidArgument naming both shapes (a fully
        # convolutional model would otherwise answer any size).
        return outputs(tf.ensure_shape(images, [None, height, width, 3]))

    def serve_bytes(image_bytes):
        image_bytes = tf.ensure_shape(image_bytes, [None])
        images = tf.map_fn(
            lambda b: transform(data_lib.decode_bytes(b), height),
            image_bytes,
            fn_output_signature=tf.TensorSpec([height, width, 3], tf.float32),
        )
        return outputs(images)

    return {
        "serving_default": (
            serve_images,
            [tf.TensorSpec([None, height, width, 3], tf.float32, name="images")],
        ),
        "serving_bytes": (
            serve_bytes,
            [tf.TensorSpec([None], tf.string, name="image_bytes")],
        ),
    }


def write(model, path, transform_name="auto"):
    """Writes the SavedModel of `model` to `path` (replacing it if there)."""
    module = tf.Module()
    # The tf.Variables under the Keras ones, tracked once: Keras 3.15's
    # ExportArchive (and model.export) writes every weight twice.
    module.model_weights = [v.value for v in model.variables]
    signatures = {}
    for name, (fn, signature) in serving_functions(model, transform_name).items():
        function = tf.function(fn, input_signature=signature)
        setattr(module, name, function)
        signatures[name] = function.get_concrete_function()
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    # Hidden (not a number): TF Serving ignores it while it is written.
    staging = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        tf.saved_model.save(module, staging, signatures=signatures)
        if os.path.exists(path):
            old = tempfile.mkdtemp(prefix=".replaced-", dir=parent)
            os.replace(path, os.path.join(old, "v"))
            os.replace(staging, path)
            shutil.rmtree(old)
        else:
            os.replace(staging, path)
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging)


def export_saved_model(
    model,
    output_dir,
    *,
    name=None,
    version=None,
    overwrite=False,
    transform_name="auto",
    images=None,
):
    """Exports `model` for TF Serving and checks the reloaded SavedModel.

    Args:
        model: a Keras model taking float32 RGB in [0, 255] (source.load_model).
        output_dir: the TF Serving model base path's parent.
        name: the model's folder (default: `model.name`).
        version: a positive integer (default: the next free one).
        overwrite: replace an existing `version`.
        transform_name: "auto", "cifar" or "imagenet" (source.eval_transform).
        images: `source.Images` to compare on (default: 8 random images).

    Returns:
        A `source.Report` of `serving_default` against the Keras model.
    """
    path = version_dir(output_dir, name or model.name, version, overwrite)
    height, _ = source.input_size(model)
    if images is None:
        images = source.load_images(None, height, None, limit=8)
    write(model, path, transform_name)
    served = tf.saved_model.load(path).signatures["serving_default"]
    probabilities = served(images=tf.constant(images.pixels))["probabilities"]
    expected = model.predict(images.pixels, verbose=0)
    diff, agree = source.compare(expected, probabilities.numpy())
    return source.Report(path, source.directory_size(path), diff, agree, images.source)
