"""`python train.py --flags`: trains a ResNet (keras_resnet.programs.train; `keras-resnet-train` once installed)."""

# keras_resnet.programs.cli.prepare_program sets the logging before TensorFlow is imported.
from keras_resnet.programs.train import entry_point

if __name__ == "__main__":
    entry_point()
