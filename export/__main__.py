"""`python -m export --flags`: exports a model as a SavedModel or a TFLite file (keras_resnet.programs.export; `keras-resnet-export` once installed)."""

# keras_resnet.programs.cli.prepare_program sets the logging before TensorFlow is imported.
from keras_resnet.programs.export import entry_point

entry_point()
