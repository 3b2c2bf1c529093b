"""What the paper's experiments produce: tables, summaries and curves.

- `write_table`: `<stem>.csv` (full precision) and `<stem>.md` (a GitHub
  markdown table, formatted per column).
- `write_summary`: a JSON file of every number with its source.
- `Curve`, `curves_figure`, `save_figure`: train (dashed, thin) and test
  (bold) error against iterations, one panel per experiment side by side, as
  the paper's Fig. 4 (two panels) and Fig. 6 (three).
- `table1`: paper Table 1's FLOPs and Table 6's parameter counts of our
  models, counted from the variant table, beside the paper's figures.

Every file is written aside and renamed into place (keras_resnet.files).
This module needs no TensorFlow of its own: only the model code (Keras), and
matplotlib's Figure API (no pyplot, no global state) for the curves.
"""

import csv
import dataclasses
import io
import json
import numbers
import os
from collections.abc import Callable
from typing import Any

from keras_resnet import files
from keras_resnet.models import complexity
from keras_resnet.models import resnet
from keras_resnet.models.blocks import branch_convs

IMAGENET_MODELS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
                   "plain18", "plain34")
CIFAR_MODELS = ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet1202")
TABLE1_COLUMNS = ["model", "params (M)", "FLOPs (G)", "paper FLOPs (G)", "FLOPs diff %"]
TABLE1_FORMATS = {"params (M)": "{:.2f}", "FLOPs (G)": "{:.3f}", "paper FLOPs (G)": "{:.1f}",
                  "FLOPs diff %": "{:+.1f}"}
TABLE6_COLUMNS = ["model", "depth/layers", "params (M)", "paper params (M)", "diff %"]
TABLE6_FORMATS = {"params (M)": "{:.3f}", "paper params (M)": "{:.2f}", "diff %": "{:+.1f}"}
SOURCES = {
    "ours": "keras_resnet.models.complexity.measure",
    "paper": "He et al. 2015, Table 1 (FLOPs) and Table 6 (params)",
}
_DEFAULT_FLOAT_FORMAT = "{:.2f}"


# Tables and summaries.


def _markdown_cell(value: Any, spec: str | None) -> str:
    """A value as a markdown cell: None "-", numbers in `spec` (floats
    default to two decimals), anything else str(); a "|" is escaped."""
    if value is None:
        return "-"
    is_number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if is_number and spec is not None:
        text = spec.format(value)
    elif isinstance(value, float):
        text = _DEFAULT_FLOAT_FORMAT.format(value)
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(columns: list[str], rows: list[dict], formats: dict[str, str] | None = None) -> str:
    """A GitHub markdown table: header, separator, one line per row."""
    formats = formats or {}
    lines = ["| " + " | ".join(_markdown_cell(c, None) for c in columns) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        cells = (_markdown_cell(row.get(c), formats.get(c)) for c in columns)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_table(stem: str, columns: list[str], rows: list[dict],
                formats: dict[str, str] | None = None) -> str:
    """Writes `<stem>.csv` and `<stem>.md`, each atomically; returns the markdown.

    The CSV has the header `columns` and every value at full precision (None
    and a missing key: empty); the markdown table formats each number with
    `formats[column]` (e.g. "{:.3f}"), floats of other columns with two
    decimals, shows None as "-" and anything else as str(). Keys of a row
    that are not in `columns` are left out of both. Both texts are made
    before either file is written: a bad format writes neither.
    """
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    markdown = markdown_table(columns, rows, formats)
    files.write_text(f"{stem}.csv", text.getvalue())
    files.write_text(f"{stem}.md", markdown)
    return markdown


def write_summary(path: str, summary: dict) -> None:
    """Writes `summary` as JSON (indent 2, keys in insertion order), atomically."""
    files.write_text(path, json.dumps(summary, indent=2) + "\n")


# Curves.


@dataclasses.dataclass(frozen=True)
class Curve:
    """One network's training curve: error % at each of `iterations`.

    `test_error` may be empty (a run without a test set: only the train line).
    """

    label: str
    iterations: list[int]
    train_error: list[float]
    test_error: list[float] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.train_error) != len(self.iterations) or (
                self.test_error and len(self.test_error) != len(self.iterations)):
            raise ValueError(
                f"Curve {self.label!r}: {len(self.iterations)} iterations but "
                f"{len(self.train_error)} train and {len(self.test_error)} test errors"
            )


def curves_figure(panels: list[tuple[str, list[Curve]]]) -> Any:
    """A matplotlib Figure, one axis per (title, curves) panel, side by side:
    per curve one colour, train error dashed and thin, test error solid and
    bold, as in the paper's Fig. 4 and Fig. 6; each label once in the legend."""
    from matplotlib.figure import Figure  # no pyplot: no global state.

    if not panels:
        raise ValueError("curves_figure needs at least one panel")
    fig = Figure(figsize=(5 * len(panels), 4))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, curves) in zip(axes, panels):
        for i, curve in enumerate(curves):
            colour = f"C{i % 10}"
            # A marker at each epoch's point, so that a run of one epoch shows too.
            ax.plot(curve.iterations, curve.train_error, linestyle="--", linewidth=1,
                    marker="o", markersize=3, color=colour,
                    label=curve.label if not curve.test_error else "_train")
            if curve.test_error:
                ax.plot(curve.iterations, curve.test_error, linestyle="-", linewidth=2.5,
                        marker="o", markersize=5, color=colour, label=curve.label)
        ax.set(xlabel="iterations", ylabel="error (%)", title=title)
        ax.grid(alpha=0.3)
        if curves:
            ax.legend()
    fig.tight_layout()
    return fig


def save_figure(fig: Any, path: str) -> None:
    """Saves `fig` to `path` as a PNG, atomically."""
    with files.atomic_path(path) as staging:
        fig.savefig(staging, format="png", dpi=100, bbox_inches="tight")


# Table 1 and Table 6's architecture column.


def _diff_percent(ours: float, paper: float | None) -> float | None:
    """How far ours is from the paper's figure, in % of it; None without one."""
    return None if paper is None else 100 * (ours / paper - 1)


def depth(name: str) -> int:
    """Weighted layers of model `name`: its blocks' convs, the stem conv and fc."""
    variant = resnet.VARIANTS[resnet.canonical_name(name)]
    return len(branch_convs(variant.block, 1, 1)) * sum(variant.blocks_per_stage) + 2


def table1_row(measured: complexity.Complexity) -> dict:
    """A row of Table 1 (FLOPs at 224x224) for an ImageNet model."""
    paper = measured.paper.flops
    return {
        "model": measured.name,
        "params (M)": measured.params / 1e6,
        "FLOPs (G)": measured.flops / 1e9,
        "paper FLOPs (G)": None if paper is None else paper / 1e9,
        "FLOPs diff %": _diff_percent(measured.flops, paper),
    }


def table6_row(measured: complexity.Complexity) -> dict:
    """A row of Table 6's architecture column (parameters) for a CIFAR model."""
    paper = measured.paper.params
    return {
        "model": measured.name,
        "depth/layers": depth(measured.name),
        "params (M)": measured.params / 1e6,
        "paper params (M)": None if paper is None else paper / 1e6,
        "diff %": _diff_percent(measured.params, paper),
    }


def summary_row(measured: complexity.Complexity, table: str) -> dict:
    """Every number of one model, unscaled, for summary.json."""
    return {
        "model": measured.name,
        "table": table,
        "input_size": measured.input_size,
        "params": measured.params,
        "flops": measured.flops,
        "paper_params": measured.paper.params,
        "paper_flops": measured.paper.flops,
        "params_diff_percent": _diff_percent(measured.params, measured.paper.params),
        "flops_diff_percent": _diff_percent(measured.flops, measured.paper.flops),
    }


def table1(output_dir: str, say: Callable[[str], None] = print) -> dict:
    """The ImageNet models at 224x224 and the CIFAR ones at 32x32, counted
    from the variant table (`complexity.measure`: nothing is built).

    Writes `table1.csv/.md` (FLOPs beside Table 1's), `table6_architecture.csv/.md`
    (parameters beside Table 6's) and `summary.json` (every number and its
    source) into `output_dir`, says both tables and each file's path, and
    returns the summary.
    """
    imagenet = [complexity.measure(name, 224) for name in IMAGENET_MODELS]
    cifar = [complexity.measure(name, 32) for name in CIFAR_MODELS]
    stems = [os.path.join(output_dir, stem) for stem in ("table1", "table6_architecture")]
    tables = [
        ("Table 1: FLOPs (multiply-adds) at 224x224 beside the paper's",
         write_table(stems[0], TABLE1_COLUMNS, [table1_row(m) for m in imagenet], TABLE1_FORMATS)),
        ("Table 6, architecture: parameters beside the paper's",
         write_table(stems[1], TABLE6_COLUMNS, [table6_row(m) for m in cifar], TABLE6_FORMATS)),
    ]
    summary = {
        "experiment": "table1",
        "rows": [summary_row(m, "Table 1") for m in imagenet]
        + [summary_row(m, "Table 6") for m in cifar],
        "sources": dict(SOURCES),
    }
    path = os.path.join(output_dir, "summary.json")
    write_summary(path, summary)
    for title, markdown in tables:
        say(f"{title}\n{markdown}")
    for written in [f"{stem}{ext}" for stem in stems for ext in (".csv", ".md")] + [path]:
        say(f"Wrote {written}")
    return summary
