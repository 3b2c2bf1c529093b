import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow is imported.

from keras_resnet.commands.export import entry_point  # noqa: E402

entry_point()
