"""The ImageNet experiments at the tiny scale on a generated image folder:
Fig. 4 and Table 2 hold the runs' own numbers (10-crop, option A), Tables 3
and 4 score given models by their protocols, beside the paper's rows."""

import csv
import json
import os

import keras
import pytest

from keras_resnet.evaluation import artefacts
from keras_resnet.evaluation import protocols
from keras_resnet.models import metadata
from keras_resnet.models import preprocessing
from keras_resnet.models import resnet
from keras_resnet.reproduce import experiments
from keras_resnet.reproduce import imagenet
from keras_resnet.reproduce import runs
from keras_resnet.training import callbacks


def _csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def _evaluation(model_dir):
    with open(os.path.join(model_dir, runs.EVALUATION)) as f:
        return json.load(f)


def test_fig4_and_table2_write_the_runs_own_numbers(tmp_path, image_folder):
    options = runs.Options(dataset=str(image_folder), scale="tiny", runs_dir=str(tmp_path / "runs"),
                           verbose=0)
    experiments.run_experiment("fig4", options, str(tmp_path / "fig4"), say=lambda _: None)
    rows = _csv(tmp_path / "fig4" / "fig4.csv")
    assert [r["run"] for r in rows] == ["plain18", "resnet18"]
    for row in rows:
        model_dir = tmp_path / "runs" / row["run"]
        evaluation = _evaluation(model_dir)
        history = callbacks.read_history(str(model_dir / "history.csv"))
        assert evaluation["protocol"] == "10crop"  # Table 2's
        assert float(row["10-crop top-1 error (%)"]) == pytest.approx(100 * evaluation["top1_error"])
        assert float(row["train error (%)"]) == pytest.approx(100 * (1 - history[-1]["accuracy"]))
        assert int(row["iterations"]) == history[-1]["iterations"] == 2
    # The residual net has the first comparison's option A shortcuts.
    model = keras.models.load_model(tmp_path / "runs" / "resnet18" / "model.keras")
    assert imagenet.paper_row(model) is None  # ResNet-18 is in Table 2 only
    inner = [layer.name for layer in model.get_layer("resnet18").layers]
    assert sum(n.endswith("_0_pad") for n in inner) == 3 and not [n for n in inner if n.endswith("_0_conv")]
    figure = imagenet.fig4_figure([runs.read_result(s) for s in imagenet.fig4_specs(options)])
    assert [ax.get_title() for ax in figure.axes] == ["plain", "ResNet"]
    assert [len(ax.get_lines()) for ax in figure.axes] == [2, 2]
    assert (tmp_path / "fig4" / "fig4.png").read_bytes()[:4] == b"\x89PNG"

    # table2 trains nothing: fig4's runs, beside the paper's column.
    said = []
    experiments.run_experiment("table2", options, str(tmp_path / "table2"), say=said.append)
    assert sum("finished, reused" in line for line in said) == 2
    table2 = {r["model"]: r for r in _csv(tmp_path / "table2" / "table2.csv")}
    assert float(table2["plain18"]["paper (%)"]) == 27.94
    assert float(table2["resnet18"]["paper (%)"]) == 27.88
    assert float(table2["resnet18"]["top-1 error (%)"]) == pytest.approx(
        100 * _evaluation(tmp_path / "runs" / "resnet18")["top1_error"])


def test_tables_3_and_4_score_given_models_by_their_protocols(tmp_path, image_folder):
    # A ResNet-34 with option C, as a model file evaluate.py takes (its
    # metadata says what it is), scored 10-crop (Table 3) and multi-scale
    # (Table 4): the numbers are those evaluate.py's protocols give.
    model = preprocessing.with_preprocessing(
        resnet.get_model("resnet34", weights=None, input_shape=(32, 32, 3), classes=3,
                         shortcut="C"), preprocessing.caffe_preprocessing())
    path = str(tmp_path / "resnet34c.keras")
    model.save(path)
    metadata.write_keras(path, metadata.ModelInfo(
        model="resnet34", family="imagenet", image_size=32, test_view="center",
        class_names=("class0", "class1", "class2"), preprocessing="caffe"))
    for table, protocol in (("table3", "10crop"), ("table4", "multiscale")):
        options = runs.Options(dataset=str(image_folder), scale="tiny", runs_dir=str(tmp_path / "runs"),
                               models=(path,), verbose=0)
        summary = experiments.run_experiment(table, options, str(tmp_path / table), say=lambda _: None)
        (row,) = _csv(tmp_path / table / f"{table}.csv")
        expected, _, _ = protocols.evaluate_on(
            artefacts.load_artefact(path, any_size=protocol == "multiscale"), str(image_folder),
            protocol=protocol, verbose=0)
        assert summary["evaluations"][path]["protocol"] == protocol
        assert row["model"] == path and row["paper row"] == "ResNet-34 C"
        assert row["transform"] == {  # at 32 px: the paper's 256 for 224 scaled to 37
            "table3": "shorter side resized to 37 (bilinear), 10 crops of 32x32 (4 corners, centre, "
                      "their flips)",
            "table4": "the whole image, shorter side resized to each of 32, 37, 55, 69, 91 (bilinear)",
        }[table]
        assert float(row["top-1 error (%)"]) == pytest.approx(100 * expected["top1_error"])
        assert float(row["top-5 error (%)"]) == pytest.approx(100 * expected["top5_error"])
        paper = imagenet.TABLE3 if table == "table3" else imagenet.TABLE4
        assert (float(row["paper top-1 (%)"]), float(row["paper top-5 (%)"])) == paper["ResNet-34 C"]


@pytest.mark.parametrize("name, shortcut, row", [
    ("plain34", None, "plain-34"), ("resnet34", "A", "ResNet-34 A"), ("resnet34", "B", "ResNet-34 B"),
    ("resnet34", "C", "ResNet-34 C"), ("resnet50", None, "ResNet-50"), ("resnet18", None, None)])
def test_a_model_is_matched_to_its_row_of_tables_3_and_4(name, shortcut, row):
    model = resnet.get_model(name, weights=None, input_shape=(32, 32, 3), shortcut=shortcut)
    wrapped = keras.Sequential([keras.Input((32, 32, 3)), model])  # as train.py's models hold it
    assert imagenet.paper_row(model) == imagenet.paper_row(wrapped) == row
    if row is not None:
        assert row in imagenet.TABLE3


def test_the_tables_hold_the_papers_figures():
    # Tables 2-4 of the paper (ImageNet val, top-1 / top-5 error %).
    assert imagenet.TABLE2 == {"plain18": 27.94, "plain34": 28.54, "resnet18": 27.88,
                               "resnet34": 25.03}
    assert imagenet.TABLE3["ResNet-34 B"] == (24.52, 7.46)
    assert imagenet.TABLE3["ResNet-152"] == (21.43, 5.71)
    assert imagenet.TABLE4["ResNet-152"] == (19.38, 4.49)
    assert set(imagenet.TABLE4) < set(imagenet.TABLE3)
