"""Prints each model's parameters and FLOPs next to the paper's figures.

Usage: python -m keras_resnet [--models=resnet20,resnet50] [--image_size=N]

Parameters are trainable ones (paper Table 6); FLOPs are multiply-adds of one
image (paper Table 1), both counted from the variant table without building a
model (keras_resnet.models.complexity.measure). The paper's FLOPs are compared
at 224x224 only.
"""

from keras_resnet.programs import cli

cli.prepare_program()  # before anything below imports TensorFlow

import sys  # noqa: E402

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from keras_resnet import models  # noqa: E402
from keras_resnet.models import complexity  # noqa: E402

_MODELS = flags.DEFINE_list(
    "models", None, "Comma-separated model names (default: all of them)."
)
_IMAGE_SIZE = flags.DEFINE_integer(
    "image_size",
    None,
    "Square input size (default: 224 for ImageNet models, 32 for CIFAR ones).",
    lower_bound=1,
)

_HEADER = (
    f"{'model':<11}{'family':<9}{'input':>6}{'params(M)':>10}{'paper':>7}{'diff':>8}"
    f"{'FLOPs(G)':>10}{'paper':>7}{'diff':>8}  paper error %"
)
_LEGEND = (
    "paper error %: CIFAR-10 test (Table 6); ImageNet val 10-crop top-1/top-5 "
    "(Tables 2-3)."
)


def _comparison_cells(ours: float, paper: float | None, scale: float, paper_spec: str) -> str:
    """Cells: our figure, the paper's (or "-"), and how far ours is from it."""
    if paper is None:
        return f"{ours / scale:>10.3f}{'-':>7}{'-':>8}"
    diff = f"{100 * (ours / paper - 1):+.1f}%"
    return f"{ours / scale:>10.3f}{format(paper / scale, paper_spec):>7}{diff:>8}"


def format_row(measured: complexity.Complexity) -> str:
    """One line of the table for a `complexity.Complexity`."""
    errors = [f"{e:.2f}" for e in (measured.paper.top1, measured.paper.top5) if e is not None]
    return (
        f"{measured.name:<11}{measured.family:<9}{measured.input_size:>6}"
        + _comparison_cells(measured.params, measured.paper.params, 1e6, ".2f")
        + _comparison_cells(measured.flops, measured.paper.flops, 1e9, ".1f")
        + f"  {'/'.join(errors) or '-'}"
    )


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    try:
        # Checks every name before the first row is printed.
        names = [models.canonical_name(n) for n in _MODELS.value or models.list_models()]
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(_LEGEND)
    print(_HEADER, flush=True)
    for name in names:
        try:
            row = complexity.measure(name, _IMAGE_SIZE.value)
        except ValueError as e:  # E.g. an --image_size too small for the model.
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(format_row(row), flush=True)
    return 0


def entry_point() -> None:
    """`python -m keras_resnet`."""
    app.run(main, flags_parser=cli.parse_flags)  # a bad flag: one line, exit 2.
