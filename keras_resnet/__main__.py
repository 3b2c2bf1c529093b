"""`python -m keras_resnet`: each model's parameters and FLOPs next to the
paper's (keras_resnet.programs.sizes)."""

from keras_resnet.programs.sizes import entry_point

if __name__ == "__main__":
    entry_point()
