"""Table 1's counts by arithmetic on the variant table (keras_resnet.models.complexity.counts):
the built models' own counts, and `table1` (keras_resnet.reproduce) prints them
without building a model."""

import math
import os
import re

import keras
import pytest

from keras_resnet import models
from keras_resnet.models import complexity
from keras_resnet.reproduce import experiments
from keras_resnet.reproduce import runs


CASES = [
    ("resnet18", 224, {}),
    ("resnet50", 97, {}),
    ("resnet50", 64, {"version": "v1.5"}),
    ("resnet34", 65, {"shortcut": "C"}),
    ("resnet18", 64, {"shortcut": "A"}),
    ("plain18", 64, {}),
    ("resnet20", 32, {}),
    ("resnet20", 40, {"shortcut": "B"}),
    ("resnet32", 32, {"shortcut": "C"}),
    ("plain20", 32, {}),
]


# Odd sizes (65, 97) check that every strided layer rounds up as the builder's padding does.
@pytest.mark.parametrize("name, size, options", CASES,
                         ids=["-".join([n, str(s), *o.values()]) for n, s, o in CASES])
def test_counts_are_the_built_models(name, size, options):
    model = models.get_model(name, weights=None, input_shape=(size, size, 3), **options)
    # Trainable ones only (Table 6): BN's moving mean and variance are not learned.
    statistics = sum(math.prod(w.shape) for w in model.non_trainable_weights)
    assert complexity.counts(name, size, **options) == (
        model.count_params() - statistics, complexity.count_flops(model))


def test_counts_refuse_what_the_builder_refuses_in_its_words():
    with pytest.raises(ValueError, match=r"at least 32x32 for this model\. Received: image_size=31$"):
        complexity.counts("resnet50", 31)
    for options in ({"shortcut": "D"}, {"version": "v2"}):
        with pytest.raises(ValueError) as built:
            models.get_model("resnet50", weights=None, **options)
        with pytest.raises(ValueError) as counted:
            complexity.counts("resnet50", **options)
        assert str(counted.value) == str(built.value)


def _no_layer(*args, **kwargs):
    raise AssertionError("table1 built a Keras layer")


def test_table1_prints_the_papers_counts_and_its_files_and_builds_no_model(
        tmp_path, monkeypatch, capsys):
    # Every layer, Input and Model included, starts in Layer.__init__.
    monkeypatch.setattr(keras.layers.Layer, "__init__", _no_layer)
    out = str(tmp_path / "table1")
    summary = experiments.run_experiment("table1", runs.Options(runs_dir=str(tmp_path / "runs")),
                                         out)
    printed = capsys.readouterr().out
    rows = {cells[0]: cells[1:] for cells in (
        [c.strip() for c in line.strip("|").split("|")] for line in printed.splitlines()
        if line.startswith("| "))}
    # Paper Table 1's FLOPs (multiply-adds, 224x224), within 3% as in
    # tests/models/test_complexity.py::test_imagenet_flops_match_table_1.
    for name, paper in (("resnet18", 1.8), ("resnet34", 3.6), ("resnet50", 3.8),
                        ("resnet101", 7.6), ("resnet152", 11.3)):
        assert float(rows[name][1]) == pytest.approx(paper, rel=0.03), name
        assert rows[name][2] == f"{paper}"
    # ResNet-50: 25,557,032 parameters in torchvision's and keras.applications'
    # ResNet50 (weights of the same net); Table 6: ResNet-20's 0.27M.
    assert rows["resnet50"][0] == "25.56"
    assert rows["resnet20"][1:3] == ["0.270", "0.27"]
    written = re.findall(r"^Wrote (.+)$", printed, flags=re.MULTILINE)
    names = ["table1.csv", "table1.md", "table6_architecture.csv", "table6_architecture.md",
             "summary.json"]
    assert written == [os.path.join(out, name) for name in names]
    assert all(os.path.isfile(path) for path in written)
    assert [r["params"] for r in summary["rows"] if r["model"] == "resnet50"] == [25_557_032]
