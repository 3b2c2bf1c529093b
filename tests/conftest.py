"""Test session setup: two logical CPU devices, so MirroredStrategy has two
replicas without a GPU. This must run before TensorFlow initialises its
devices, hence here; tests on one device are unaffected (they use CPU:0)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# The subprocesses that the tests start run TensorFlow as the programs do
# (keras_resnet.programs.cli.prepare_program asks for oneDNN), `python -c`
# ones included; this process's TensorFlow, imported above, keeps its default.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
    )
except RuntimeError:  # devices already initialised by another plugin.
    pass


def write_image_folder(root, classes=3, per_class=5, size=12):
    """train/ and val/ of JPEG and PNG images, and 2 corrupt training files."""
    rng = np.random.RandomState(0)
    for split in ("train", "val"):
        for c in range(classes):
            os.makedirs(root / split / f"class{c}")
            for i in range(per_class):
                image = rng.randint(0, 255, (size, size + i, 3)).astype("uint8")
                encode = tf.io.encode_png if i % 2 else tf.io.encode_jpeg
                ext = ".png" if i % 2 else ".jpg"
                tf.io.write_file(str(root / split / f"class{c}" / f"{i}{ext}"), encode(image))
    jpeg = tf.io.encode_jpeg(np.zeros((size, size, 3), "uint8")).numpy()
    (root / "train" / "class0" / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (root / "train" / "class1" / "garbage.png").write_bytes(b"not an image at all")
    (root / "train" / "class1" / "notes.txt").write_text("ignored")
    return root


@pytest.fixture
def image_folder(tmp_path):
    return write_image_folder(tmp_path / "images")


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same Python, NumPy and Keras random state, so
    a model's initial weights, and any tolerance that depends on them, are the
    same in every run and in any order the workers take the tests."""
    import keras

    keras.utils.set_random_seed(0)
