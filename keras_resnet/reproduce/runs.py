"""One training run of an experiment: trained by train.py's library path,
scored by evaluate.py's, each in its own model_dir that train.py resumes.

A run is a `RunSpec`: the `Config` train.py would make of its flags, and the
split evaluate.py scores. `train_and_score` trains what is missing (a killed
run resumes from its backup; a finished one trains nothing; one made with
other settings is refused by train.py's own check), then scores the final
model on the test split once and keeps the result beside it
(`evaluation.json`, what `evaluate.py --output_json` writes).
`commands` gives the two command lines, for a cluster.
"""

import dataclasses
import json
import os
import shlex
from typing import Any

from keras_resnet import files
from keras_resnet.errors import ArgumentError
from keras_resnet.evaluation import artefacts
from keras_resnet.evaluation import protocols
from keras_resnet.reproduce import report
from keras_resnet.training import callbacks
from keras_resnet.training import run as run_lib
from keras_resnet.training import trainer
from keras_resnet.training.run import Config

EVALUATION = "evaluation.json"
# train.py's flags that a Config field is given as (its defaults are left out).
_DEFAULT_CONFIG = Config()


@dataclasses.dataclass(frozen=True, kw_only=True)
class Options:
    """What the command line sets for an experiment."""

    dataset: str = "cifar10"
    scale: str = "paper"
    runs_dir: str  # one folder per run below it
    depths: tuple[int, ...] | None = None  # Table 6's, instead of the scale's
    seeds: int = 1
    data_dir: str | None = None
    manual_dir: str | None = None  # TFDS's, for imagenet2012
    models: tuple[str, ...] = ()  # Tables 3 and 4: model files to score
    weights: str | None = None  # Tables 3 and 4: "imagenet", the published models
    verbose: int = 2


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunSpec:
    """One run: a name for the tables and figures, and what trains and scores it."""

    name: str  # e.g. "plain20", or "resnet110_seed2"
    config: Config  # model_dir included
    split: str | None = None  # evaluate.py's --split (None: the dataset's test split)
    protocol: str | None = None  # evaluate.py's --protocol (None: the model's test view)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunResult:
    """What a finished run gives an experiment: its history.csv rows and its
    evaluation.json (evaluate.py's output on the test split)."""

    spec: RunSpec
    history: list[dict[str, Any]]
    evaluation: dict[str, Any]

    @property
    def test_error(self) -> float:
        """Top-1 test error, %."""
        return 100 * self.evaluation["top1_error"]

    def curve(self) -> report.Curve:
        """Training error (Keras') and held-out validation error after each epoch."""
        rows = self.history
        return report.Curve(label=self.spec.name, iterations=[r["iterations"] for r in rows],
                            train_error=[100 * (1 - r["accuracy"]) for r in rows],
                            test_error=[100 * (1 - r["val_accuracy"]) for r in rows
                                        if "val_accuracy" in r])

    @property
    def train_error(self) -> float:
        """Top-1 training error of the last epoch, %, as Keras measured it."""
        return 100 * (1 - self.history[-1]["accuracy"])


def evaluation_path(spec: RunSpec) -> str:
    return os.path.join(spec.config.model_dir, EVALUATION)


def is_finished(spec: RunSpec) -> bool:
    """Whether the run was trained and scored (by this command or another)."""
    return os.path.isfile(evaluation_path(spec))


def train_and_score(spec: RunSpec) -> RunResult:
    """Trains the run (resuming it, or nothing if finished: train.py's own
    rules), then scores it unless it was scored already."""
    if is_finished(spec):
        check_reusable(spec)
    else:
        trainer.train(spec.config)
        files.write_text(evaluation_path(spec), json.dumps(score(spec), indent=2))
    return read_result(spec)


def check_reusable(spec: RunSpec) -> None:
    """Refuses (ArgumentError) a finished run made with other settings, or
    for another number of steps, than `spec` asks for."""
    model_dir = spec.config.model_dir
    stored = trainer.stored_run(model_dir)
    trainer.check_same_run(stored, run_lib.resolve_settings(spec.config).config, model_dir)
    steps = (stored or {}).get("plan", {}).get("train_steps")
    if spec.config.train_steps is not None and steps != spec.config.train_steps:
        raise ArgumentError("runs_dir", os.path.dirname(model_dir), (
            f"holds a finished {spec.name} of {steps} steps, where this scale trains "
            f"{spec.config.train_steps}: choose another folder"))


def score(spec: RunSpec) -> dict[str, Any]:
    """evaluate.py's result for the run's model.keras on its test split."""
    config = spec.config
    artefact = artefacts.load_artefact(os.path.join(config.model_dir, "model.keras"))
    result, _, _ = protocols.evaluate_on(artefact, config.dataset, spec.split,
                                         protocol=spec.protocol, data_dir=config.data_dir,
                                         manual_dir=config.manual_dir, verbose=0)
    return result


def read_result(spec: RunSpec) -> RunResult:
    """A finished run's result, from its files."""
    with open(evaluation_path(spec)) as f:
        evaluation = json.load(f)
    history = callbacks.read_history(os.path.join(spec.config.model_dir, "history.csv"))
    return RunResult(spec=spec, history=history, evaluation=evaluation)


def commands(spec: RunSpec) -> list[str]:
    """The train.py and evaluate.py command lines that do what
    `train_and_score(spec)` does."""
    config = spec.config
    flags = [f"--{name}={value}" for name, value in dataclasses.asdict(config).items()
             if value is not None and value != getattr(_DEFAULT_CONFIG, name)]
    evaluate = [f"--model_path={os.path.join(config.model_dir, 'model.keras')}",
                f"--dataset={config.dataset}",
                *([f"--split={spec.split}"] if spec.split else []),
                *([f"--protocol={spec.protocol}"] if spec.protocol else []),
                *([f"--data_dir={config.data_dir}"] if config.data_dir else []),
                *([f"--manual_dir={config.manual_dir}"] if config.manual_dir else []),
                f"--output_json={evaluation_path(spec)}"]
    return [shlex.join(["python", "train.py", *flags]),
            shlex.join(["python", "evaluate.py", *evaluate])]
