"""ModelInfo in a .keras file: written by train.py, read by evaluate and export."""

import json
import zipfile

import keras
import numpy as np
import pytest

from keras_resnet.models import metadata


def _info(**changes):
    fields = dict(model="resnet20", family="cifar", image_size=32, test_view="single",
                  class_names=["cat", "dog"], preprocessing="pixel_mean")
    return metadata.ModelInfo(**{**fields, **changes})


@pytest.fixture
def keras_file(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="predictions")])
    path = str(tmp_path / "model.keras")
    model.save(path)
    return path, model


def test_round_trip_keeps_the_archive_as_keras_wrote_it(keras_file):
    path, model = keras_file
    with zipfile.ZipFile(path) as archive:
        before = {m.filename: archive.read(m) for m in archive.infolist()}
    assert metadata.read_keras(path) is None  # a user's own file

    metadata.write_keras(path, _info())

    assert metadata.read_keras(path) == _info()
    with zipfile.ZipFile(path) as archive:
        after = {m.filename: archive.read(m) for m in archive.infolist()}
    # Still Keras' three members (a fourth makes Keras unpack the archive on
    # every load), the weights byte for byte, Keras' own metadata kept.
    assert list(after) == list(before) and len(after) == 3
    assert after["model.weights.h5"] == before["model.weights.h5"]
    keras_fields = json.loads(before["metadata.json"])
    assert {k: v for k, v in json.loads(after["metadata.json"]).items() if k != "keras_resnet"} == keras_fields
    loaded = keras.saving.load_model(path)
    x = np.arange(6, dtype="float32").reshape(2, 3)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_version_is_the_package_version_and_class_names_are_strings():
    import keras_resnet

    info = _info(class_names=[0, 1, 2])
    assert info.package_version == keras_resnet.__version__
    assert info.class_names == ("0", "1", "2") and info.num_classes == 3
    assert metadata.ModelInfo.from_json(info.to_json(), "x") == info


def test_later_fields_are_ignored_and_bad_ones_refused_naming_the_artefact():
    fields = json.loads(_info().to_json())
    assert metadata.ModelInfo.from_json(json.dumps({**fields, "added_later": 1}), "x") == _info()
    with pytest.raises(ValueError, match=r"model.keras holds unreadable keras_resnet metadata .*family"):
        metadata.ModelInfo.from_json(json.dumps({**fields, "family": "mnist"}), "model.keras")
    with pytest.raises(ValueError, match="model.keras holds unreadable keras_resnet metadata"):
        metadata.ModelInfo.from_json("{not json", "model.keras")
    with pytest.raises(ValueError, match=r"image_size must be a positive integer. Received: image_size=0"):
        _info(image_size=0)


def test_the_families_metadata_accepts_are_the_models_families():
    from keras_resnet import models

    assert set(metadata.FAMILY_NAMES) == set(models.FAMILIES)
