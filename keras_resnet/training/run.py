"""One training run's values, each decided once: `Config` -> `Settings` -> `Run`.

`Config` is what the caller asks for (None: the recipe's or the model family's
value). `resolve_settings` checks every value before any work and gives the
`Settings`: what the config decides. `Settings.with_data` gives the `Run`, with
what the data decides (its size and classes); `Run.continuing` adds the plan a
continued run started with, `Run.with_progress` what of the run is done.
Everything else, global batch, steps, epochs, learning rate, mean
subtraction, test view, model_dir, is read from them, never computed again.

`read_summary` reads back what a run stored of them (config.json), checked:
the file says what it holds.

Learning rate and replicas: `batch_size` is global, split evenly across the
replicas; the recipe's learning rate scales linearly with the global batch
(keras_resnet.training.recipes), and the number of replicas does not enter it.
"""

import dataclasses
import functools
import math
import os
from collections.abc import Sequence
from typing import Any

from keras_resnet import files
from keras_resnet.data import augment
from keras_resnet.data import folders
from keras_resnet.data import images
from keras_resnet.data import sources
from keras_resnet.errors import ArgumentError
from keras_resnet.models import metadata
from keras_resnet.models.blocks import SHORTCUT_OPTIONS
from keras_resnet.models.resolved import ResolvedWeights
from keras_resnet.models.resolved import resolve_weights
from keras_resnet.models.resnet import FAMILIES
from keras_resnet.models.resnet import VARIANTS
from keras_resnet.models.resnet import canonical_name
from keras_resnet.training import recipes

PRECISIONS = {"none": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}
SUMMARY = "config.json"  # a run's, written first: what tells a run's folder
# A summary holds a few KiB (class names are file names, at most 255 bytes);
# a larger file is not one, and is not read.
MAX_SUMMARY_BYTES = 16 << 20
# What a run reads back of its summary (trainer's check_same_run,
# check_same_data, first_plan), each of its exact JSON type (a Plan's tuple
# is a list there); an older run's may lack some.
SUMMARY_TYPES = {"config": dict, "class_names": list, "num_train": int, "num_val": int,
                 "plan": dict}
PLAN_TYPES = {"batch_size": int, "train_steps": int, "learning_rate": float, "boundaries": list,
              "warmup_steps": int, "warmup_learning_rate": float, "schedule_steps": int}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    """One training run as asked for. None means "the recipe's (or model family's) value"."""

    model: str = "resnet20"
    dataset: str = "cifar10"
    recipe: str | None = None
    batch_size: int | None = None  # global, split across the replicas
    epochs: int | None = None
    train_steps: int | None = None
    learning_rate: float | None = None
    # A warm-up of this many iterations before the schedule (None: the
    # recipe's): at warmup_learning_rate, or rising linearly where the
    # recipe's warm-up is linear.
    warmup_steps: int | None = None
    warmup_learning_rate: float | None = None  # None: the recipe's, else learning_rate / 10
    model_dir: str | None = None  # runs/<model>_<dataset> (default_model_dir)
    strategy: str = "auto"
    mixed_precision: str = "none"
    jit_compile: bool = False
    # TensorFlow's op determinism, for the whole process: a seeded run then
    # gives the same weights bit for bit, however loaded the machine.
    deterministic: bool = False
    seed: int = 0
    image_size: int | None = None
    shortcut: str | None = None  # "A", "B" or "C" (Sec. 3.3); None: the family's (B or A)
    weights: str | None = None
    freeze_backbone: bool = False
    data_dir: str | None = None
    manual_dir: str | None = None
    synthetic_examples: int = 1024
    # Of a folder's train/, held out (seeded) to validate when it has test/
    # but no val/: the test set never chooses the model.
    val_fraction: float = sources.VAL_FRACTION
    max_pixels: int = images.MAX_PIXELS  # larger training images are skipped, undecoded
    verbose: int = 1  # Keras progress bars

    def identifying_fields(self) -> dict[str, Any]:
        """What the run trains, which makes two runs the same run: every field
        but where its files are (`model_dir`, `data_dir`, `manual_dir`), how
        it runs (`strategy`, `jit_compile`, `deterministic`, `verbose`) and its length
        (`epochs`, `train_steps`: a longer run continues the same one). The
        data itself, its classes and sizes, is compared apart (config.json)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in NOT_IDENTIFYING}


NOT_IDENTIFYING = ("model_dir", "data_dir", "manual_dir", "strategy", "jit_compile", "deterministic",
                   "verbose", "epochs", "train_steps")


@dataclasses.dataclass(frozen=True)
class Progress:
    """How much of a run is done: its finished epochs and their steps (the
    last epoch of a run may be short of a whole one)."""

    epochs: int = 0
    steps: int = 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    """What a run's config decides, before its data is read: every value
    checked, every default filled in (`resolve_settings`)."""

    config: Config  # every default filled in: the run's identity
    family: str  # "cifar" (paper Sec. 4.2) or "imagenet" (Sec. 3.4)
    recipe: recipes.Recipe  # with its changes for config.model
    weights: ResolvedWeights  # config.weights, resolved once
    # Inside the model: "pixel_mean" (the training set's, Sec. 4.2), or the
    # normalisation of the weights it starts from (pretrained.NORMALIZATIONS).
    preprocessing: str
    test_view: str  # the recipe's augmentation's (keras_resnet.data.augment.VIEWS)

    @property
    def batch_size(self) -> int:
        """The global batch."""
        return self.config.batch_size

    @property
    def image_size(self) -> int:
        return self.config.image_size

    def with_data(self, class_names: Sequence[str], num_train: int) -> "Run":
        """The run these settings make of data with `class_names` and
        `num_train` training images (at least a batch: pipeline refuses fewer)."""
        settings = {field.name: getattr(self, field.name) for field in dataclasses.fields(Settings)}
        return Run(**settings, class_names=tuple(class_names), num_train=num_train)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Run(Settings):
    """Every value of one run: its settings and what its data decides; the
    properties derive the rest, in this one place."""

    class_names: tuple[str, ...]  # from the data
    num_train: int  # training images, from the data
    # The plan the run was started with (config.json), when it is continued:
    # its schedule is kept, only its length changes (`plan`).
    first_plan: recipes.Plan | None = None
    done: Progress = Progress()  # restored from the run's backup

    def continuing(self, first_plan: recipes.Plan | None) -> "Run":
        """This run as the continuation of one started with `first_plan`."""
        return dataclasses.replace(self, first_plan=first_plan)

    def with_progress(self, done: Progress) -> "Run":
        """This run with what of it is done already (restored from its backup)."""
        return dataclasses.replace(self, done=done)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def steps_per_epoch(self) -> int:
        return self.num_train // self.batch_size

    @functools.cached_property
    def plan(self) -> recipes.Plan:
        """The recipe at this run's batch and length: steps and learning rates.

        A continued run keeps the schedule it was started with (its drops, its
        warm-up, the length its cosine spans): a longer run trains its added
        steps at the rate that schedule ends with."""
        train_steps = self.config.train_steps
        if self.config.epochs is not None:
            train_steps = self.config.epochs * self.steps_per_epoch
        fresh = recipes.plan(self.recipe, self.batch_size, train_steps, self.config.learning_rate,
                             self.config.warmup_steps, self.config.warmup_learning_rate)
        if self.first_plan is None:
            return fresh
        return dataclasses.replace(self.first_plan, train_steps=fresh.train_steps)

    @functools.cached_property
    def schedule(self) -> recipes.RecipeSchedule:
        """The learning rate of each (0-based) iteration."""
        return recipes.schedule(self.recipe, self.plan)

    @property
    def train_steps(self) -> int:
        return self.plan.train_steps

    @property
    def learning_rate(self) -> float:
        return self.plan.learning_rate

    @property
    def epochs(self) -> int:
        """The run's epochs: those done, and enough for the steps left."""
        return self.done.epochs + math.ceil(self.steps_left / self.steps_per_epoch)

    @property
    def steps_left(self) -> int:
        return max(self.train_steps - self.done.steps, 0)

    @property
    def last_epoch_steps(self) -> int:
        """Steps of the last epoch, which may be short of a whole one."""
        return self.steps_left - (self.epochs - self.done.epochs - 1) * self.steps_per_epoch

    def model_info(self) -> metadata.ModelInfo:
        """What the run's model files say about themselves."""
        return metadata.ModelInfo(
            model=self.config.model,
            family=self.family,
            image_size=self.image_size,
            test_view=self.test_view,
            class_names=self.class_names,
            preprocessing=self.preprocessing,
        )


def _check_values(config: Config, model: str, min_size: int) -> ResolvedWeights:
    """ArgumentError for the first value of `config` it cannot take; else
    its weights, resolved."""
    if config.mixed_precision not in PRECISIONS:
        raise ArgumentError("mixed_precision", config.mixed_precision,
                            f"must be one of {', '.join(PRECISIONS)}")
    if config.epochs is not None and config.train_steps is not None:
        raise ArgumentError("epochs", config.epochs, "cannot be given with train_steps")
    lowest = dict(batch_size=1, epochs=1, train_steps=1, synthetic_examples=1, seed=0,
                  verbose=0, warmup_steps=0, image_size=min_size)  # the total stride.
    for name, low in lowest.items():
        value = getattr(config, name)
        if value is not None and not value >= low:
            raise ArgumentError(name, value, f"must be >= {low}" + (
                f" for {model}" if name == "image_size" else ""))
    if config.verbose > 2:
        raise ArgumentError("verbose", config.verbose, "must be 0, 1 or 2")
    if config.shortcut is not None and config.shortcut not in SHORTCUT_OPTIONS:
        raise ArgumentError("shortcut", config.shortcut,
                            f"must be one of {', '.join(SHORTCUT_OPTIONS)}")
    if config.shortcut is not None and not VARIANTS[model].residual:
        raise ArgumentError("shortcut", config.shortcut, f"{model} is a plain net: it has no "
                            "shortcuts")
    for name in ("learning_rate", "warmup_learning_rate"):
        value = getattr(config, name)
        if value is not None and not 0 < value < math.inf:
            raise ArgumentError(name, value, "must be > 0")
    weights = resolve_weights(model, config.weights)
    # The builder's own check, made before any data is read (the top is the run's).
    weights.check_fits(include_top=False, classes=0, version=weights.options.get("version", "v1"),
                       shortcut=config.shortcut or FAMILIES[VARIANTS[model].family].shortcut)
    if config.freeze_backbone and config.weights is None:
        raise ArgumentError("freeze_backbone", config.freeze_backbone,
                            "needs weights (a frozen random backbone learns nothing)")
    if weights.info is not None and weights.info.model != model:
        raise ArgumentError("weights", config.weights, f"must hold a {model}, the model "
                            f"asked for (it holds a {weights.info.model})")
    return weights


def _with_warmup(recipe: recipes.Recipe, config: Config) -> recipes.Recipe:
    """The recipe whose warm-up config.warmup_steps sets: where the recipe has
    none, a constant one (the paper's, for ResNet-110). A warm-up rate is a
    constant warm-up's only."""
    if config.warmup_steps is not None and recipe.warmup == "none":
        recipe = dataclasses.replace(recipe, warmup="constant")
    if config.warmup_learning_rate is not None and recipe.warmup != "constant":
        why = (f"the warm-up of recipe {recipe.name} rises linearly to the learning rate"
               if recipe.warmup == "linear" else "needs warmup_steps: the recipe has no warm-up")
        raise ArgumentError("warmup_learning_rate", config.warmup_learning_rate,
                            f"sets a constant warm-up's rate; {why}")
    return recipe


def _preprocessing(weights: ResolvedWeights, recipe: recipes.Recipe) -> str:
    """The preprocessing inside the run's model: that of the model the
    weights come from, where it is known (a published set's, from the table;
    torchvision's for a torchvision/timm state dict; a model train.py wrote:
    its own), as the backbone's features were learnt on inputs preprocessed
    so; otherwise the recipe's."""
    if weights.normalization is not None:
        return weights.normalization
    return recipe.mean if weights.info is None else weights.info.preprocessing


def default_model_dir(model: str, dataset: str) -> str:
    """Where a run writes unless told: runs/<model>_<dataset's name>."""
    return os.path.join("runs", f"{model}_{os.path.basename(os.path.normpath(dataset))}")


def resolve_settings(config: Config) -> Settings:
    """Checks every value of `config` before any work is done; returns the
    run's settings, the config's defaults filled in."""
    model = canonical_name(config.model)
    family_name = VARIANTS[model].family
    family = FAMILIES[family_name]
    recipe = recipes.get_recipe(config.recipe or recipes.DEFAULT_RECIPES[family_name], model)
    test_view = augment.get_augmentation(recipe.augment).test_view
    weights = _check_values(config, model, family.min_size)
    recipe = _with_warmup(recipe, config)
    dataset = folders.normalize(config.dataset)
    config = dataclasses.replace(
        config,
        model=model,
        dataset=dataset,
        recipe=recipe.name,
        batch_size=recipe.batch_size if config.batch_size is None else config.batch_size,
        image_size=family.default_size if config.image_size is None else config.image_size,
        model_dir=config.model_dir or default_model_dir(model, dataset),
    )
    return Settings(
        config=config,
        family=family_name,
        recipe=recipe,
        weights=weights,
        preprocessing=_preprocessing(weights, recipe),
        test_view=test_view,
    )


# ------------------------------------------------- a stored run's summary


def read_summary(model_dir: str) -> tuple[dict[str, Any] | None, str | None]:
    """config.json of the run in `model_dir`, and why not where it cannot be
    read: (None, None) without one; (None, why) for one that is not JSON
    nested at most metadata.MAX_JSON_DEPTH deep (a power loss can leave it
    cut short), which the run rewrites. One that reads as something else
    than a run's summary (another program's config.json, a JSON list, fields
    of other types), a symlink, or one over MAX_SUMMARY_BYTES says the
    folder is not a run's: ArgumentError, one line."""
    path = os.path.join(model_dir, SUMMARY)
    if not os.path.lexists(path):
        return None, None
    try:
        content = files.read_bytes(path, MAX_SUMMARY_BYTES)
    except OSError as e:
        return None, e.strerror or str(e)
    except ValueError as e:
        raise _not_a_run(model_dir, str(e)) from None
    try:
        summary = metadata.parse_json(content)
    except ValueError as e:
        return None, " ".join(str(e).split())
    problem = _summary_problem(summary)
    if problem is not None:
        raise _not_a_run(model_dir, f"{path} {problem}")
    return summary, None


def _summary_problem(summary: Any) -> str | None:
    """What makes parsed JSON other than a summary trainer.write_summary writes, or None."""
    if type(summary) is not dict or type(summary.get("config")) is not dict:
        return "is not a run's summary (a JSON object with its config)"
    plan = summary.get("plan", {})
    for fields, types in ((summary, SUMMARY_TYPES), (plan, PLAN_TYPES)):
        for key, kind in types.items():  # a plan that is no dict is found in the first pass
            if key in fields and type(fields[key]) is not kind:
                return f"has a {key} of type {type(fields[key]).__name__}, not {kind.__name__}"
    if not all(type(n) is str for n in summary.get("class_names", [])):
        return "has a class name that is not a string"
    if plan and not set(PLAN_TYPES) - {"schedule_steps"} <= set(plan) <= set(PLAN_TYPES):
        return f"has a plan of other fields than {', '.join(PLAN_TYPES)}"
    if not all(type(b) is int for b in plan.get("boundaries", [])):
        return "has a plan boundary that is not an integer"
    return None


def _not_a_run(model_dir: str, why: str) -> ArgumentError:
    return ArgumentError("model_dir", model_dir, f"is not a run of train.py: {why}; choose an "
                         "empty or new folder")
