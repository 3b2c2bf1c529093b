"""The documentation's code as written: README.md and every page of docs/.

A page's ```python blocks run in order in one namespace, as one session, in a
folder that holds what its commands would have written (a SavedModel, a
.tflite file, checkpoints from PyTorch, an image). Its other blocks hold
shell commands: each command of the project's programs must name only flags
that program has. The site itself builds in .ci/run (`mkdocs build --strict`).
"""

import functools
import os
import re
import shlex
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
import torch

import keras_resnet
from keras_resnet.export import export_saved_model
from keras_resnet.export import export_tflite
from keras_resnet.export import load_images
from keras_resnet.models import metadata
from tests import torch_resnet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
PAGES = ["README.md"] + sorted(
    os.path.join("docs", name) for name in os.listdir(DOCS) if name.endswith(".md"))
# A block that needs what no test has: a TF Serving server and its client
# package. It is compiled, not run.
NEEDS_A_SERVER = "from tensorflow_serving.apis import"
# The project's programs, as the documentation starts them.
PROGRAMS = {
    ("python", "train.py"): ["train.py"],
    ("python", "evaluate.py"): ["evaluate.py"],
    ("python", "-m", "export"): ["-m", "export"],
    ("python", "-m", "keras_resnet.reproduce"): ["-m", "keras_resnet.reproduce"],
    ("python", "-m", "keras_resnet"): ["-m", "keras_resnet"],
}


def _read(page):
    with open(os.path.join(ROOT, page)) as f:
        return f.read()


def blocks(page):
    """The fenced blocks of `page`, as (language, text)."""
    return re.findall(r"^```(\w*)\n(.*?)^```", _read(page), re.M | re.S)


def commands(text):
    """The Python commands of a shell block: continued lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [shlex.split(line, comments=True) for line in joined.splitlines()
            if line.startswith("python ")]


@functools.cache
def flags_of(program):
    """Every flag `program` accepts, as `--helpfull` lists it."""
    proc = subprocess.run([sys.executable, *program, "--helpfull"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    flags = set()
    for negatable, name in re.findall(r"--(\[no\])?(\w+)", proc.stdout):
        flags |= {name, f"no{name}"} if negatable else {name}
    return flags


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A folder holding what the pages' commands write for ResNet-20 (serving/resnet20/1,
    tflite/resnet20_int8.tflite), two PyTorch ResNet-18 checkpoints
    (model.safetensors, finetuned.pth) and a cat.jpg; and the Keras model exported."""
    folder = tmp_path_factory.mktemp("docs")
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
    net = torch_resnet.torch_net("resnet18")
    torch_resnet.save(net, folder / "model.safetensors")
    torch.save(net.state_dict(), folder / "finetuned.pth")
    pixels = np.random.RandomState(0).randint(0, 256, (48, 40, 3)).astype("uint8")
    (folder / "cat.jpg").write_bytes(tf.io.encode_jpeg(pixels).numpy())
    return folder, model


def _session(page, folder, monkeypatch):
    """Runs `page`'s Python blocks in `folder`; returns their names."""
    monkeypatch.chdir(folder)
    names = {"__name__": "__main__"}
    for language, code in blocks(page):
        if language != "python":
            continue
        compiled = compile(code, page, "exec")
        if NEEDS_A_SERVER not in code:
            exec(compiled, names)
    return names


RUNS_PYTHON = [page for page in PAGES if any(lang == "python" for lang, _ in blocks(page))]


def test_the_pages_with_code_are_the_ones_expected():
    # A page that gains or loses its Python keeps this list (and the checks below) honest.
    assert RUNS_PYTHON == ["README.md", "docs/export.md", "docs/models.md", "docs/weights.md"]


@pytest.mark.parametrize("page", RUNS_PYTHON)
def test_python_blocks_run_as_written(page, written, monkeypatch, capsys):
    folder, exported = written
    names = _session(page, folder, monkeypatch)
    printed = capsys.readouterr().out
    if page == "README.md":
        assert names["model"].count_params() == 271_098 and "conv5" in names["features"]
        assert tuple(names["features"]["conv5"].shape) == (1, 2, 3, 2048)
    elif page == "docs/models.md":
        # from_torchvision gives PyTorch's outputs for the same state dict.
        x = np.random.RandomState(1).normal(0, 1, (2, 224, 224, 3)).astype("float32")
        ours = names["model"].predict(x, verbose=0)
        logits = torch_resnet.torch_outputs(torch_resnet.torch_net("resnet18"), x)
        reference = torch.softmax(torch.from_numpy(logits), -1).numpy()
        assert torch_resnet.relative_error(ours, reference) < torch_resnet.TOLERANCE
        assert names["backbone"].output_shape == (None, 512)
        assert "resnet1202" in printed and "n0" in printed
    elif page == "docs/weights.md":
        assert names["served"](names["images"]).shape == (1, 1000)
        assert "tv2_in1k" in printed
    else:
        assert names["probabilities"].shape == (1, 10)
        assert names["probabilities"].sum() == pytest.approx(1, abs=1e-2)  # int8 outputs
        # serving_default computes what the Keras model does, on the same images.
        expected = exported.predict(names["images"], verbose=0)
        np.testing.assert_allclose(names["scores"]["probabilities"].numpy(), expected, atol=1e-5)
        assert names["scores"]["top_k_classes"].shape == (2, 5)
        assert names["scores_jpeg"]["probabilities"].shape == (1, 10)
        assert '"resnet20"' in printed


@pytest.mark.parametrize("page", PAGES)
def test_commands_name_only_flags_their_program_has(page):
    checked = 0
    for language, text in blocks(page):
        if language == "python":
            continue
        for words in commands(text):
            program = next((PROGRAMS[k] for k in sorted(PROGRAMS, key=len, reverse=True)
                            if tuple(words[:len(k)]) == k), None)
            if program is None:
                continue
            named = {w[2:].split("=")[0] for w in words if w.startswith("--")}
            assert named - flags_of(tuple(program)) == set(), (page, " ".join(words))
            checked += 1
    if page in ("README.md", "docs/training.md", "docs/evaluation.md", "docs/export.md",
                "docs/reproduce.md"):
        assert checked >= 1, page


def test_every_public_name_has_its_api_entry():
    api = _read("docs/api.md")
    entries = set(re.findall(r"^::: keras_resnet\.([\w.]+)\.(\w+)$", api, re.M))
    public = {(module, name) for module, names in keras_resnet._PUBLIC.items() for name in names}
    assert public - entries == set()


def test_the_readme_stays_short_and_links_every_page():
    readme = _read("README.md")
    assert len(readme.splitlines()) <= 200
    for name in os.listdir(DOCS):
        if name.endswith(".md") and name != "index.md":
            assert f"(docs/{name})" in readme, name
