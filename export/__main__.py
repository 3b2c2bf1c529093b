"""`python -m export --flags`: exports a model as a SavedModel or a TFLite file (keras_resnet.programs.export; `keras-resnet-export` once installed)."""

# The program's module prepares the process (logging, a missing TensorFlow) before TensorFlow is imported.
from keras_resnet.programs.export import entry_point

entry_point()
