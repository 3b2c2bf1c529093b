"""`python -m keras_resnet.reproduce EXPERIMENT`: the paper's experiments
(keras_resnet.programs.reproduce; `keras-resnet-reproduce` once installed)."""

from keras_resnet.programs.reproduce import entry_point

if __name__ == "__main__":
    entry_point()
