"""Writes `release_<version>.keras`: a tiny model holding every layer and
schedule that keras_resnet registers with Keras, saved as train.py saves a
model (compiled, with its metadata), and `release_<version>.json`: its
outputs on fixed images. The names Keras records for registered classes are
part of the file format; tests/test_release_files.py loads the files of
every release with the current code.

    python -m tests.data.make_release_model  # from the repository root
"""

import json
import os

import keras
import numpy as np

import keras_resnet
from keras_resnet import metadata

HERE = os.path.dirname(os.path.abspath(__file__))
SIZE = 8


def images():
    """The fixed images the outputs are recorded on: 8-bit RGB, as float32."""
    return np.random.RandomState(0).randint(0, 256, (4, SIZE, SIZE, 3)).astype("float32")


def _build():
    """Per-pixel mean, a conv stem, and one residual block whose shortcut is
    option A (ZeroPadShortcut), in keras_resnet's Conv2D and BN."""
    from keras_resnet import layers

    rng = np.random.RandomState(1)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras_resnet.MeanSubtraction(rng.uniform(100, 150, (SIZE, SIZE, 3)), name="preprocessing")(inputs)
    x = layers.Conv2D(4, 3, padding="same", use_bias=False, name="conv1_conv")(x)
    x = layers.BatchNormalization(name="conv1_bn")(x)
    x = keras.layers.ReLU(name="conv1_relu")(x)
    shortcut = layers.ZeroPadShortcut(8, strides=2, name="block1_shortcut")(x)
    y = layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="block1_conv")(x)
    y = layers.BatchNormalization(name="block1_bn")(y)
    x = keras.layers.ReLU(name="block1_out")(keras.layers.Add(name="block1_add")([shortcut, y]))
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, outputs, name="tiny")
    for variable in model.weights:  # trained-looking values, BN statistics included
        shape = tuple(variable.shape)
        if "moving_variance" in variable.path:
            variable.assign(rng.uniform(0.5, 2.0, shape))
        elif "kernel" in variable.path:  # small: the scores stay far from one-hot
            variable.assign(rng.normal(0, 0.05, shape))
        elif "preprocessing" not in variable.path:
            variable.assign(rng.normal(0, 0.3, shape))
    return model


def main():
    from keras_resnet import recipes

    model = _build()
    schedule = recipes.RecipeSchedule(0.1, boundaries=(10, 20), total_steps=30,
                                      warmup="constant", warmup_steps=2, warmup_learning_rate=0.01)
    model.compile(optimizer=keras.optimizers.SGD(schedule, momentum=0.9),
                  loss="categorical_crossentropy")
    # One step, so that the file holds the optimizer's state as train.py's do.
    model.fit(images(), np.eye(3)[[0, 1, 2, 0]], batch_size=4, verbose=0)
    name = f"release_{keras_resnet.__version__}"
    path = os.path.join(HERE, f"{name}.keras")
    model.save(path)
    metadata.write_keras(path, metadata.ModelInfo(
        model="tiny", family="cifar", image_size=SIZE, test_view="single",
        class_names=("cat", "dog", "fox"), preprocessing="pixel_mean"))
    outputs = model.predict(images(), verbose=0)
    with open(os.path.join(HERE, f"{name}.json"), "w") as f:
        json.dump({"outputs": outputs.tolist()}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
