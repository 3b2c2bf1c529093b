"""`python evaluate.py --flags`: evaluates a model with the paper's test protocols (keras_resnet.programs.evaluate; `keras-resnet-evaluate` once installed)."""

# The program's module prepares the process (logging, a missing TensorFlow) before TensorFlow is imported.
from keras_resnet.programs.evaluate import entry_point

if __name__ == "__main__":
    entry_point()
