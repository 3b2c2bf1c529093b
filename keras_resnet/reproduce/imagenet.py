"""The paper's ImageNet experiments (Sec. 3.4, 4.1): Fig. 4 and Tables 2, 3 and 4.

`fig4` and `table2` train plain-18/34 and ResNet-18/34 with the paper's
recipe (`imagenet_paper`: batch 256, lr 0.1 divided by 10 every 30 epochs,
600k iterations, scale and colour augmentation) and, as its first
comparison does, option A shortcuts (zero-padding where the channels grow),
on `--dataset`: `imagenet2012` (with `--manual_dir`) or an image folder.
Each run is scored once, at the end, on the dataset's validation split with
the 10-crop protocol (Table 2). The curves are Keras' training error
(dashed) and the error on the held-out part of the training set after each
epoch (bold), where Fig. 4 plots centre-crop validation error.

`table3` and `table4` train nothing: they score given models (`--models`,
files evaluate.py takes, and/or `--weights=imagenet`, the published
ResNet-50/101/152) with the 10-crop (Table 3) or the fully-convolutional
multi-scale protocol (Table 4), beside the paper's row for the same net;
each row names the transform it was scored with (the paper's, not the
weights' own: these tables compare with the paper).
"""

import dataclasses
import os

from keras_resnet.errors import ArgumentError
from keras_resnet.reproduce import report
from keras_resnet.reproduce.runs import Options
from keras_resnet.reproduce.runs import RunResult
from keras_resnet.reproduce.runs import RunSpec
from keras_resnet.training.run import Config

DATASET = "imagenet2012"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Scale:
    """Which depths of Fig. 4 to train, and for how long."""

    depths: tuple[int, ...]  # each trained plain and residual
    train_steps: int | None  # None: the recipe's 600k iterations
    batch_size: int | None = None  # None: the recipe's 256
    image_size: int | None = None  # None: 224
    cost: str  # what it takes, for --help


SCALES = {
    "paper": Scale(depths=(18, 34), train_steps=None, cost="600k iterations a run, four runs "
                   "(about 34 H200-hours in float32, derived from a measured step rate)"),
    "quick": Scale(depths=(18,), train_steps=2000, batch_size=32, image_size=112,
                   cost="2k iterations of 32 images at 112 px a run, two runs (about 35 "
                   "minutes on a 2-core CPU, benchmarks/bench_reproduce.py)"),
    "tiny": Scale(depths=(18,), train_steps=2, batch_size=4, image_size=32,
                  cost="seconds (for tests)"),
}
# ImageNet validation error %, 10-crop (Tables 2 and 3) and multi-scale
# (Table 4): {row: (top-1, top-5)}; Table 2 gives top-1 only.
TABLE2 = {"plain18": 27.94, "plain34": 28.54, "resnet18": 27.88, "resnet34": 25.03}
TABLE3 = {"plain-34": (28.54, 10.02), "ResNet-34 A": (25.03, 7.76), "ResNet-34 B": (24.52, 7.46),
          "ResNet-34 C": (24.19, 7.40), "ResNet-50": (22.85, 6.71), "ResNet-101": (21.75, 6.05),
          "ResNet-152": (21.43, 5.71)}
TABLE4 = {"ResNet-34 B": (21.84, 5.71), "ResNet-34 C": (21.53, 5.60), "ResNet-50": (20.74, 5.25),
          "ResNet-101": (19.87, 4.60), "ResNet-152": (19.38, 4.49)}
PROTOCOLS = {"table3": ("10crop", TABLE3), "table4": ("multiscale", TABLE4)}


def spec(options: Options, model: str) -> RunSpec:
    """The run of `model` ("plain18", "resnet34", ...) at the options' scale."""
    scale = SCALES[options.scale]
    config = Config(model=model, dataset=options.dataset, recipe="imagenet_paper",
                    train_steps=scale.train_steps, batch_size=scale.batch_size,
                    image_size=scale.image_size,
                    shortcut="A" if model.startswith("resnet") else None,
                    model_dir=os.path.join(options.runs_dir, model), data_dir=options.data_dir,
                    manual_dir=options.manual_dir, verbose=options.verbose)
    return RunSpec(name=model, config=config, protocol="10crop")


def fig4_specs(options: Options) -> list[RunSpec]:
    depths = SCALES[options.scale].depths
    return [spec(options, f"{kind}{d}") for kind in ("plain", "resnet") for d in depths]


def fig4_figure(results: list[RunResult]):
    """Fig. 4's two panels, plain nets left and ResNets right. A matplotlib Figure."""
    panels = [(title, [r.curve() for r in results if r.spec.name.startswith(kind)])
              for title, kind in (("plain", "plain"), ("ResNet", "resnet"))]
    return report.curves_figure([panel for panel in panels if panel[1]])


def _row(result: RunResult) -> dict:
    return {"run": result.spec.name, "iterations": result.history[-1]["iterations"],
            "train error (%)": result.train_error,
            "10-crop top-1 error (%)": result.test_error,
            "10-crop top-5 error (%)": 100 * result.evaluation["top5_error"],
            "paper top-1 (%)": TABLE2.get(result.spec.name)}


def fig4_outputs(results: list[RunResult], output_dir: str) -> dict:
    """fig4.png, and fig4.csv/.md: each run's final errors."""
    report.save_figure(fig4_figure(results), os.path.join(output_dir, "fig4.png"))
    rows = [_row(r) for r in results]
    report.write_table(os.path.join(output_dir, "fig4"), list(rows[0]), rows)
    return {"runs": rows}


def table2_outputs(results: list[RunResult], output_dir: str) -> dict:
    """table2.csv/.md: 10-crop top-1 error of each run beside Table 2's."""
    rows = [{"model": r.spec.name, "top-1 error (%)": r.test_error,
             "paper (%)": TABLE2.get(r.spec.name)} for r in results]
    report.write_table(os.path.join(output_dir, "table2"), list(rows[0]), rows)
    return {"rows": rows, "runs": [_row(r) for r in results]}


def check_models(name: str, options: Options) -> None:
    """Refuses table3/table4 with nothing to score, or unknown weights
    (before the experiment writes anything)."""
    if options.weights not in (None, "imagenet"):
        raise ArgumentError("weights", options.weights, "must be 'imagenet' (the published "
                            "ResNet-50/101/152); pass model files with --models")
    if not options.models and options.weights is None:
        raise ValueError(f"{name} needs models to score: --models=PATH[,PATH] (files "
                         "evaluate.py takes) and/or --weights=imagenet")
    for path in options.models:
        if not os.path.exists(path):
            raise ArgumentError("models", path, "does not exist")


def paper_row(model) -> str | None:
    """The row of Tables 3 and 4 that a built `model` (a keras.Model) is:
    its net, and for ResNet-34 the shortcut option its layers show."""
    nets = {model.name: model, **{layer.name: layer for layer in model.layers}}
    name = next((n for n in ("plain34", "resnet34", "resnet50", "resnet101", "resnet152")
                 if n in nets), None)
    if name is None:
        return None
    if name != "resnet34":
        return {"plain34": "plain-34"}.get(name, f"ResNet-{name[len('resnet'):]}")
    inner = [layer.name for layer in nets[name].layers]
    if any(n.endswith("_0_pad") for n in inner):
        return "ResNet-34 A"
    projections = sum(n.endswith("_0_conv") for n in inner)
    return "ResNet-34 C" if projections == 16 else "ResNet-34 B"


def score_models(name: str, options: Options, output_dir: str) -> dict:
    """table3 or table4: each model scored with the table's protocol on the
    dataset's validation split, beside the paper's row for the same net."""
    from keras_resnet.evaluation import artefacts  # imports TensorFlow
    from keras_resnet.evaluation import protocols
    from keras_resnet.models import pretrained

    protocol, paper = PROTOCOLS[name]
    # (label, what load_artefact takes): the files, then the published models.
    sources = [(path, dict(path=path)) for path in options.models]
    if options.weights == "imagenet":
        sources += [(f"{m} (published weights)", dict(model=m, weights="imagenet"))
                    for m in pretrained.authors_models()]
    rows, evaluations = [], {}
    for label, source in sources:
        artefact = artefacts.load_artefact(**source, any_size=protocol == "multiscale")
        result, _, _ = protocols.evaluate_on(
            artefact, options.dataset, protocol=protocol, data_dir=options.data_dir,
            manual_dir=options.manual_dir, verbose=0)
        row = paper_row(artefact.model) if artefact.model is not None else None
        top1, top5 = paper.get(row, (None, None))
        rows.append({"model": label, "paper row": row, "transform": result["transform"],
                     "top-1 error (%)": 100 * result["top1_error"],
                     "top-5 error (%)": 100 * result["top5_error"], "paper top-1 (%)": top1,
                     "paper top-5 (%)": top5})
        evaluations[label] = result
    report.write_table(os.path.join(output_dir, name), list(rows[0]), rows)
    summary = {"experiment": name, "protocol": protocol, "rows": rows, "evaluations": evaluations}
    report.write_summary(os.path.join(output_dir, "summary.json"), summary)
    return summary
