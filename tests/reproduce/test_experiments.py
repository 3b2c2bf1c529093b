"""The experiments as commands, at the tiny scale on a generated image folder:
their tables and figures hold the runs' own numbers, an interrupted one trains
only what is missing, and bad input is one line."""

import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_resnet.data import augment
from keras_resnet.data import sources
from keras_resnet.reproduce import cifar
from keras_resnet.reproduce import experiments
from keras_resnet.reproduce import responses
from keras_resnet.reproduce import runs
from keras_resnet.training import callbacks
from tests.helpers import REPO
from tests.helpers import error_line
from tests.helpers import run_commands


def _options(dataset, runs_dir, **changes):
    return runs.Options(**dict(dict(dataset=str(dataset), scale="tiny", runs_dir=str(runs_dir),
                                     verbose=0), **changes))


def _csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def _run_numbers(model_dir):
    """(history.csv rows, evaluation.json) of a run folder."""
    with open(os.path.join(model_dir, runs.EVALUATION)) as f:
        return callbacks.read_history(os.path.join(model_dir, "history.csv")), json.load(f)


def test_fig6_and_table6_write_the_runs_own_numbers(tmp_path, image_folder):
    options = _options(image_folder, tmp_path / "runs")
    summary = experiments.run_experiment("fig6", options, str(tmp_path / "fig6"), say=lambda _: None)
    rows = _csv(tmp_path / "fig6" / "fig6.csv")
    assert [r["run"] for r in rows] == ["plain20", "resnet20"]
    for row in rows:
        history, evaluation = _run_numbers(tmp_path / "runs" / row["run"])
        assert float(row["test error (%)"]) == pytest.approx(100 * evaluation["top1_error"])
        assert float(row["train error (%)"]) == pytest.approx(100 * (1 - history[-1]["accuracy"]))
        assert int(row["iterations"]) == history[-1]["iterations"] == 2
    assert [s["model_dir"] for s in summary["sources"].values()] == [
        str(tmp_path / "runs" / name) for name in ("plain20", "resnet20")]
    assert (tmp_path / "fig6" / "fig6.png").read_bytes()[:4] == b"\x89PNG"
    # Each run's conv kernels: gradient norm at initialisation, kernel norms.
    grads = _csv(tmp_path / "fig6" / "gradients.csv")
    assert [r["run"] for r in grads] == ["plain20"] * 19 + ["resnet20"] * 19
    assert all(float(r["gradient norm"]) > 0 for r in grads)
    assert set(summary["gradients"]) == {"plain20", "resnet20"}
    assert (tmp_path / "fig6" / "gradients.png").read_bytes()[:4] == b"\x89PNG"
    # One curve per run: its training error dashed, its validation error bold.
    results = [runs.read_result(spec) for spec in cifar.fig6_specs(options)]
    figure = cifar.fig6_figure(results)
    assert [len(ax.get_lines()) for ax in figure.axes] == [2, 2]
    # evaluate.py itself gives the run's evaluation.json.
    model_dir = tmp_path / "runs" / "resnet20"
    out = tmp_path / "evaluate.json"
    (code, stderr), = run_commands("evaluate.py", [[f"--model_path={model_dir / 'model.keras'}",
                                                    f"--dataset={image_folder}",
                                                    f"--output_json={out}"]], cwd=tmp_path)
    assert code == 0, stderr[-2000:]
    assert json.loads(out.read_text())["top1_error"] == _run_numbers(model_dir)[1]["top1_error"]
    # table6 reuses resnet20's run (nothing trained) and writes its error.
    trained = []
    summary = experiments.run_experiment("table6", options, str(tmp_path / "table6"),
                                         say=trained.append)
    assert "finished, reused" in trained[0]
    (row,) = _csv(tmp_path / "table6" / "table6.csv")
    assert float(row["best test error (%)"]) == pytest.approx(
        100 * _run_numbers(model_dir)[1]["top1_error"])
    assert row["paper CIFAR-10 (%)"] == ""  # a folder is not CIFAR-10: no paper figure beside it
    # fig7 measures the same runs: a std for each of the 19 3x3 layers of each,
    # those of the run's own model on the folder's test split.
    summary = experiments.run_experiment("fig7", options, str(tmp_path / "fig7"), say=lambda _: None)
    rows = _csv(tmp_path / "fig7" / "fig7.csv")
    assert [r["run"] for r in rows] == ["plain20"] * 19 + ["resnet20"] * 19
    model = keras.saving.load_model(model_dir / "model.keras")
    images = np.stack([augment.resize_to(image, 16).numpy() for image, _ in
                       sources.eval_split(str(image_folder), image_size=16, num_classes=3).examples])
    expected = responses.response_stds(model, images)
    assert [(r["layer"], float(r["std"])) for r in rows[19:]] == [
        (name, pytest.approx(std, rel=1e-5)) for name, std in expected]
    assert summary["responses"]["resnet20"] == pytest.approx([std for _, std in expected], rel=1e-5)
    assert (tmp_path / "fig7" / "fig7.png").read_bytes()[:4] == b"\x89PNG"


# The experiment as its command runs it, in a process of its own; prints the
# runs it trained; with KILL_AT=n, is killed when the n-th run starts training.
RUN_FIG6 = """
    import json, os, signal, sys
    from keras_resnet.reproduce import experiments, runs
    from keras_resnet.training import trainer
    train, trained = trainer.train, []
    def counted(config):
        trained.append(config.model)
        if len(trained) == int(os.environ.get("KILL_AT", 0)):
            os.kill(os.getpid(), signal.SIGKILL)
        return train(config)
    trainer.train = counted
    options = runs.Options(dataset=sys.argv[1], scale="tiny", runs_dir=sys.argv[2], verbose=0)
    experiments.run_experiment("fig6", options, sys.argv[3], say=lambda _: None)
    print(json.dumps(trained))
"""


def _fig6_process(image_folder, runs_dir, output_dir, kill_at=0):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3", KILL_AT=str(kill_at))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(RUN_FIG6), str(image_folder),
                           str(runs_dir), str(output_dir)], env=env, capture_output=True,
                          text=True, timeout=300)


# ~30 s (two processes, three runs); a finished run reused: test_fig6_and_table6_write_the_runs_own_numbers,
# a killed run resumed: test_stopped_while_the_backup_is_written_then_rerun
@pytest.mark.slow
def test_an_interrupted_experiment_trains_only_what_is_missing(tmp_path, image_folder):
    killed = _fig6_process(image_folder, tmp_path / "runs", tmp_path / "fig6", kill_at=2)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    first = _run_numbers(tmp_path / "runs" / "plain20")
    # The same command again: only the second run trains; the first is kept as it was.
    rerun = _fig6_process(image_folder, tmp_path / "runs", tmp_path / "fig6")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert json.loads(rerun.stdout.splitlines()[-1]) == ["resnet20"]
    assert _run_numbers(tmp_path / "runs" / "plain20") == first
    # The experiment's outputs are those of its runs, the one finished before
    # the kill as it was. (Not compared with a second, uninterrupted
    # experiment: two runs agree bit for bit only under --deterministic,
    # tests/training/test_train_faults.py.)
    rows = _csv(tmp_path / "fig6" / "fig6.csv")
    assert [r["run"] for r in rows] == ["plain20", "resnet20"]
    for row in rows:
        history, evaluation = _run_numbers(tmp_path / "runs" / row["run"])
        assert float(row["test error (%)"]) == pytest.approx(100 * evaluation["top1_error"])
        assert int(row["iterations"]) == history[-1]["iterations"] == 2
    assert float(rows[0]["train error (%)"]) == pytest.approx(100 * (1 - first[0][-1]["accuracy"]))


def test_a_finished_run_made_otherwise_is_refused(tmp_path, image_folder):
    options = _options(image_folder, tmp_path / "runs")
    spec = cifar.spec(options, "resnet20")
    runs.train_and_score(spec)
    longer = dataclasses.replace(spec, config=dataclasses.replace(spec.config, train_steps=3))
    with pytest.raises(ValueError, match=r"runs_dir holds a finished resnet20 of 2 steps, "
                                         r"where this scale trains 3: choose another folder"):
        runs.train_and_score(longer)
    other = dataclasses.replace(spec, config=dataclasses.replace(spec.config, seed=1))
    with pytest.raises(ValueError, match=r"holds another run \(seed: 0 there, 1 now\)"):
        runs.train_and_score(other)


def test_dry_run_prints_the_commands_and_trains_nothing(tmp_path):
    said = []
    options = _options("cifar10", tmp_path / "runs", scale="paper")
    experiments.run_experiment("fig6", options, str(tmp_path / "out"), dry_run=True, say=said.append)
    assert len(said) == 4 + 5 + 1  # plain-20..56, ResNet-20..110, ResNet-1202
    train, evaluate = said[0].split("\n")
    assert train == (f"python train.py --model=plain20 --recipe=cifar_paper --model_dir="
                     f"{tmp_path / 'runs' / 'plain20'} --verbose=0")
    assert evaluate == (f"python evaluate.py --model_path={tmp_path / 'runs' / 'plain20' / 'model.keras'}"
                        f" --dataset=cifar10 --output_json={tmp_path / 'runs' / 'plain20' / 'evaluation.json'}")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "out").exists()


def test_bad_input_is_one_line(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / experiments.MARKER).write_text(json.dumps({"experiment": "fig6"}))
    cases = [  # (arguments, the error line)
        (["fig9"], "unknown experiment: 'fig9'; accepted: table1, fig6, table6, fig7, fig4, "
                   "table2, table3, table4 (--help says what each does)"),
        ([], "unknown experiment: none; accepted: table1, fig6, table6, fig7, fig4, table2, "
             "table3, table4 (--help says what each does)"),
        (["table3"], "table3 needs models to score: --models=PATH[,PATH] (files evaluate.py "
                     "takes) and/or --weights=imagenet"),
        (["table4", "--weights=timm"], "--weights=timm: must be 'imagenet' (the published "
                                       "ResNet-50/101/152); pass model files with --models"),
        (["table4", f"--models={tmp_path}/none.keras"], f"--models={tmp_path}/none.keras: does "
                                                        "not exist"),
        (["table6", "--depths=20,21"], "--depths=21: must be one of 20, 32, 44, 56, 110, 1202 "
                                       "(the paper's 6n+2 CIFAR nets)"),
        (["fig6", "--scale=huge"], "flag --scale=huge: value should be one of <paper|quick|tiny>"),
        (["table6", f"--output_dir={other}", "--dry_run=false", "--scale=tiny"],
         f"--output_dir={other}: holds another experiment's outputs (experiment: 'fig6' there, "
         "'table6' now): choose another folder"),
    ]
    outcomes = run_commands("reproduce", [args for args, _ in cases], cwd=tmp_path)
    for (_, message), (code, stderr) in zip(cases, outcomes, strict=True):
        assert error_line(code, stderr, "reproduce") == message
    assert os.listdir(other) == [experiments.MARKER]
    assert not (tmp_path / "reproduce").exists()  # refused before any output folder is made


def test_the_papers_column_stands_beside_cifar10_runs_only():
    # Table 6's figures are CIFAR-10's: beside a run on other data they would
    # compare nothing; a data set with published anchors gets those instead.
    assert cifar.paper_error("resnet20", "cifar10") == 8.75
    assert cifar.paper_error("resnet110", "cifar10") == 6.43
    assert cifar.paper_error("resnet20", "fashion_mnist") is None
    assert cifar.paper_error("resnet20", "/data/cifar10_folder") is None
    anchors = cifar.ANCHORS["fashion_mnist"]["test error (%)"]
    assert anchors == {"ResNet-18": 5.1, "WRN-40-4": 3.3, "2 conv + pooling": 8.4}


def test_quick_runs_on_fashion_mnist_train_twice_as_long_as_on_cifar10():
    # 1.5k iterations leave the ResNet-56 far above the ResNet-20 on Fashion-MNIST
    # (docs/figures/fig6_fashion_mnist): its runs train 3k, CIFAR-10's stay 1.5k.
    steps = {dataset: {s.name: s.config.train_steps for s in cifar.fig6_specs(
        _options(dataset, "runs", scale="quick"))} for dataset in ("fashion_mnist", "cifar10")}
    assert steps == {"fashion_mnist": dict.fromkeys(["plain20", "plain56", "resnet20", "resnet56"], 3000),
                     "cifar10": dict.fromkeys(["plain20", "plain56", "resnet20", "resnet56"], 1500)}
    assert cifar.spec(_options("fashion_mnist", "runs", scale="tiny"), "resnet20").config.train_steps == 2


def test_the_quick_resnet56_warms_up_as_the_papers_resnet110_and_no_other_run_does():
    # At 0.1 from the start that ResNet-56 diverges before it learns; the
    # paper's remedy for its ResNet-110 is 0.01 for 400 iterations.
    warmups = {scale: {s.name: (s.config.warmup_steps, s.config.warmup_learning_rate)
                       for s in cifar.fig6_specs(_options("fashion_mnist", "runs", scale=scale))}
               for scale in ("quick", "tiny")}
    assert warmups["quick"] == {"plain20": (None, None), "plain56": (None, None),
                                "resnet20": (None, None), "resnet56": (400, 0.01)}
    assert set(warmups["tiny"].values()) == {(None, None)}
    train, _ = runs.commands(cifar.spec(_options("fashion_mnist", "runs", scale="quick"), "resnet56"))
    assert "--warmup_steps=400 --warmup_learning_rate=0.01" in train
