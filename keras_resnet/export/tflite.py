"""TFLite (LiteRT) models: float32 input RGB in [0, 255], preprocessing inside.

Quantization (TFLite's post-training modes):
- "none": float32 weights and compute;
- "float16": float16 weights, dequantized to float32 on the CPU;
- "dynamic": int8 weights, activations quantized on the fly;
- "int8": int8 weights and activations, ranges calibrated on a representative
  dataset; input and output stay float32 (a quantize op at each end), so the
  file takes the same images as the others.

The Keras 3 model is converted through `model.export()` then
`TFLiteConverter.from_saved_model`, the route that converts Keras 3 models
on TF 2.21; that SavedModel is
kept in memory (TensorFlow's ram:// file system), so a full disk or a killed
export leaves no temporary folder. The result is run with LiteRT's
interpreter and compared with the Keras model before it is written, whole or
not at all, with the umask's modes (keras_resnet.files).
"""

import os
import uuid

import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from keras_resnet import files
from keras_resnet.export import source

QUANTIZATIONS = ("none", "float16", "dynamic", "int8")


def check_quantize(quantize):
    if quantize not in QUANTIZATIONS:
        raise ValueError(
            f"Unknown quantize: {quantize!r}. Accepted: {', '.join(QUANTIZATIONS)}"
        )


def convert(model, quantize="none", representative=None):
    """The .tflite bytes of `model`; int8 needs `representative` pixels."""
    check_quantize(quantize)
    if quantize == "int8" and representative is None:
        raise ValueError("quantize='int8' needs representative images to calibrate on")
    workdir = f"ram://export-tflite-{os.getpid()}-{uuid.uuid4().hex}"
    try:
        model.export(workdir, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(workdir)
        if quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantize == "int8":
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.representative_dataset = lambda: (
                [image[None]] for image in representative
            )
        return converter.convert()
    finally:
        if tf.io.gfile.exists(workdir):
            tf.io.gfile.rmtree(workdir)


def run(tflite_model, pixels):
    """Runs a .tflite model (bytes or path) on float32 pixels [N, H, W, 3]."""
    if isinstance(tflite_model, bytes):
        interpreter = Interpreter(model_content=tflite_model)
    else:
        interpreter = Interpreter(model_path=tflite_model)
    (given,), (output,) = interpreter.get_input_details(), interpreter.get_output_details()
    interpreter.resize_tensor_input(given["index"], pixels.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(given["index"], np.asarray(pixels, given["dtype"]))
    interpreter.invoke()
    return interpreter.get_tensor(output["index"])


def export_tflite(
    model,
    output_dir,
    *,
    quantize="none",
    images=None,
    name=None,
    overwrite=False,
):
    """Writes `output_dir/<name>_<quantize or float32>.tflite` and checks it.

    Args:
        model: a Keras model taking float32 RGB in [0, 255] (source.load_model).
        quantize: one of QUANTIZATIONS.
        images: `source.Images`: calibration data for int8, and the images
            the file is compared with Keras on (default: 8 random images,
            float modes only).
        name: the file's stem (default: `model.name`).
        overwrite: replace an existing file.

    Returns:
        A `source.Report`.
    """
    check_quantize(quantize)
    suffix = "float32" if quantize == "none" else quantize
    source.check_folder(output_dir)
    path = os.path.join(output_dir, f"{name or model.name}_{suffix}.tflite")
    if os.path.exists(path) and not overwrite:
        raise ValueError(
            f"TFLite file exists: {path!r}. Pass overwrite (--overwrite) to replace it."
        )
    if images is None:
        if quantize == "int8":
            raise ValueError(
                "int8 quantization needs a representative dataset (an image "
                "folder or tfds:NAME[:SPLIT]) to calibrate on"
            )
        height, _ = source.input_size(model)
        images = source.load_images(None, height, None, limit=8)
    expected = source.keras_outputs(model, images)
    content = convert(model, quantize, images.pixels)
    # Checked before it is written: no file whose outputs are not finite.
    diff, agree = source.compare(expected, run(content, images.pixels), f"The TFLite model {path!r}")
    files.write_bytes(path, content)
    return source.Report(path, len(content), diff, agree, images.source)
