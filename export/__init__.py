"""Exports keras_resnet models: SavedModel for TF Serving, TFLite for LiteRT.

Every artefact takes float32 RGB in [0, 255] (or, for `serving_bytes`, JPEG
or PNG bytes), applies the model's preprocessing inside, and is compared with
the Keras model when it is written. `python -m export --help` for the CLI.
"""

from export.saved_model import export_saved_model
from export.source import Report
from export.source import load_images
from export.source import load_model
from export.tflite import export_tflite
