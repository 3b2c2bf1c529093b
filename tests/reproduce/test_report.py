"""keras_resnet.reproduce.report: tables, summaries and curves written whole,
and Table 1 / Table 6's architecture column measured beside the paper's."""

import ast
import csv
import json
import os
import re
import sys

import pytest
from matplotlib.colors import to_rgba

from keras_resnet.models import complexity
from keras_resnet.reproduce import report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"IEND\xaeB`\x82"


def _read_csv(path):
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = list(reader)
    assert all(len(row) == len(header) for row in rows), path
    return [dict(zip(header, row)) for row in rows]


def _markdown_cells(path):
    with open(path) as f:
        text = f.read()
    assert text.endswith("\n")
    lines = text.splitlines()
    assert all(line.startswith("|") and line.endswith("|") for line in lines)
    # Cells lie between the "|"s that are not escaped ("\\|" is a "|" in a cell).
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines]


def _assert_complete(folder):
    """Every file in `folder` is whole, and no staging file is left."""
    names = os.listdir(folder)
    assert [n for n in names if ".partial-" in n] == []
    for name in names:
        path = os.path.join(folder, name)
        if name.endswith(".csv"):
            _read_csv(path)
        elif name.endswith(".md"):
            cells = _markdown_cells(path)
            assert len({len(row) for row in cells}) == 1, name
        elif name.endswith(".json"):
            with open(path) as f:
                json.load(f)
        elif name.endswith(".png"):
            with open(path, "rb") as f:
                data = f.read()
            assert data.startswith(PNG_SIGNATURE) and data.endswith(PNG_END), name
        else:
            pytest.fail(f"unexpected file {name}")


# write_table and write_summary.

COLUMNS = ["model", "depth", "error", "params", "note"]
ROWS = [
    {"model": "resnet20", "depth": 20, "error": 8.754321, "params": 0.2703, "note": None},
    {"model": "a|b", "depth": 1202, "error": 7.93, "params": 19.4, "note": "x", "extra": 1},
    {"model": "plain20", "depth": 20, "error": None},  # params and note missing
]


def test_write_table_csv_holds_every_value_at_full_precision(tmp_path):
    report.write_table(str(tmp_path / "t"), COLUMNS, ROWS, formats={"params": "{:.3f}"})
    rows = _read_csv(tmp_path / "t.csv")
    with open(tmp_path / "t.csv") as f:
        assert f.readline().strip() == ",".join(COLUMNS)
    assert len(rows) == len(ROWS)
    for read, row in zip(rows, ROWS):
        assert read["model"] == row["model"]
        assert int(read["depth"]) == row["depth"]
        for key in ("error", "params"):
            value = row.get(key)
            assert (read[key] == "") if value is None else float(read[key]) == value
        assert read["note"] == (row.get("note") or "")
        assert "extra" not in read
    _assert_complete(tmp_path)


def test_write_table_markdown_formats_per_column_and_shows_none_as_dash(tmp_path):
    report.write_table(str(tmp_path / "t"), COLUMNS, ROWS, formats={"params": "{:.3f}"})
    cells = _markdown_cells(tmp_path / "t.md")
    assert cells[0] == COLUMNS
    assert cells[1] == ["---"] * len(COLUMNS)
    assert cells[2:] == [
        ["resnet20", "20", "8.75", "0.270", "-"],
        ["a\\|b", "1202", "7.93", "19.400", "x"],
        ["plain20", "20", "-", "-", "-"],
    ]
    _assert_complete(tmp_path)


def test_write_table_with_a_bad_format_writes_neither_file(tmp_path):
    report.write_table(str(tmp_path / "t"), COLUMNS, ROWS[:1])
    before = {n: (tmp_path / n).read_bytes() for n in ("t.csv", "t.md")}
    with pytest.raises(ValueError):
        report.write_table(str(tmp_path / "t"), COLUMNS, ROWS, formats={"error": "{:d}"})
    assert {n: (tmp_path / n).read_bytes() for n in ("t.csv", "t.md")} == before
    _assert_complete(tmp_path)


def test_write_summary_keeps_the_insertion_order(tmp_path):
    summary = {"experiment": "x", "zeta": [1, 2.5, None], "alpha": {"b": 1, "a": "s"}}
    report.write_summary(str(tmp_path / "summary.json"), summary)
    text = (tmp_path / "summary.json").read_text()
    assert json.loads(text) == summary
    assert list(json.loads(text)) == ["experiment", "zeta", "alpha"]
    assert list(json.loads(text)["alpha"]) == ["b", "a"]
    assert text.startswith('{\n  "experiment"')  # indent 2
    _assert_complete(tmp_path)


# Curves.


def _curve(label, offset, with_test=True):
    iterations = [0, 1000, 2000, 3000]
    train = [90.0 - offset - 10 * i for i in range(4)]
    return report.Curve(label, iterations, train, [t + 5 for t in train] if with_test else [])


PANELS = [
    ("plain", [_curve("plain-20", 0), _curve("plain-32", 1), _curve("plain-44", 2)]),
    ("ResNet", [_curve("ResNet-20", 3), _curve("ResNet-32", 4), _curve("ResNet-44", 5)]),
]


def _line_of(ax, xs, ys):
    found = [line for line in ax.get_lines()
             if list(line.get_xdata()) == list(xs) and list(line.get_ydata()) == list(ys)]
    assert len(found) == 1
    return found[0]


def test_curves_figure_draws_train_dashed_and_test_bold_in_one_colour_per_curve():
    fig = report.curves_figure(PANELS)
    assert len(fig.axes) == 2
    for ax, (title, curves) in zip(fig.axes, PANELS):
        assert ax.get_title() == title
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("iterations", "error (%)")
        assert len(ax.get_lines()) == 2 * len(curves)
        colours = []
        for curve in curves:
            train = _line_of(ax, curve.iterations, curve.train_error)
            test = _line_of(ax, curve.iterations, curve.test_error)
            assert train.get_linestyle() == "--" and test.get_linestyle() == "-"
            assert test.get_linewidth() > train.get_linewidth()
            # A marker on each point: a run of one epoch is one visible point.
            assert train.get_marker() == test.get_marker() == "o"
            assert to_rgba(train.get_color()) == to_rgba(test.get_color())
            colours.append(to_rgba(test.get_color()))
        assert len(set(colours)) == len(curves)
        assert [t.get_text() for t in ax.get_legend().get_texts()] == [c.label for c in curves]


def test_curves_figure_without_test_error_draws_only_the_train_line(tmp_path):
    curve = _curve("ResNet-110", 0, with_test=False)
    fig = report.curves_figure([("CIFAR-10", [curve])])
    (ax,) = fig.axes
    (line,) = ax.get_lines()
    assert line.get_linestyle() == "--"
    assert list(line.get_ydata()) == curve.train_error
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["ResNet-110"]
    report.save_figure(fig, str(tmp_path / "fig.png"))
    _assert_complete(tmp_path)


def test_save_figure_writes_a_whole_png(tmp_path):
    report.save_figure(report.curves_figure(PANELS), str(tmp_path / "fig6.png"))
    assert os.listdir(tmp_path) == ["fig6.png"]
    _assert_complete(tmp_path)


def test_a_curve_with_mismatched_lengths_is_refused():
    with pytest.raises(ValueError, match="3 iterations"):
        report.Curve("x", [0, 1, 2], [1.0, 2.0])
    with pytest.raises(ValueError, match="3 iterations"):
        report.Curve("x", [0, 1, 2], [1.0, 2.0, 3.0], [1.0])


# Table 1 and Table 6's architecture column.


def _check_table1_outputs(folder, summary, measured):
    """The files of `report.table1` in `folder` against `measured`, the
    `complexity.measure` of each model, by name, and against the paper's."""
    imagenet = [n for n in report.IMAGENET_MODELS if n in measured]
    cifar = [n for n in report.CIFAR_MODELS if n in measured]
    rows = _read_csv(os.path.join(folder, "table1.csv"))
    assert [r["model"] for r in rows] == imagenet
    for row in rows:
        m = measured[row["model"]]
        assert m.input_size == 224
        assert float(row["params (M)"]) == m.params / 1e6
        assert float(row["FLOPs (G)"]) == m.flops / 1e9
        paper = complexity.PAPER[row["model"]].flops
        if paper is None:
            assert row["paper FLOPs (G)"] == row["FLOPs diff %"] == ""
            continue
        assert float(row["paper FLOPs (G)"]) == paper / 1e9
        diff = float(row["FLOPs diff %"])
        assert diff == pytest.approx(100 * (m.flops / paper - 1), rel=1e-9)
        assert abs(diff) < 3

    rows = _read_csv(os.path.join(folder, "table6_architecture.csv"))
    assert [r["model"] for r in rows] == cifar
    for row in rows:
        m = measured[row["model"]]
        assert m.input_size == 32
        assert int(row["depth/layers"]) == int(row["model"].removeprefix("resnet"))
        assert float(row["params (M)"]) == m.params / 1e6
        paper = complexity.PAPER[row["model"]].params
        assert float(row["paper params (M)"]) == paper / 1e6
        diff = float(row["diff %"])
        assert diff == pytest.approx(100 * (m.params / paper - 1), rel=1e-9)
        assert abs(diff) < 3

    for stem, names in (("table1", imagenet), ("table6_architecture", cifar)):
        cells = _markdown_cells(os.path.join(folder, f"{stem}.md"))
        assert [row[0] for row in cells[2:]] == names

    with open(os.path.join(folder, "summary.json")) as f:
        assert json.load(f) == summary
    assert summary["experiment"] == "table1"
    assert summary["sources"] == {
        "ours": "keras_resnet.models.complexity.measure",
        "paper": "He et al. 2015, Table 1 (FLOPs) and Table 6 (params)",
    }
    assert [r["model"] for r in summary["rows"]] == imagenet + cifar
    for row in summary["rows"]:
        m = measured[row["model"]]
        assert (row["params"], row["flops"], row["input_size"]) == (m.params, m.flops, m.input_size)
        assert row["paper_flops"] == complexity.PAPER[row["model"]].flops
        assert row["paper_params"] == complexity.PAPER[row["model"]].params
    assert sorted(os.listdir(folder)) == sorted(
        ["summary.json", "table1.csv", "table1.md", "table6_architecture.csv",
         "table6_architecture.md"])
    _assert_complete(folder)


def test_table1_rows_for_a_few_models(tmp_path, monkeypatch):
    # The fast variant of the next test: table1 whole, on three models,
    # against measurements made here.
    monkeypatch.setattr(report, "IMAGENET_MODELS", ("resnet18", "plain18"))
    monkeypatch.setattr(report, "CIFAR_MODELS", ("resnet20",))
    measured = {"resnet18": complexity.measure("resnet18", 224),
                "plain18": complexity.measure("plain18", 224),
                "resnet20": complexity.measure("resnet20", 32)}
    summary = report.table1(str(tmp_path))
    _check_table1_outputs(str(tmp_path), summary, measured)
    assert report.table1_row(measured["resnet18"])["FLOPs diff %"] == pytest.approx(
        100 * (measured["resnet18"].flops / 1.8e9 - 1))
    assert report.table6_row(measured["resnet20"])["depth/layers"] == 20


# ~30 s; the fast variant: test_table1_rows_for_a_few_models; each model's counts:
# test_imagenet_flops_match_table_1, test_cifar_params_match_table_6
@pytest.mark.slow
def test_table1_measures_every_model_within_3_percent_of_the_paper(tmp_path, monkeypatch):
    # Each model is built once (~27 s in all): the measurements table1 makes
    # are recorded, and checked to be of the right model at the right size.
    measured, measure = {}, complexity.measure

    def recording_measure(name, image_size=None):
        measured[name] = result = measure(name, image_size)
        assert result.name == name
        return result

    monkeypatch.setattr(report.complexity, "measure", recording_measure)
    summary = report.table1(str(tmp_path))
    assert set(measured) == set(report.IMAGENET_MODELS) | set(report.CIFAR_MODELS)
    assert set(report.IMAGENET_MODELS) == {
        "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "plain18", "plain34"}
    assert set(report.CIFAR_MODELS) == {
        "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet1202"}
    with_paper_flops = [n for n in report.IMAGENET_MODELS if complexity.PAPER[n].flops]
    assert len(with_paper_flops) == 6
    _check_table1_outputs(str(tmp_path), summary, measured)


@pytest.mark.parametrize("name, layers", [("resnet18", 18), ("resnet34", 34), ("resnet50", 50),
                                          ("resnet152", 152), ("plain34", 34), ("resnet56", 56)])
def test_depth_counts_the_weighted_layers(name, layers):
    assert report.depth(name) == layers


def test_the_module_imports_no_tensorflow():
    with open(report.__file__) as f:
        tree = ast.parse(f.read())
    names = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names]
    names += [f"{node.module}.{alias.name}" for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) for alias in node.names]
    allowed = ("keras_resnet.files", "keras_resnet.models", "matplotlib", "numpy")
    strays = [n for n in names if n.split(".")[0] not in sys.stdlib_module_names
              and not any(n == a or n.startswith(a + ".") for a in allowed)]
    assert strays == []
    assert not [n for n in names if n.startswith("matplotlib.pyplot")]
