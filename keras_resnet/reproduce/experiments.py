"""The experiments, by name, and the loop that runs one.

`run_experiment` checks the output folder (it holds this experiment's outputs
or nothing), trains and scores each run that is missing, one after another
(with MirroredStrategy on a multi-GPU machine, as train.py), saying which run
of how many and the time left, then writes the experiment's figures, tables
and `summary.json`: every number, with the files it came from. With
`dry_run` it prints the train.py and evaluate.py commands instead.
"""

import dataclasses
import json
import os
import time
from collections.abc import Callable

from keras_resnet import files
from keras_resnet.errors import ArgumentError
from keras_resnet.reproduce import cifar
from keras_resnet.reproduce import imagenet
from keras_resnet.reproduce import report
from keras_resnet.reproduce import runs
from keras_resnet.reproduce.runs import RunResult
from keras_resnet.reproduce.runs import RunSpec

MARKER = "experiment.json"  # what an output folder holds, to refuse another experiment's


@dataclasses.dataclass(frozen=True, kw_only=True)
class Experiment:
    """What an experiment trains (`specs`) and writes of the results (`outputs`)."""

    description: str
    dataset: str = "cifar10"  # the default of --dataset
    specs: Callable[[runs.Options], list[RunSpec]] | None = None  # None: nothing to train
    outputs: Callable[[list[RunResult], str, runs.Options], dict] | None = None
    # Experiments that train nothing: writes the outputs, says what it wrote
    # (to `say`, the third argument), returns the summary.
    direct: Callable[[runs.Options, str, Callable[[str], None]], dict] | None = None
    # Refuses options the experiment cannot take, before anything is written.
    check: Callable[[runs.Options], None] | None = None


def _fig6(results: list[RunResult], output_dir: str, options: runs.Options) -> dict:
    """Fig. 6's curves and errors, and the gradients and kernel norms that
    explain them (keras_resnet.reproduce.gradients)."""
    from keras_resnet.reproduce import gradients  # imports TensorFlow's data pipelines

    return {**cifar.fig6_outputs(results, output_dir), **gradients.outputs(results, output_dir)}


def _fig7(results: list[RunResult], output_dir: str, options: runs.Options) -> dict:
    from keras_resnet.reproduce import fig7  # imports TensorFlow's data pipelines

    return fig7.outputs(results, output_dir, options)


EXPERIMENTS = {
    "table1": Experiment(description="parameters and FLOPs of every model beside Tables 1 "
                         "and 6; no training, seconds",
                         direct=lambda _, out, say: report.table1(out, say)),
    "fig6": Experiment(description="plain and residual CIFAR nets, training and validation "
                       "error against iterations (Fig. 6), their test errors, and their "
                       "gradients at initialisation and kernel norms (Sec. 4.1)",
                       specs=cifar.fig6_specs, outputs=_fig6),
    "table6": Experiment(description="CIFAR-10 test errors of ResNet-20 to -110 beside "
                         "Table 6 (--depths, --seeds)",
                         specs=cifar.table6_specs,
                         outputs=lambda results, out, _: cifar.table6_outputs(results, out)),
    "fig7": Experiment(description="the std of every 3x3 layer's response on the test split, "
                       "plain against residual (Fig. 7); reuses fig6's runs",
                       specs=cifar.fig7_specs, outputs=_fig7),
    "fig4": Experiment(description="plain-18/34 and ResNet-18/34 (option A) on ImageNet, "
                       "training and validation error against iterations (Fig. 4)",
                       dataset=imagenet.DATASET, specs=imagenet.fig4_specs,
                       outputs=lambda results, out, _: imagenet.fig4_outputs(results, out)),
    "table2": Experiment(description="their 10-crop top-1 errors beside Table 2; reuses "
                         "fig4's runs", dataset=imagenet.DATASET, specs=imagenet.fig4_specs,
                         outputs=lambda results, out, _: imagenet.table2_outputs(results, out)),
    "table3": Experiment(description="given models (--models, --weights=imagenet) scored "
                         "10-crop beside Table 3; no training", dataset=imagenet.DATASET,
                         direct=lambda options, out, _: imagenet.score_models("table3", options, out),
                         check=lambda options: imagenet.check_models("table3", options)),
    "table4": Experiment(description="the same, multi-scale fully-convolutional, beside "
                         "Table 4; no training", dataset=imagenet.DATASET,
                         direct=lambda options, out, _: imagenet.score_models("table4", options, out),
                         check=lambda options: imagenet.check_models("table4", options)),
}


def check_output_dir(output_dir: str, identity: dict) -> None:
    """Refuses an output folder that holds another experiment's outputs."""
    path = os.path.join(output_dir, MARKER)
    other = files.foreign_entry(output_dir, MARKER)
    if other is not None:
        raise ArgumentError("output_dir", output_dir, f"holds files of something else (e.g. "
                            f"{other!r}): choose an empty or new folder")
    if os.path.exists(path):
        with open(path) as f:
            there = json.load(f)
        diff = [k for k in identity if there.get(k) != identity[k]]
        if diff:
            raise ArgumentError("output_dir", output_dir, (
                f"holds another experiment's outputs ({diff[0]}: {there.get(diff[0])!r} there, "
                f"{identity[diff[0]]!r} now): choose another folder"))
    files.write_text(path, json.dumps(identity, indent=2))


def run_experiment(name: str, options: runs.Options, output_dir: str, *, dry_run: bool = False,
                   say: Callable[[str], None] = print) -> dict | None:
    """Runs experiment `name`; returns its summary (None for a dry run)."""
    experiment = EXPERIMENTS[name]
    specs = experiment.specs(options) if experiment.specs else []
    if dry_run:
        for spec in specs:
            say("\n".join(runs.commands(spec)))
        return None
    # As experiment.json holds it (tuples are lists there).
    identity = json.loads(json.dumps({"experiment": name, **{
        k: v for k, v in dataclasses.asdict(options).items() if k != "verbose"}}))
    if experiment.check is not None:
        experiment.check(options)
    check_output_dir(output_dir, identity)
    if experiment.direct is not None:
        return experiment.direct(options, output_dir, say)
    results = train_all(specs, say)
    summary = {"experiment": name, "options": identity, **experiment.outputs(
        results, output_dir, options), "sources": {r.spec.name: _sources(r.spec) for r in results}}
    report.write_summary(os.path.join(output_dir, "summary.json"), summary)
    say(f"Wrote {name}'s figures and tables to {output_dir}")
    return summary


def train_all(specs: list[RunSpec], say: Callable[[str], None]) -> list[RunResult]:
    """Each run, trained and scored unless finished, with progress."""
    results, started, trained = [], time.monotonic(), 0
    for i, spec in enumerate(specs, 1):
        finished = runs.is_finished(spec)
        say(f"Run {i} of {len(specs)}: {spec.name} "
            f"({'finished, reused' if finished else 'training'}; {spec.config.model_dir})")
        results.append(runs.train_and_score(spec))
        trained += not finished
        left = sum(not runs.is_finished(s) for s in specs[i:])
        if trained and left:
            per_run = (time.monotonic() - started) / trained
            say(f"About {per_run * left / 60:.0f} min left ({left} runs to train)")
    return results


def _sources(spec: RunSpec) -> dict:
    """Where a run's numbers come from."""
    return {"model_dir": spec.config.model_dir,
            "history": os.path.join(spec.config.model_dir, "history.csv"),
            "evaluation": runs.evaluation_path(spec),
            "commands": runs.commands(spec)}
