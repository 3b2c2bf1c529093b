"""train.py and evaluate.py (keras_resnet.programs) on Fashion-MNIST's real
files, offline: `--dataset=fashion_mnist` finds Debian's package's files with
no network and no TFDS, trains on the seeded 54,000, validates on the 6,000
held out and scores the 10,000 test images once; evaluate.py scores the
model it wrote on the same test split."""

import json

import pytest

from keras_resnet.data import fashion_mnist
from tests.helpers import run_commands

pytestmark = pytest.mark.skipif(
    fashion_mnist.find() is None, reason=f"Fashion-MNIST files absent from "
    f"{fashion_mnist.DEFAULT_DIR}: they come with the Debian package dataset-fashion-mnist "
    "(apt-get install dataset-fashion-mnist)")
OFFLINE = dict(no_proxy="", NO_PROXY="", https_proxy="http://127.0.0.1:9", http_proxy="http://127.0.0.1:9",
               HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9")


# ~50 s (two programs, each reading all 70,000 images); the same reader through the
# same entry points, in process: test_the_dataset_name_reads_the_files_offline_for_training_and_evaluation
@pytest.mark.slow
def test_train_and_evaluate_on_fashion_mnist_offline(tmp_path):
    run = tmp_path / "run"
    [(code, stderr)] = run_commands("train.py", [[
        "--dataset=fashion_mnist", "--model=resnet20", "--train_steps=3", "--batch_size=16",
        f"--model_dir={run}", "--verbose=0", f"--data_dir={tmp_path / 'tfds'}"]], tmp_path,
        **OFFLINE)
    assert code == 0, stderr[-3000:]
    with open(run / "config.json") as f:
        summary = json.load(f)
    assert summary["splits"] == {
        "train": f"fashion_mnist train (54000 of 60000, seed 0) in {fashion_mnist.DEFAULT_DIR}",
        "val": f"fashion_mnist train (6000 of 60000 held out, seed 0) in "
               f"{fashion_mnist.DEFAULT_DIR}",
        "test": f"fashion_mnist test (10000, t10k) in {fashion_mnist.DEFAULT_DIR}"}
    with open(run / "test.json") as f:
        tested = json.load(f)
    assert tested["num_examples"] == 10_000 and 0 <= tested["accuracy"] <= 1
    assert not (tmp_path / "tfds").exists()  # TFDS was never asked
    output = tmp_path / "scores.json"
    [(code, stderr)] = run_commands("evaluate.py", [[
        f"--model_path={run / 'model.keras'}", "--dataset=fashion_mnist",
        f"--output_json={output}"]], tmp_path, **OFFLINE)
    assert code == 0, stderr[-3000:]
    with open(output) as f:
        scores = json.load(f)
    assert scores["num_examples"] == 10_000 and scores["split"] == "test"
    assert abs(scores["top1_accuracy"] - tested["accuracy"]) < 1e-6, (scores, tested)
