"""`python evaluate.py --flags`: evaluates a model with the paper's test protocols (keras_resnet.programs.evaluate; `keras-resnet-evaluate` once installed)."""

# keras_resnet.programs.cli.prepare_program sets the logging before TensorFlow is imported.
from keras_resnet.programs.evaluate import entry_point

if __name__ == "__main__":
    entry_point()
