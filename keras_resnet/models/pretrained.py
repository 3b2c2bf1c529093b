"""Every named set of published weights, in one table: `WEIGHTS`.

An entry holds all that is known of one set: the model and the options its
architecture needs, the published file(s) with their checksums, the license,
the published top-1/top-5 and where the figure comes from, and how the weights
want their images (the evaluation transform they were scored with, and the
normalisation they were trained with). Loading, downloading, the metadata of
what is built from them, train.py, evaluate.py and export all read this table
and nothing else (as timm's `pretrained_cfg` and keras-hub's presets do).

Three sources:
  - keras.applications' ResNet50/101/152 ("imagenet"): the authors' Caffe
    models, converted (legacy Keras HDF5; md5 as keras.applications lists it);
  - torchvision's ResNet-18/34 ("imagenet" = "tv_in1k") and ResNet-50
    ("tv_in1k"), as timm's safetensors copies pinned to a commit (sha256), and
    torchvision's IMAGENET1K_V2 ResNet-50/101/152 ("tv2_in1k"), as torchvision
    publishes them: a `torch.save` file whose name carries the first 8 hex
    digits of its sha256, which is all torchvision checks;
  - timm's "ResNet strikes back" A1 ResNet-50 ("a1_in1k", safetensors).
torchvision's and timm's ResNet-50/101/152 put the stride on the 3x3 conv:
they need `version="v1.5"`. ResNet-18/34 are the paper's nets (option B).
"""

import dataclasses
from collections.abc import Mapping
from typing import Any

from keras_resnet.errors import ArgumentError
from keras_resnet.models.variants import canonical_name

# Formats of published files: keras.applications' legacy HDF5, a
# `.safetensors` state dict, a `torch.save` state dict.
FORMATS = ("keras_h5", "safetensors", "torch")
_KERAS_APPLICATIONS = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
_HUB = "https://huggingface.co/timm/"
_TORCHVISION = "https://download.pytorch.org/models/"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Normalization:
    """What the weights want done to RGB images in [0, 255] before the
    network: channels reversed (RGB -> BGR) if asked, then `(x - mean) / std`,
    `mean` and `std` per channel in the order after any reversal, in [0, 255]
    units (std None: no division)."""

    name: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float] | None
    reverse_channels: bool


NORMALIZATIONS = {
    # keras.applications' preprocess_input "caffe" mode: BGR, ImageNet's
    # channel means, no scaling (the authors' Caffe models).
    "caffe": Normalization(name="caffe", mean=(103.939, 116.779, 123.68), std=None,
                           reverse_channels=True),
    # torchvision's (and timm's for these weights): x / 255, minus
    # (0.485, 0.456, 0.406), over (0.229, 0.224, 0.225), in RGB.
    "torchvision": Normalization(
        name="torchvision", mean=tuple(round(255 * m, 6) for m in (0.485, 0.456, 0.406)),
        std=tuple(round(255 * s, 6) for s in (0.229, 0.224, 0.225)), reverse_channels=False,
    ),
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class PublishedFile:
    """One published file: where it is, the name it is cached (and looked up
    in a mirror) by, and its checksum "md5:<hex>" or "sha256:<hex>"; a hex
    shorter than the full digest is a prefix (torchvision's check). A
    download of more bytes than `size` is refused (keras_resnet.models.downloads)."""

    url: str
    fname: str
    checksum: str
    size: int | None = None  # bytes, where published


@dataclasses.dataclass(frozen=True, kw_only=True)
class PretrainedWeights:
    """One named set of weights of one model (see the module's docstring)."""

    model: str  # a name of list_models(), e.g. "resnet50"
    name: str  # what `weights=` takes, e.g. "tv2_in1k"
    aliases: tuple[str, ...] = ()  # other names `weights=` takes for it
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # e.g. version="v1.5"
    format: str  # one of FORMATS
    top: PublishedFile  # the whole classifier
    notop: PublishedFile | None = None  # the backbone alone, where published apart
    license: str
    top1: float  # ImageNet-1K validation accuracy (%), as published
    top5: float | None
    source: str  # where the accuracy is published
    resize: int  # evaluation: the shorter side resized to this, then
    crop: int  # a centre crop of this side
    interpolation: str
    normalization: str  # a key of NORMALIZATIONS

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)

    def file(self, include_top: bool) -> PublishedFile:
        """The file to load: the no-top file where there is one."""
        return self.top if include_top or self.notop is None else self.notop

    def describe_options(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.options.items()) or "the defaults"


def _applications(model: str, md5_top: str, md5_notop: str, top1: float,
                  top5: float) -> PretrainedWeights:
    def file(suffix: str, md5: str) -> PublishedFile:
        fname = f"{model}_weights_tf_dim_ordering_tf_kernels{suffix}.h5"
        return PublishedFile(url=_KERAS_APPLICATIONS + fname, fname=fname, checksum=f"md5:{md5}")

    return PretrainedWeights(
        model=model, name="imagenet", format="keras_h5",
        top=file("", md5_top), notop=file("_notop", md5_notop),
        license="MIT (the authors' Caffe models, converted by keras.applications)",
        top1=top1, top5=top5, source="keras.applications' reported accuracy",
        resize=256, crop=224, interpolation="bilinear", normalization="caffe",
    )


def _timm(model: str, tag: str, revision: str, sha256: str, size: int,
          **fields: Any) -> PretrainedWeights:
    """A safetensors copy on timm's hub, pinned to `revision`. The sha256s and
    sizes were read from public manifests of these files, not from the hub
    itself (no network where this was written; resnet18's agrees in two): a
    wrong one would refuse the download, never let another file in."""
    hub_id = f"{model}.{tag}"
    return PretrainedWeights(
        model=model, name=tag, format="safetensors",
        top=PublishedFile(url=f"{_HUB}{hub_id}/resolve/{revision}/model.safetensors",
                          fname=f"{hub_id}.safetensors", checksum=f"sha256:{sha256}", size=size),
        normalization="torchvision", **fields,
    )


def _torchvision(model: str, tag: str, fname: str, **fields: Any) -> PretrainedWeights:
    """A torchvision file: its name carries its sha256's first 8 hex digits."""
    prefix = fname.rsplit("-", 1)[1].split(".")[0]
    return PretrainedWeights(
        model=model, name=tag, format="torch",
        top=PublishedFile(url=_TORCHVISION + fname, fname=fname, checksum=f"sha256:{prefix}"),
        normalization="torchvision", license="BSD-3-Clause (torchvision)", **fields,
    )


_V15 = {"version": "v1.5"}
_TV = dict(license="BSD-3-Clause (torchvision)", resize=256, crop=224, interpolation="bilinear")
_TV2 = dict(options=_V15, resize=232, crop=224, interpolation="bilinear")

WEIGHTS: tuple[PretrainedWeights, ...] = (
    _applications("resnet50", "2cb95161c43110f7111970584f804107",
                  "4d473c1dd8becc155b73f8504c6f6626", 74.928, 92.060),
    _applications("resnet101", "f1aeb4b969a6efcfb50fad2f0c20cfc5",
                  "88cf7a10940856eca736dc7b7e228a21", 76.420, 92.786),
    _applications("resnet152", "100835be76be38e30d865e96f2aaae62",
                  "ee4c566cf9a93f14d82f913c2dc6dd0c", 76.604, 93.118),
    _timm("resnet18", "tv_in1k", "bbd144b3e5565108aad885f145491d11bc6ce807",
          "694f673df6520a3158624e8a89af086f59923ee4cd7436fe5bc3bc71d295ad81", 46_807_446,
          aliases=("imagenet",), top1=69.758, top5=89.078,
          source="torchvision ResNet18_Weights.IMAGENET1K_V1", **_TV),
    _timm("resnet34", "tv_in1k", "1b7b21cca82ff974d341713f777bf740c2db38c4",
          "0bb82595a564991a9d424708b33f5d843f5aaed7f6c0886ff10849ff97022235", 87_278_522,
          aliases=("imagenet",), top1=73.314, top5=91.420,
          source="torchvision ResNet34_Weights.IMAGENET1K_V1", **_TV),
    _timm("resnet50", "tv_in1k", "78f3ecfdb38e06d9b8397f662e7ab8fee96026fa",
          "5d061a3c593d795bfe682d9b152bafbcf550579873492def3515b46db1189888", 102_469_840,
          options=_V15, top1=76.130, top5=92.862,
          source="torchvision ResNet50_Weights.IMAGENET1K_V1", **_TV),
    _timm("resnet50", "a1_in1k", "767268603ca0cb0bfe326fa87277f19c419566ef",
          "773525d5821de224f8f30c33377b7a795d7863e08522698200d3217d3f2a41bb", 102_469_840,
          options=_V15, license="Apache-2.0 (timm)", top1=80.4, top5=None,
          source="Wightman et al. 2021, ResNet strikes back (arXiv:2110.00476), procedure A1",
          resize=235, crop=224, interpolation="bicubic"),
    # timm's safetensors copies of these (timm/resnet{50,101,152}.tv2_in1k)
    # would need no unpickler and carry a full sha256, but their digests and
    # sizes are not pinned here yet; until they are, torchvision's own files
    # are read by the closed reader of keras_resnet.models.torch_files.
    _torchvision("resnet50", "tv2_in1k", "resnet50-11ad3fa6.pth", top1=80.858, top5=95.434,
                 source="torchvision ResNet50_Weights.IMAGENET1K_V2", **_TV2),
    _torchvision("resnet101", "tv2_in1k", "resnet101-cd907fc2.pth", top1=81.886, top5=95.780,
                 source="torchvision ResNet101_Weights.IMAGENET1K_V2", **_TV2),
    _torchvision("resnet152", "tv2_in1k", "resnet152-f82ba261.pth", top1=82.284, top5=96.002,
                 source="torchvision ResNet152_Weights.IMAGENET1K_V2", **_TV2),
)

# Not weights, but published as they are and fetched the same way:
# keras.applications' ImageNet class index, for decode_predictions.
CLASS_INDEX = PublishedFile(
    url="https://storage.googleapis.com/download.tensorflow.org/data/imagenet_class_index.json",
    fname="imagenet_class_index.json", checksum="md5:c2c37ea517e94d9795004a39431a14cb",
)


def list_weights(model: str | None = None) -> list[PretrainedWeights]:
    """The table's entries, of `model` only if given (any spelling that
    get_model takes: "ResNet50", "resnet50")."""
    if model is None:
        return list(WEIGHTS)
    model = canonical_name(model)
    return [entry for entry in WEIGHTS if entry.model == model]


def authors_models() -> list[str]:
    """The models whose "imagenet" weights are the paper's authors' own
    (keras.applications' conversion of their Caffe models)."""
    return [e.model for e in WEIGHTS if "imagenet" in e.names and e.format == "keras_h5"]


def is_named(weights: Any) -> bool:
    """Whether `weights` is a name in the table (of any model)."""
    return isinstance(weights, str) and any(weights in e.names for e in WEIGHTS)


def find(model: str, weights: str) -> PretrainedWeights:
    """The entry `weights` of `model`; `refused` if there is none."""
    for entry in WEIGHTS:
        if entry.model == model and weights in entry.names:
            return entry
    raise refused(model, weights)


def refused(model: str, weights: Any) -> ArgumentError:
    """The error for `weights` that `model` cannot take, in one line: the
    names it has, and the models that have `weights` if any."""
    own = ", ".join(name for entry in WEIGHTS if entry.model == model for name in entry.names)
    elsewhere = sorted({entry.model for entry in WEIGHTS if weights in entry.names})
    where = f" ({weights!r} are weights of {', '.join(elsewhere)})" if elsewhere else ""
    if not own:
        return ArgumentError("weights", weights, "must be None (He initialisation) or the path "
                             f"to an existing weights file: {model} has no published weights{where}")
    return ArgumentError("weights", weights, (
        f"must be None (He initialisation), a name of list_weights({model!r}) ({own}) or the "
        f"path to an existing weights file{where}"))


def check(entry: PretrainedWeights, *, include_top: bool, classes: int, shortcut: str,
          version: str) -> None:
    """ValueError in one line unless the model these arguments build can
    take `entry`: its options, and ImageNet's 1000 classes for its top."""
    if include_top and classes != 1000:
        raise ValueError(
            f"If using weights={entry.name!r} with include_top=True, `classes` "
            f"should be 1000. Received: classes={classes}"
        )
    asked = {"shortcut": "B", "version": "v1", **entry.options}
    given = {"shortcut": shortcut, "version": version}
    wrong = [k for k in given if given[k] != asked[k]]
    if wrong:
        needed = ", ".join(f"{k}={asked[k]!r}" for k in wrong)
        received = ", ".join(f"{k}={given[k]!r}" for k in wrong)
        raise ValueError(
            f"The {entry.name!r} weights of {entry.model} are for {needed}. Received: {received}"
        )
