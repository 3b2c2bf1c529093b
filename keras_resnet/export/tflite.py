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

The model's ModelInfo (keras_resnet.models.metadata) is the file's metadata entry
"keras_resnet" (the flatbuffer's `metadata` table, as TFLite's own
"min_runtime_version"): its JSON in a buffer of the file. Runtimes ignore it;
keras_resnet.evaluation.artefacts.tflite_info reads it back.

Unlike the SavedModel's `serving_default`, a `.tflite` file cannot refuse a
request: pixels outside [0, 255] are neither refused nor clamped (clamping
would hide the caller's bug behind plausible scores), and very large ones
(3e38) give NaN scores. The caller keeps its input in [0, 255].
"""

import os
import uuid

import flatbuffers
import keras
import numpy as np
import tensorflow as tf
from ai_edge_litert import schema_py_generated as schema

from keras_resnet import files
from keras_resnet.errors import ArgumentError
from keras_resnet.evaluation import artefacts
from keras_resnet.export import inputs
from keras_resnet.models.metadata import ModelInfo

QUANTIZATIONS = ("none", "float16", "dynamic", "int8")
INT8_NEEDS_IMAGES = ("must be given for int8 quantization: representative images (of an image "
                     "folder or tfds:NAME[:SPLIT]) to calibrate its ranges on")


def check_quantize(quantize: str) -> None:
    if quantize not in QUANTIZATIONS:
        raise ValueError(
            f"Unknown quantize: {quantize!r}. Accepted: {', '.join(QUANTIZATIONS)}"
        )


def convert(model: keras.Model, quantize: str = "none", representative: np.ndarray | None = None,
            converter_options: dict | None = None) -> bytes:
    """The .tflite bytes of `model`; int8 needs `representative` pixels.
    `converter_options`: TFLiteConverter attributes to set (benchmarks/
    bench_tflite.py measures them)."""
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
        for name, value in (converter_options or {}).items():
            if not hasattr(converter, name):
                raise ValueError(f"Unknown TFLiteConverter option: {name!r}")
            setattr(converter, name, value)
        return converter.convert()
    finally:
        if tf.io.gfile.exists(workdir):
            tf.io.gfile.rmtree(workdir)


def with_metadata(content: bytes, info: ModelInfo) -> bytes:
    """The .tflite bytes `content` with `info` as its "keras_resnet" metadata
    entry (one already there is replaced)."""
    model = schema.ModelT.InitFromPackedBuf(bytearray(content), 0)
    name = artefacts.TFLITE_METADATA
    entry = next((m for m in model.metadata or [] if m.name in (name, name.encode())), None)
    if entry is None:
        entry = schema.MetadataT()
        entry.name, entry.buffer = name, len(model.buffers)
        model.buffers.append(schema.BufferT())
        model.metadata = (model.metadata or []) + [entry]
    model.buffers[entry.buffer].data = np.frombuffer(info.to_json().encode(), np.uint8)
    builder = flatbuffers.Builder(len(content) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def predict_tflite(tflite_model: bytes | str, pixels: np.ndarray) -> np.ndarray:
    """Runs a .tflite model (bytes or path) on float32 pixels [N, H, W, 3]."""
    if isinstance(tflite_model, bytes):
        return artefacts.tflite_artefact(tflite_model, "bytes").predict(pixels)
    return artefacts.load_tflite(tflite_model).predict(pixels)


def export_tflite(
    model: keras.Model,
    output_dir: str,
    *,
    info: ModelInfo | None = None,
    quantize: str = "none",
    images: inputs.Images | None = None,
    name: str | None = None,
    overwrite: bool = False,
) -> inputs.Report:
    """Writes `output_dir/<name>_<quantize or float32>.tflite` and checks it.

    Args:
        model: a Keras model taking float32 RGB in [0, 255] (inputs.load_exportable).
        info: the model's ModelInfo, the file's metadata (None: none).
        quantize: one of QUANTIZATIONS.
        images: `inputs.Images`: calibration data for int8, and the images
            the file is compared with Keras on (default: 8 random images,
            float modes only).
        name: the file's stem (default: `model.name`).
        overwrite: replace an existing file.

    Returns:
        A `inputs.Report`.
    """
    check_quantize(quantize)
    suffix = "float32" if quantize == "none" else quantize
    inputs.check_folder(output_dir)
    path = os.path.join(output_dir, f"{name or model.name}_{suffix}.tflite")
    if os.path.exists(path) and not overwrite:
        raise ArgumentError("overwrite", overwrite, f"must be set to replace the TFLite file {path!r}, which exists")
    if images is None:
        if quantize == "int8":
            raise ArgumentError("images", None, INT8_NEEDS_IMAGES)
        height, _ = inputs.input_size(model)
        images = inputs.load_images(None, height, None, limit=8)
    expected = inputs.keras_outputs(model, images)
    content = convert(model, quantize, images.pixels)
    if info is not None:
        content = with_metadata(content, info)
    # Checked before it is written: no file whose outputs are not finite.
    diff, agree = inputs.compare(expected, predict_tflite(content, images.pixels), f"The TFLite model {path!r}")
    files.write_bytes(path, content)
    return inputs.Report(path, len(content), diff, agree, images.source)
