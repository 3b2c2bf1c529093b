"""The paper's CIFAR-10 experiments (Sec. 4.2): Fig. 6, Table 6 and Fig. 7.

Every run trains a CIFAR net with the paper's recipe (`cifar_paper`: batch
128, lr 0.1, divided by 10 at 32k and 48k of 64k iterations, on the 45k/5k
split) at `paper` scale; `quick` shortens the schedule (the drops stay at 50%
and 75% of it) and keeps two depths, enough to show the trend on a laptop;
`tiny` is for the tests. The curves are Keras' training error (dashed) and
the error on the held-out validation split after each epoch (bold): the
paper's Fig. 6 plots test error, which this code scores once, at the end (in
the tables), so that the test set never chooses anything.
"""

import dataclasses
import os
import statistics
from collections.abc import Sequence

from keras_resnet.errors import ArgumentError
from keras_resnet.models import complexity
from keras_resnet.reproduce import report
from keras_resnet.reproduce.runs import Options
from keras_resnet.reproduce.runs import RunResult
from keras_resnet.reproduce.runs import RunSpec
from keras_resnet.training import recipes
from keras_resnet.training.run import Config

DEPTHS = (20, 32, 44, 56, 110, 1202)  # 6n + 2 (Sec. 4.2)
RECIPE = "cifar_paper"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Scale:
    """How much of an experiment to run: depths and schedule."""

    plain: tuple[int, ...]  # Fig. 6 left, Fig. 7
    residual: tuple[int, ...]  # Fig. 6 middle, Table 6
    deep: tuple[int, ...]  # Fig. 6 right: ResNet-110 and -1202
    train_steps: int | None  # None: the recipe's 64k iterations
    batch_size: int | None = None  # None: the recipe's 128
    image_size: int | None = None
    cost: str  # what it takes, for --help
    # Data sets on which the trend needs a longer schedule to show.
    longer: tuple[tuple[str, int], ...] = ()
    # Runs that warm up as the paper's ResNet-110 does (0.01 for 400 iterations).
    warmup: tuple[str, ...] = ()

    def steps(self, dataset: str) -> int | None:
        """The iterations of a run on `dataset`."""
        return dict(self.longer).get(dataset, self.train_steps)


SCALES = {
    "paper": Scale(plain=(20, 32, 44, 56), residual=(20, 32, 44, 56, 110), deep=(110, 1202),
                   train_steps=None, cost="64k iterations a run (Fig. 6: about 14 H200-hours, "
                   "derived from a measured step rate, not timed whole)"),
    # A ResNet-56 on Fashion-MNIST trains slower than the ResNet-20 early on:
    # 3.9 points of training error behind at 1.5k iterations, 1.4 at 3k (0.66
    # with the warm-up below, docs/figures/fig6_fashion_mnist).
    # Started at 0.1, that ResNet-56 diverges before it learns (loss 5.0 and
    # 18.6% training accuracy over its first 50 iterations; 43.5% at 0.01), and
    # its kernels' norms grow by a third, which slows it for the whole of a
    # short run: the paper's remedy where "0.1 is slightly too large to start
    # converging" (Sec. 4.2). Plain nets keep the recipe: the paper warms none.
    "quick": Scale(plain=(20, 56), residual=(20, 56), deep=(), train_steps=1500,
                   longer=(("fashion_mnist", 3000),), warmup=("resnet56",),
                   cost="1.5k iterations a run, 3k on Fashion-MNIST (Fig. 6: about 40 minutes "
                   "on a 2-core CPU, benchmarks/bench_reproduce.py; on Fashion-MNIST 2.2 hours "
                   "on a 2-core CPU without AVX-512, timed whole)"),
    "tiny": Scale(plain=(20,), residual=(20,), deep=(), train_steps=2, batch_size=8,
                  image_size=16, cost="seconds (for tests)"),
}
# CIFAR-10 test error % (Table 6); Fig. 6's plain nets have no table. They
# stand beside CIFAR-10 runs only: on other data they would compare nothing.
PAPER_ERRORS = {name: figures.top1 for name, figures in complexity.PAPER.items()
                if figures.top1 is not None and figures.params is not None}
PAPER_DATASET = "cifar10"
# A data set's own published anchors, test error %, for runs on it.
ANCHORS = {
    "fashion_mnist": {
        "source": "Fashion-MNIST's benchmark table (github.com/zalandoresearch/fashion-mnist, "
                  "README, 'Benchmark'): test accuracy 94.9%, 96.7%, 91.6%",
        "test error (%)": {"ResNet-18": 5.1, "WRN-40-4": 3.3, "2 conv + pooling": 8.4},
    },
}


def paper_error(model: str, dataset: str) -> float | None:
    """Table 6's CIFAR-10 test error of `model`, for a run on CIFAR-10 only."""
    return PAPER_ERRORS.get(model) if dataset == PAPER_DATASET else None


def check_depths(depths: Sequence[int]) -> None:
    for depth in depths:
        if depth not in DEPTHS:
            raise ArgumentError("depths", depth, f"must be one of {', '.join(map(str, DEPTHS))} "
                                "(the paper's 6n+2 CIFAR nets)")


def spec(options: Options, model: str, seed: int = 0) -> RunSpec:
    """The run of `model` (e.g. "plain20") with `seed` at the options' scale."""
    scale = SCALES[options.scale]
    name = model if options.seeds == 1 else f"{model}_seed{seed}"
    warmup = recipes.get_recipe(RECIPE, "resnet110") if model in scale.warmup else None
    config = Config(model=model, dataset=options.dataset, recipe=RECIPE,
                    train_steps=scale.steps(options.dataset), batch_size=scale.batch_size,
                    image_size=scale.image_size, seed=seed,
                    warmup_steps=warmup and warmup.warmup_steps,
                    warmup_learning_rate=warmup and warmup.warmup_learning_rate,
                    model_dir=os.path.join(options.runs_dir, name), data_dir=options.data_dir,
                    verbose=options.verbose)
    return RunSpec(name=name, config=config)


def fig6_specs(options: Options) -> list[RunSpec]:
    scale = SCALES[options.scale]
    models = ([f"plain{d}" for d in scale.plain] + [f"resnet{d}" for d in scale.residual]
              + [f"resnet{d}" for d in scale.deep if d not in scale.residual])
    return [spec(options, model) for model in models]


def table6_specs(options: Options) -> list[RunSpec]:
    depths = options.depths or SCALES[options.scale].residual
    return [spec(options, f"resnet{d}", seed) for d in depths for seed in range(options.seeds)]


def fig7_specs(options: Options) -> list[RunSpec]:
    """Fig. 7 measures the nets of Fig. 6's left and middle panels."""
    scale = SCALES[options.scale]
    return [spec(options, f"{kind}{d}") for kind, depths in (("plain", scale.plain),
                                                             ("resnet", scale.residual))
            for d in depths]


def fig6_figure(results: list[RunResult]):
    """Fig. 6's panels that have runs: plain nets; ResNets; ResNet-110 and
    -1202 (when -1202 was trained). A matplotlib Figure."""
    names = {r.spec.name for r in results}
    panels = [(title, [r.curve() for r in results if keep(r.spec.name)]) for title, keep in (
        ("plain", lambda n: n.startswith("plain")),
        ("ResNet", lambda n: n.startswith("resnet") and n != "resnet1202"),
        ("ResNet-110 and ResNet-1202",
         lambda n: "resnet1202" in names and n in ("resnet110", "resnet1202")))]
    return report.curves_figure([panel for panel in panels if panel[1]])


def fig6_outputs(results: list[RunResult], output_dir: str) -> dict:
    """fig6.png, fig6.csv/.md (each run's final errors); returns the numbers
    for summary.json."""
    report.save_figure(fig6_figure(results), os.path.join(output_dir, "fig6.png"))
    rows = [_row(r) for r in results]
    report.write_table(os.path.join(output_dir, "fig6"), list(rows[0]), rows)
    return {"runs": rows, **_anchors(results)}


def _anchors(results: list[RunResult]) -> dict:
    """The published anchors of the runs' data set, for summary.json."""
    anchors = ANCHORS.get(results[0].spec.config.dataset)
    return {"anchors": anchors} if anchors else {}


def _row(result: RunResult) -> dict:
    last = result.history[-1]
    return {"run": result.spec.name, "iterations": last["iterations"],
            "train error (%)": result.train_error,
            "val error (%)": 100 * (1 - last["val_accuracy"]) if "val_accuracy" in last else None,
            "test error (%)": result.test_error,
            "paper CIFAR-10 test error (%)": paper_error(result.spec.config.model,
                                                         result.spec.config.dataset)}


def table6_outputs(results: list[RunResult], output_dir: str) -> dict:
    """table6.csv/.md: each depth's test error (best, and mean +- std over
    seeds, as the paper gives ResNet-110's) beside the paper's column."""
    rows = []
    for model in dict.fromkeys(r.spec.config.model for r in results):
        errors = [r.test_error for r in results if r.spec.config.model == model]
        rows.append({"model": model, "runs": len(errors), "best test error (%)": min(errors),
                     "mean (%)": statistics.mean(errors),
                     "std (%)": statistics.stdev(errors) if len(errors) > 1 else None,
                     "paper CIFAR-10 (%)": paper_error(model, results[0].spec.config.dataset)})
    report.write_table(os.path.join(output_dir, "table6"), list(rows[0]), rows)
    return {"rows": rows, "runs": [_row(r) for r in results], **_anchors(results)}
