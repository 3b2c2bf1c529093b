"""README's Python snippets run as written, against a small exported ResNet-20.

Each snippet is the first ```python block after a marker line of README.md
(`readme_snippet`): README itself is the text under test.
"""

import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_resnet
from keras_resnet.export import export_saved_model
from keras_resnet.export import export_tflite
from keras_resnet.export import load_images
from keras_resnet.models import metadata

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
TFLITE = "Run it with LiteRT (`ai-edge-litert`):"
SAVED_MODEL = "Load it in Python with TensorFlow (both signatures, and the metadata):"


def snippet(marker):
    """The first ```python block after the line `marker` of README.md."""
    with open(README) as f:
        text = f.read()
    assert marker in text, f"README.md has no line {marker!r}"
    found = re.search(r"```python\n(.*?)```", text[text.index(marker):], re.DOTALL)
    return found[1]


def _run(code, folder, monkeypatch):
    """Runs `code` in `folder` as a script; returns its global names."""
    monkeypatch.chdir(folder)
    names = {"__name__": "__main__"}
    exec(compile(code, README, "exec"), names)
    return names


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A folder holding what README's commands write for ResNet-20:
    serving/resnet20/1, tflite/resnet20_int8.tflite, and a cat.jpg."""
    folder = tmp_path_factory.mktemp("readme")
    keras.utils.set_random_seed(0)
    network = keras_resnet.ResNet20()
    mean = keras_resnet.MeanSubtraction(np.full((32, 32, 3), 120.0, "float32"))
    model = keras_resnet.with_preprocessing(network, mean)
    info = metadata.ModelInfo(model="resnet20", family="cifar", image_size=32, test_view="single",
                              class_names=[f"class{i}" for i in range(10)],
                              preprocessing="pixel_mean")
    export_saved_model(model, str(folder / "serving"), info=info)
    export_tflite(model, str(folder / "tflite"), info=info, quantize="int8",
                  images=load_images(None, 32, None, limit=8))
    pixels = np.random.RandomState(0).randint(0, 256, (48, 40, 3)).astype("uint8")
    (folder / "cat.jpg").write_bytes(tf.io.encode_jpeg(pixels).numpy())
    return folder, model


def test_tflite_snippet_runs_as_written(exported, monkeypatch):
    folder, _ = exported
    names = _run(snippet(TFLITE), folder, monkeypatch)
    assert names["probabilities"].shape == (1, 10)
    assert names["probabilities"].sum() == pytest.approx(1, abs=1e-2)  # int8 outputs


def test_saved_model_snippet_runs_as_written(exported, monkeypatch):
    folder, model = exported
    names = _run(snippet(SAVED_MODEL), folder, monkeypatch)
    # serving_default computes what the Keras model does, on the same images.
    expected = model.predict(names["images"], verbose=0)
    np.testing.assert_allclose(names["scores"]["probabilities"].numpy(), expected, atol=1e-5)
    assert names["scores"]["top_k_classes"].shape == (2, 5)
    assert names["scores_jpeg"]["probabilities"].shape == (1, 10)
