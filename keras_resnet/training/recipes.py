"""Training recipes as data, and the learning-rate schedule they describe.

`cifar_paper`: paper Sec. 4.2. Batch 128, SGD momentum 0.9, weight decay 1e-4,
lr 0.1 divided by 10 at 32k and 48k iterations, stop at 64k; ResNet-110 warms
up at lr 0.01 for its first 400 iterations ("until the training error is below
80% (about 400 iterations)"), then goes back to 0.1.

`imagenet_paper`: paper Sec. 3.4. Batch 256, lr 0.1 "divided by 10 when the
error plateaus", up to 60e4 iterations. A plateau is not data, so the drops sit
at 30, 60 and 90 epochs of ImageNet's 1.28M images (5005 iterations an epoch at
batch 256), as the authors' Torch re-implementation (fb.resnet.torch) did;
600k iterations are 120 epochs.

`imagenet_modern` / `cifar_modern`: beyond the paper (TF Model
Garden's ImageNet recipe; Goyal et al. 2017): linear warm-up for 5 epochs, cosine decay to 0,
label smoothing 0.1.

Iterations in the table are counted at the recipe's own batch size. With
another global batch B the learning rate scales linearly (lr * B / batch_size,
Goyal et al. 2017) and every iteration count scales by batch_size / B, so a run
sees the same number of epochs. Iteration i (0-based, `optimizer.iterations`)
uses the learning rate of `RecipeSchedule(i)`; as in Caffe's "multistep" policy
the drop at 32000 applies to iteration 32000 itself.
"""

import dataclasses
import math
from typing import Any

import keras
from keras import ops

from keras_resnet.models.layers import PACKAGE


@dataclasses.dataclass(frozen=True, kw_only=True)
class Recipe:
    """One training recipe. Iteration counts are at `batch_size`."""

    name: str
    batch_size: int
    learning_rate: float
    train_steps: int
    decay: str  # "step": multiply by `decay_rate` at each boundary; "cosine".
    augment: str  # a name of keras_resnet.data.augment's augmentations.
    # "pixel_mean": the training set's mean image (Sec. 4.2); "caffe":
    # ImageNet's channel means, as the published weights (Sec. 3.4).
    mean: str
    boundaries: tuple[int, ...] = ()
    decay_rate: float = 0.1
    warmup: str = "none"  # "none", "constant" (at warmup_learning_rate), "linear".
    warmup_steps: int = 0
    warmup_learning_rate: float = 0.0
    label_smoothing: float = 0.0
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4  # Caffe convention, see keras_resnet.models.blocks.BlockSettings.
    pca_lighting: float = 0.0  # AlexNet colour augmentation's alpha std.
    per_model: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # name -> changes.


_IMAGENET_EPOCH_AT_1024 = 1251  # ceil(1281167 / 1024)
_CIFAR_EPOCH_AT_128 = 352  # ceil(45000 / 128)

RECIPES = {
    "cifar_paper": Recipe(
        name="cifar_paper", batch_size=128, learning_rate=0.1, train_steps=64000,
        decay="step", boundaries=(32000, 48000), augment="cifar", mean="pixel_mean",
        per_model={
            "resnet110": dict(warmup="constant", warmup_steps=400, warmup_learning_rate=0.01)
        },
    ),
    "imagenet_paper": Recipe(
        name="imagenet_paper", batch_size=256, learning_rate=0.1, train_steps=600000,
        decay="step", boundaries=(150150, 300300, 450450), augment="imagenet", mean="caffe",
        pca_lighting=0.1,
    ),
    "imagenet_modern": Recipe(
        name="imagenet_modern", batch_size=1024, learning_rate=0.4,
        train_steps=90 * _IMAGENET_EPOCH_AT_1024, decay="cosine", augment="inception",
        mean="caffe", warmup="linear", warmup_steps=5 * _IMAGENET_EPOCH_AT_1024,
        label_smoothing=0.1,
    ),
    "cifar_modern": Recipe(
        name="cifar_modern", batch_size=128, learning_rate=0.1,
        train_steps=200 * _CIFAR_EPOCH_AT_128, decay="cosine", augment="cifar",
        mean="pixel_mean", warmup="linear", warmup_steps=5 * _CIFAR_EPOCH_AT_128,
        label_smoothing=0.1,
    ),
    # big_vision's "runlocal": the same code path, shrunk for laptops and tests.
    "smoke": Recipe(
        name="smoke", batch_size=32, learning_rate=0.02, train_steps=40, decay="cosine",
        augment="cifar", mean="pixel_mean", warmup="linear", warmup_steps=4,
    ),
}

DEFAULT_RECIPES = {"cifar": "cifar_paper", "imagenet": "imagenet_paper"}


def get_recipe(name: str, model_name: str | None = None) -> Recipe:
    """The recipe `name`, with the changes it makes for `model_name`."""
    if name not in RECIPES:
        raise ValueError(
            f"Unknown recipe: {name!r}. Available: {', '.join(RECIPES)}"
        )
    recipe = RECIPES[name]
    changes = recipe.per_model.get(model_name, {})
    return dataclasses.replace(recipe, **changes) if changes else recipe


@dataclasses.dataclass(frozen=True, kw_only=True)
class Plan:
    """A recipe resolved for one run: global batch, steps, learning rates."""

    batch_size: int
    train_steps: int
    learning_rate: float
    boundaries: tuple[int, ...]
    warmup_steps: int
    warmup_learning_rate: float
    # The length the schedule spans (a cosine's end): train_steps, unless the
    # run was made longer after it started (keras_resnet.training.run.Run.plan).
    schedule_steps: int | None = None

    def __post_init__(self) -> None:
        if self.schedule_steps is None:
            object.__setattr__(self, "schedule_steps", self.train_steps)


def plan(
    recipe: Recipe,
    batch_size: int | None = None,
    train_steps: int | None = None,
    learning_rate: float | None = None,
    warmup_steps: int | None = None,
    warmup_learning_rate: float | None = None,
) -> Plan:
    """Resolves `recipe` for a global batch and optional overrides.

    The learning rate scales linearly with the global batch; iteration counts
    scale inversely, so the run covers the recipe's epochs. `train_steps`
    overrides the length: step boundaries then keep their fractions of the run
    (the warm-up keeps its length, which is tied to the start of training, not
    to its end). `learning_rate` overrides the batch-scaled base rate and
    scales the warm-up rate with it. `warmup_steps` and `warmup_learning_rate`
    are the run's own, unscaled: a warm-up the recipe lacks runs at a tenth
    of the learning rate unless told (the paper's 0.01 against 0.1). The values are those
    keras_resnet.training.run.resolve_settings has checked (batch and steps >= 1, rate > 0).
    """
    batch_size = int(recipe.batch_size if batch_size is None else batch_size)
    ratio = recipe.batch_size / batch_size
    steps = max(1, round(recipe.train_steps * ratio))
    train_steps = steps if train_steps is None else int(train_steps)
    lr = recipe.learning_rate / ratio
    warmup_lr = recipe.warmup_learning_rate / ratio
    if learning_rate is not None:
        warmup_lr *= learning_rate / lr
        lr = float(learning_rate)
    if warmup_learning_rate is not None:
        warmup_lr = float(warmup_learning_rate)
    elif warmup_steps is not None and not warmup_lr:
        warmup_lr = lr / 10
    boundaries = tuple(
        round(b * ratio * train_steps / steps) for b in recipe.boundaries
    )
    return Plan(
        batch_size=batch_size,
        train_steps=train_steps,
        learning_rate=lr,
        boundaries=boundaries,
        warmup_steps=round(recipe.warmup_steps * ratio) if warmup_steps is None else warmup_steps,
        warmup_learning_rate=warmup_lr,
    )


def schedule(recipe: Recipe, run_plan: Plan) -> "RecipeSchedule":
    """The `RecipeSchedule` of a recipe resolved by `plan`."""
    return RecipeSchedule(
        learning_rate=run_plan.learning_rate,
        decay=recipe.decay,
        boundaries=run_plan.boundaries,
        decay_rate=recipe.decay_rate,
        total_steps=run_plan.schedule_steps,
        warmup=recipe.warmup,
        warmup_steps=run_plan.warmup_steps,
        warmup_learning_rate=run_plan.warmup_learning_rate,
    )


@keras.saving.register_keras_serializable(package=PACKAGE)
class RecipeSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Warm-up, then step decay or cosine decay; `step` is 0-based.

    - warm-up "constant": `warmup_learning_rate` for steps < warmup_steps
      (the paper's ResNet-110); "linear": learning_rate * (step + 1) /
      warmup_steps (Goyal et al.).
    - decay "step": learning_rate * decay_rate ** (number of boundaries <=
      step); "cosine": from learning_rate at the end of the warm-up to 0 at
      total_steps.
    """

    def __init__(
        self,
        learning_rate: float,
        decay: str = "step",
        boundaries: tuple[int, ...] | list[int] = (),
        decay_rate: float = 0.1,
        total_steps: int = 1,
        warmup: str = "none",
        warmup_steps: int = 0,
        warmup_learning_rate: float = 0.0,
    ):
        if decay not in ("step", "cosine"):
            raise ValueError(f"Unknown decay: {decay!r}. Accepted: 'step', 'cosine'")
        if warmup not in ("none", "constant", "linear"):
            raise ValueError(
                f"Unknown warmup: {warmup!r}. Accepted: 'none', 'constant', 'linear'"
            )
        self.learning_rate = float(learning_rate)
        self.decay = decay
        self.boundaries = tuple(int(b) for b in boundaries)
        self.decay_rate = float(decay_rate)
        self.total_steps = int(total_steps)
        self.warmup = warmup
        self.warmup_steps = int(warmup_steps) if warmup != "none" else 0
        self.warmup_learning_rate = float(warmup_learning_rate)

    def __call__(self, step: Any) -> Any:
        step = ops.cast(step, "float32")
        if self.decay == "step":
            # The rates are computed in Python so 0.1 / 10 is float32(0.01).
            rates = [
                self.learning_rate * self.decay_rate**k
                for k in range(len(self.boundaries) + 1)
            ]
            drops = sum(
                ops.cast(ops.greater_equal(step, b), "int32")
                for b in self.boundaries
            )
            lr = ops.take(ops.convert_to_tensor(rates, "float32"), drops)
        else:
            span = max(self.total_steps - self.warmup_steps, 1)
            progress = ops.clip((step - self.warmup_steps) / span, 0.0, 1.0)
            lr = self.learning_rate * 0.5 * (1.0 + ops.cos(math.pi * progress))
        if not self.warmup_steps:
            return lr
        if self.warmup == "constant":
            warm = ops.full_like(step, self.warmup_learning_rate)
        else:
            warm = self.learning_rate * (step + 1.0) / self.warmup_steps
        return ops.where(ops.less(step, self.warmup_steps), warm, lr)

    def get_config(self) -> dict[str, Any]:
        return dict(
            learning_rate=self.learning_rate,
            decay=self.decay,
            boundaries=list(self.boundaries),
            decay_rate=self.decay_rate,
            total_steps=self.total_steps,
            warmup=self.warmup,
            warmup_steps=self.warmup_steps,
            warmup_learning_rate=self.warmup_learning_rate,
        )
