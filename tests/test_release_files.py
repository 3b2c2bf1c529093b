"""Files that earlier releases wrote load, evaluate and export unchanged: the
names Keras records for our registered layers and schedule, and the metadata
we add, are a file format (tests/fixtures/make_release_model.py wrote them)."""

import glob
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_resnet.data import sources
from keras_resnet.evaluation import artefacts
from keras_resnet.evaluation import protocols
from keras_resnet.export import saved_model
from keras_resnet.export import tflite
from keras_resnet.models import metadata
from keras_resnet.training import recipes
from tests.fixtures import make_release_model

RELEASES = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "fixtures", "release_*.keras")))


def test_the_current_release_has_a_file():
    # A release that changes the format adds its file (run the script).
    assert len(RELEASES) >= 1


@pytest.mark.parametrize("path", RELEASES, ids=os.path.basename)
def test_a_release_file_loads_evaluates_and_exports_unchanged(path, tmp_path):
    with open(path[: -len(".keras")] + ".json") as f:
        expected = np.array(json.load(f)["outputs"], "float32")
    images = make_release_model.images()
    # Keras alone (safe mode: only registered classes), with its optimizer.
    model = keras.saving.load_model(path)
    np.testing.assert_allclose(model.predict(images, verbose=0), expected, atol=1e-6)
    assert int(model.optimizer.iterations) == 1  # its state, as train.py's files hold it
    schedule = model.optimizer._learning_rate
    assert isinstance(schedule, recipes.RecipeSchedule)
    assert [float(schedule(step)) for step in (0, 5, 15, 25)] == pytest.approx([0.01, 0.1, 0.01, 0.001])
    # Our loader: the metadata, and the model with BN folded.
    artefact = artefacts.load_artefact(path)
    version = os.path.basename(path)[len("release_"): -len(".keras")]
    assert artefact.info == metadata.ModelInfo(
        model="tiny", family="cifar", image_size=8, test_view="single",
        class_names=("cat", "dog", "fox"), preprocessing="pixel_mean", package_version=version)
    np.testing.assert_allclose(artefact.predict(images), expected, atol=1e-5)
    # Evaluated as its metadata says (labelled with its own answers: 100%).
    split = sources.Split(examples=tf.data.Dataset.from_tensor_slices(
        (images.astype("uint8"), expected.argmax(-1).astype("int32"))), count=4,
        class_names=("cat", "dog", "fox"))
    result, _ = protocols.evaluate(artefact, split, verbose=0)
    assert (result["protocol"], result["top1_accuracy"]) == ("single", 1.0)
    # Exported, then loaded as evaluate.py and serving would.
    serving = saved_model.export_saved_model(artefact.model, str(tmp_path / "serving"),
                                             info=artefact.info).path
    lite = tflite.export_tflite(artefact.model, str(tmp_path / "lite"), info=artefact.info).path
    for exported in (serving, lite):
        loaded = artefacts.load_artefact(exported)
        assert loaded.info == artefact.info
        np.testing.assert_allclose(loaded.predict(images), expected, atol=1e-5)
