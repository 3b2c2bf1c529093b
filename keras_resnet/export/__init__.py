"""Exports keras_resnet models: SavedModel for TF Serving, TFLite for LiteRT.

Every artefact takes float32 RGB in [0, 255] (or, for `serving_bytes`,
encoded JPEG, PNG, GIF, BMP or WebP bytes, of at most `max_pixels`), applies
the model's preprocessing inside, and is compared with the Keras model before
it is put in place, with the umask's permissions (keras_resnet.files). Each
carries the model's ModelInfo (keras_resnet.models.metadata): a SavedModel as an
asset file and a `metadata` signature, a `.tflite` file as a metadata entry.
`python -m export --help` for the CLI.
"""

from keras_resnet.export.inputs import Report
from keras_resnet.export.inputs import load_exportable
from keras_resnet.export.inputs import load_images
from keras_resnet.export.inputs import load_model
from keras_resnet.export.saved_model import export_saved_model
from keras_resnet.export.tflite import export_tflite

__all__ = ["Report", "export_saved_model", "export_tflite", "load_exportable", "load_images", "load_model"]

load_artefact = load_exportable  # its name before release 0.2, kept for the code that used it
