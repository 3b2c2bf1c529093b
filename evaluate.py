"""`python evaluate.py --flags`: keras_resnet.commands.evaluate (`keras-resnet-evaluate` once installed)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow is imported.

from keras_resnet.commands.evaluate import entry_point  # noqa: E402

if __name__ == "__main__":
    entry_point()
