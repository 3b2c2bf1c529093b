"""Parameter and FLOP counts against the paper (Tables 1 and 6), and the CLI."""

import os
import subprocess
import sys

import keras
import pytest

import keras_resnet
from keras_resnet import models
from keras_resnet.models import complexity

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _public_builder(name):
    """keras_resnet.ResNet50 for "resnet50": the paper's counts check the public builders."""
    return getattr(keras_resnet, name.replace("resnet", "ResNet"))


# Paper Table 1, "FLOPs" row (multiply-adds at 224x224). Our bottlenecks are v1
# (stride on the first 1x1), the network the paper counts.
@pytest.mark.parametrize(
    "name, paper_flops",
    [
        ("resnet18", 1.8e9),
        ("resnet34", 3.6e9),
        ("resnet50", 3.8e9),
        ("resnet101", 7.6e9),
        ("resnet152", 11.3e9),
    ],
)
def test_imagenet_flops_match_table_1(name, paper_flops):
    model = _public_builder(name)(weights=None, input_shape=(224, 224, 3))
    assert model.name == name
    assert complexity.count_flops(model) == pytest.approx(paper_flops, rel=0.03)
    assert complexity.PAPER[name].flops == paper_flops


# Paper Table 6, "# params" column.
@pytest.mark.parametrize(
    "name, paper_params",
    [
        ("resnet20", 0.27e6),
        ("resnet32", 0.46e6),
        ("resnet44", 0.66e6),
        ("resnet56", 0.85e6),
        ("resnet110", 1.7e6),
        ("resnet1202", 19.4e6),  # ~25 s: the only test of a 4,000-layer build
    ],
)
def test_cifar_params_match_table_6(name, paper_params):
    model = _public_builder(name)(weights=None)
    assert model.name == name
    assert complexity.count_params(model) == pytest.approx(paper_params, rel=0.03)
    assert complexity.PAPER[name].params == paper_params


def test_resnet20_exact_param_count():
    # 269,722: ResNet-20 with option A shortcuts in the public PyTorch
    # reproduction (akamaster/pytorch_resnet_cifar10); BN moving statistics
    # (2 x 688 channels) are not trainable.
    model = models.get_model("resnet20", weights=None)
    assert complexity.count_params(model) == 269_722
    assert complexity.count_params(model, trainable_only=False) == 269_722 + 2 * 688


def test_count_flops_by_hand_with_nested_model():
    inner = keras.Sequential(
        [
            keras.Input((8, 8, 4)),
            keras.layers.Conv2D(6, 3, groups=2),  # 6x6 out: 36 * 3*3*(4/2)*6 = 3888
            keras.layers.BatchNormalization(),  # Not counted.
            keras.layers.DepthwiseConv2D(3),  # 4x4 out: 16 * 3*3*6 = 864
            keras.layers.GlobalAveragePooling2D(),  # Not counted.
            keras.layers.Dense(5),  # 6 * 5 = 30
        ]
    )
    outer = keras.Sequential([keras.Input((8, 8, 4)), inner, keras.layers.Dense(2)])
    assert complexity.count_flops(inner) == 3888 + 864 + 30
    assert complexity.count_flops(outer) == 3888 + 864 + 30 + 5 * 2


def test_count_flops_needs_a_static_input_size():
    model = models.get_model("resnet20", weights=None, include_top=False)
    with pytest.raises(ValueError, match=r"'resnet20'.*input_shape="):
        complexity.count_flops(model)


def test_measure_at_another_size_drops_the_papers_flops():
    row = complexity.measure("resnet20", image_size=64)
    # Conv costs grow with the area (x4); the 64x10 classifier's does not.
    assert row.flops == 4 * (complexity.measure("resnet20").flops - 640) + 640
    assert row.input_size == 64
    assert row.paper.flops is None and row.paper.params == 0.27e6


def _cli(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, "-m", "keras_resnet", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_prints_a_row_per_model():
    result = _cli("--models=resnet20")
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    row = next(r for r in rows if r[0] == "resnet20")
    # name, family, input, params (M), paper's, diff, FLOPs (G), paper's, diff, error.
    assert row[:6] == ["resnet20", "cifar", "32", "0.270", "0.27", "-0.1%"]
    assert row[-1] == "8.75"


def test_cli_unknown_model_is_one_line_and_fails():
    result = _cli("--models=resnet20,resnet21")
    assert result.returncode != 0
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    # TF may log its own start-up lines to stderr; ours is a single line.
    lines = [line for line in result.stderr.splitlines() if "resnet21" in line]
    assert len(lines) == 1
    assert "resnet20" in lines[0] and "resnet1202" in lines[0]
