"""The table of networks: each name's family, block type and depth.

ImageNet family: paper Table 1 (ResNet-18/34/50/101/152, 224x224 input).
CIFAR family: paper Sec. 4.2 (depth 6n+2: ResNet-20/32/44/56/110/1202).
Every residual net has a plain twin (Sec. 4.1, 4.2): the same stack, no
shortcuts. Plain data: it imports nothing of the package, and everything that
needs a name's architecture (the builder, the weights table, the converters,
the counts) reads it here.
"""

import dataclasses
from collections.abc import Iterator


@dataclasses.dataclass(frozen=True, kw_only=True)
class Family:
    """What the networks trained on one data set share (stem, widths, head)."""

    stem: str  # "imagenet": 7x7/2 conv + 3x3/2 max pool; "cifar": 3x3 conv.
    widths: tuple[int, ...]  # filters of each stage's first conv (bottleneck width).
    default_size: int
    min_size: int  # the network's total stride: smaller inputs vanish.
    classes: int
    shortcut: str  # the paper's default option.


FAMILIES = {
    "imagenet": Family(  # Table 1.
        stem="imagenet", widths=(64, 128, 256, 512), default_size=224, min_size=32,
        classes=1000, shortcut="B",
    ),
    "cifar": Family(  # Sec. 4.2.
        stem="cifar", widths=(16, 32, 64), default_size=32, min_size=4, classes=10,
        shortcut="A",
    ),
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Variant:
    """One row of the table: a network's family, block type and depth."""

    family: str
    block: str  # a key of `blocks.BLOCKS`.
    blocks_per_stage: tuple[int, ...]
    residual: bool = True  # False: the plain twin, without shortcuts.


def blocks_of(variant: Variant) -> Iterator[tuple[str, int, int]]:
    """Each block of `variant` in order: its name, filters and stride. Stages
    are numbered from 2 (conv2_x, Table 1); conv2_x keeps the stem's
    resolution, each later stage halves it in its first block."""
    widths = FAMILIES[variant.family].widths
    for stage, (filters, blocks) in enumerate(zip(widths, variant.blocks_per_stage), start=2):
        for i in range(1, blocks + 1):
            yield f"conv{stage}_block{i}", filters, 2 if i == 1 and stage > 2 else 1


def _cifar_variant(n: int) -> Variant:
    """The CIFAR net of depth 6n+2: n basic blocks per stage (Sec. 4.2)."""
    return Variant(family="cifar", block="basic", blocks_per_stage=(n, n, n))


_RESIDUAL = {
    "resnet18": Variant(family="imagenet", block="basic", blocks_per_stage=(2, 2, 2, 2)),
    "resnet34": Variant(family="imagenet", block="basic", blocks_per_stage=(3, 4, 6, 3)),
    "resnet50": Variant(family="imagenet", block="bottleneck", blocks_per_stage=(3, 4, 6, 3)),
    "resnet101": Variant(family="imagenet", block="bottleneck", blocks_per_stage=(3, 4, 23, 3)),
    "resnet152": Variant(family="imagenet", block="bottleneck", blocks_per_stage=(3, 8, 36, 3)),
    "resnet20": _cifar_variant(3),
    "resnet32": _cifar_variant(5),
    "resnet44": _cifar_variant(7),
    "resnet56": _cifar_variant(9),
    "resnet110": _cifar_variant(18),
    "resnet1202": _cifar_variant(200),
}
VARIANTS = dict(_RESIDUAL)
VARIANTS.update(
    (name.replace("resnet", "plain"), dataclasses.replace(spec, residual=False))
    for name, spec in _RESIDUAL.items()
)


def list_models() -> list[str]:
    """Every name `get_model` accepts, ImageNet family first, by depth."""
    return sorted(
        VARIANTS,
        key=lambda n: (
            VARIANTS[n].family != "imagenet",
            not VARIANTS[n].residual,
            int(n.lstrip("resnetplain")),
        ),
    )


def canonical_name(name: str) -> str:
    """The table's name for `name` ("ResNet-50" -> "resnet50"), or ValueError."""
    key = str(name).lower().replace("-", "").replace("_", "")
    if key not in VARIANTS:
        raise ValueError(
            f"Unknown model name: {name!r}. Available: {', '.join(list_models())}"
        )
    return key
