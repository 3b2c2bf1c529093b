"""The weights table (keras_resnet.models.pretrained): named weights load
through the verified download (a mirror on 127.0.0.1, Keras' cache in
$KERAS_HOME) and compute what the PyTorch net computes; a file that is not the
published one is refused in one line; the table is the only place that knows
a URL, a checksum or a normalisation, and docs/weights.md shows it; the weights'
preprocessing travels from train.py into evaluate and export.

The published files are stand-ins written here in their publishers' layouts
(timm's model.safetensors, torchvision's torch.save file) from the PyTorch
reference of tests/torch_resnet.py, under the table's file names; their
checksums take the published ones' place (tests.helpers.use_stand_ins)."""

import dataclasses
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
import torch

import keras_resnet
from keras_resnet.models import downloads
from keras_resnet.models import pretrained
from tests.helpers import REPO
from tests.helpers import FolderServer
from tests.helpers import use_stand_ins
from tests.torch_resnet import SIZE
from tests.torch_resnet import TOLERANCE
from tests.torch_resnet import images
from tests.torch_resnet import relative_error
from tests.torch_resnet import save
from tests.torch_resnet import torch_net
from tests.torch_resnet import torch_outputs
from tests.torch_resnet import torch_stages

# (model, weights name) -> the PyTorch reference's architecture in the file:
# timm's safetensors (tv_in1k, a1_in1k) and torchvision's torch.save (tv2_in1k).
SERVED = {("resnet18", "tv_in1k"): "resnet18", ("resnet50", "a1_in1k"): "resnet50",
          ("resnet50", "tv2_in1k"): "resnet50"}


def _torchvision_normalised(images):
    """RGB in [0, 255] as torchvision's transforms give it to its nets,
    written out here: to [0, 1], minus ImageNet's mean, over its std."""
    mean = np.array([0.485, 0.456, 0.406], "float32")
    std = np.array([0.229, 0.224, 0.225], "float32")
    return (images / 255 - mean) / std


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """{(model, name): (torch net, its file)}: 1000-class references saved as
    timm's files are, under the table's file names, in one folder."""
    folder = tmp_path_factory.mktemp("published")
    made = {}
    for (model, name), arch in SERVED.items():
        net = torch_net(arch, seed=len(made), num_classes=1000)
        path = folder / pretrained.find(model, name).top.fname
        if path.suffix == ".pth":
            torch.save(net.state_dict(), path)
        made[model, name] = (net, str(path) if path.suffix == ".pth" else save(net, path))
    return made


@pytest.fixture
def mirror(published, tmp_path, monkeypatch):
    """The stand-ins served from 127.0.0.1 as $KERAS_RESNET_WEIGHTS_URL, with
    Keras' cache in $KERAS_HOME: (server, cache folder)."""
    folder = tmp_path / "served"
    folder.mkdir()
    for _, path in published.values():
        os.symlink(path, folder / os.path.basename(path))
    use_stand_ins(monkeypatch, *(path for _, path in published.values()))
    server = FolderServer(folder)
    monkeypatch.setenv("KERAS_RESNET_WEIGHTS_URL", server.url)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    yield server, tmp_path / "keras_home" / "models", folder
    server.close()


def test_resnet18_imagenet_is_torchvisions_with_and_without_top_and_after_a_round_trip(
    published, mirror, tmp_path
):
    server, cache, _ = mirror
    net, _ = published["resnet18", "tv_in1k"]
    x = images()
    model = keras_resnet.ResNet18(weights="imagenet", input_shape=(SIZE, SIZE, 3),
                                  classifier_activation=None)
    assert relative_error(model(x, training=False), torch_outputs(net, x)) <= TOLERANCE
    backbone = keras_resnet.ResNet18(weights="tv_in1k", include_top=False, pooling="avg")
    assert relative_error(backbone(x, training=False),
                          torch_outputs(net, x, features=True)) <= TOLERANCE
    model.save(tmp_path / "resnet18.keras")
    loaded = keras.saving.load_model(tmp_path / "resnet18.keras")
    assert relative_error(loaded(x, training=False), torch_outputs(net, x)) <= TOLERANCE
    # One file for both (timm publishes no separate backbone), downloaded once.
    assert server.requests == 1 and os.listdir(cache) == ["resnet18.tv_in1k.safetensors"]


@pytest.mark.parametrize("name", ["a1_in1k", "tv2_in1k"])
def test_resnet50_modern_weights_need_v15_and_are_pytorchs(published, mirror, name):
    server, cache, _ = mirror
    with pytest.raises(ValueError) as error:
        keras_resnet.ResNet50(weights=name)
    assert str(error.value) == (f"The {name!r} weights of resnet50 are for version='v1.5'. "
                                "Received: version='v1'")
    assert server.requests == 0  # refused before any download
    net, path = published["resnet50", name]
    x = images()
    model = keras_resnet.ResNet50(weights=name, version="v1.5", input_shape=(SIZE, SIZE, 3),
                                  classifier_activation=None)
    assert relative_error(model(x, training=False), torch_outputs(net, x)) <= TOLERANCE
    assert os.listdir(cache) == [os.path.basename(path)]  # timm's safetensors; torchvision's .pth
    backbone = keras_resnet.ResNet50(weights=name, version="v1.5", include_top=False, pooling="avg")
    assert relative_error(backbone(x, training=False),
                          torch_outputs(net, x, features=True)) <= TOLERANCE


@pytest.mark.parametrize("name, resize, interpolation", [("a1_in1k", 235, "bicubic"),
                                                         ("tv2_in1k", 232, "bilinear")],
                         ids=["a1_in1k", "tv2_in1k"])
def test_named_weights_are_evaluated_with_their_own_transform(published, mirror, name, resize,
                                                              interpolation):
    """evaluate.py's default for published weights: the table's resize, crop
    and interpolation (Wightman et al.'s 235 bicubic; torchvision's 232),
    not the paper's 256."""
    from keras_resnet.data import sources
    from keras_resnet.evaluation import artefacts
    from keras_resnet.evaluation import protocols

    net, _ = published["resnet50", name]
    pixels = np.random.RandomState(0).uniform(0, 255, (3, 240, 300, 3)).astype("uint8")
    split = sources.Split(examples=tf.data.Dataset.from_tensor_slices((pixels, np.int32([0, 1, 2]))),
                          count=3, class_names=sources.index_names(1000))
    artefact = artefacts.load_artefact(model="resnet50", weights=name)
    scored = {}

    def recording(protocol):
        def predict(images):
            scored[protocol] = artefact.predict(images)
            return scored[protocol]
        return dataclasses.replace(artefact, predict=predict)

    result, _ = protocols.evaluate(recording("default"), split, batch_size=3, verbose=0)
    assert result["protocol"] == "weights" and result["image_size"] == 224
    assert result["transform"] == (f"shorter side resized to {resize} ({interpolation}), "
                                   "centre 224x224 crop")
    # Written out here: the shorter side (240) to `resize`, the centre 224x224.
    side = round(300 * resize / 240)
    resized = tf.image.resize(pixels, (resize, side), method=interpolation, antialias=True).numpy()
    top, left = (resize - 224) // 2, (side - 224) // 2
    crops = np.clip(resized[:, top : top + 224, left : left + 224], 0, 255)
    logits = torch_outputs(net, _torchvision_normalised(crops))
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert relative_error(scored["default"], expected) <= TOLERANCE
    protocols.evaluate(recording("center"), split, "center", batch_size=3, verbose=0)
    assert relative_error(scored["center"], expected) > 10 * TOLERANCE  # the paper's 256 differs


@pytest.mark.parametrize("model, name, options", [("resnet18", "imagenet", {}),
                                                  ("resnet50", "a1_in1k", {"version": "v1.5"})])
def test_feature_pyramid_of_published_weights_is_pytorchs_stage_outputs(
    published, mirror, model, name, options
):
    """feature_model's dict equals torchvision's layer1 to layer4 outputs."""
    net, _ = published[model, "tv_in1k" if name == "imagenet" else name]
    backbone = keras_resnet.feature_model(model, weights=name, **options)
    x = images()
    ours = backbone(x, training=False)
    reference = torch_stages(net, x)
    assert sorted(ours) == sorted(reference) == ["conv2", "conv3", "conv4", "conv5"]
    for stage, expected in reference.items():
        assert relative_error(ours[stage], expected) <= TOLERANCE, stage


def test_a_wrong_checksum_a_truncated_file_and_another_depth_are_refused_in_one_line(
    published, mirror, monkeypatch, tmp_path
):
    server, cache, folder = mirror
    served = folder / "resnet18.tv_in1k.safetensors"
    original = served.read_bytes()
    served.unlink()
    served.write_bytes(original[: len(original) // 2])  # a transfer cut short, served whole
    with pytest.raises(downloads.ChecksumError) as error:
        keras_resnet.ResNet18(weights="imagenet")
    message = str(error.value)
    assert "\n" not in message and re.match(
        r"The file downloaded from http://127\.0\.0\.1:\d+/resnet18\.tv_in1k\.safetensors has "
        r"sha256 [0-9a-f]{64}, not the expected [0-9a-f]{64}: it was refused and not cached\. "
        r"Download it where you can and pass its path: "
        r"ResNet18\(weights='/path/to/resnet18\.tv_in1k\.safetensors'\)", message)
    assert not cache.exists() or os.listdir(cache) == []
    # The published name with a ResNet-34's state dict (its checksum taken as
    # the published one): the download passes, the load names the first misfit.
    other = save(torch_net("resnet34", num_classes=1000), tmp_path / "resnet18.tv_in1k.safetensors")
    served.unlink()
    os.symlink(other, served)
    use_stand_ins(monkeypatch, other)
    with pytest.raises(ValueError) as error:
        keras_resnet.ResNet18(weights="imagenet")
    assert str(error.value) == (
        f"{cache / 'resnet18.tv_in1k.safetensors'}: tensor 'layer1.2.conv1.weight' has no place "
        "in resnet18 (it has layer1.0 to layer1.1); is the file a ResNet of another depth?")
    # The file passed by path, as the download error advises: a truncated one.
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(original[: len(original) // 2])
    with pytest.raises(ValueError, match=r"truncated\.safetensors: not a readable safetensors "
                                         r"file \(.*\); save a state dict with"):
        keras_resnet.ResNet18(weights=str(truncated))


def test_a_state_dict_file_brings_torchvisions_normalisation_and_v15(published):
    """A torchvision/timm file given by path (what the download error advises)
    is evaluated as named weights are: v1.5, torchvision's normalisation in
    front, and train.py would train with it."""
    from keras_resnet.evaluation import artefacts
    from keras_resnet.training import run as run_lib

    net, path = published["resnet50", "a1_in1k"]
    settings = run_lib.resolve_settings(run_lib.Config(model="resnet50", weights=path,
                                                       dataset="synthetic"))
    assert settings.preprocessing == "torchvision"
    artefact = artefacts.load_artefact(model="resnet50", weights=path, image_size=SIZE)
    assert artefact.info.preprocessing == "torchvision"
    x = np.random.RandomState(4).uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    normalised = _torchvision_normalised(x)
    logits = torch_outputs(net, normalised)
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(artefact.predict(x), expected, atol=1e-5)


def test_weights_in_pytorchs_legacy_format_are_refused_saying_how_to_resave(tmp_path):
    path = tmp_path / "resnet18-5c106cde.pth"  # torchvision's files before 2021 were so
    torch.save(torch_net("resnet18").state_dict(), path, _use_new_zipfile_serialization=False)
    with pytest.raises(ValueError) as error:
        keras_resnet.ResNet18(weights=str(path))
    assert str(error.value).startswith(f"{path}: PyTorch's legacy checkpoint format")
    assert "re-save it with a current torch.save(state_dict, path)" in str(error.value)
    assert "\n" not in str(error.value)


def test_a_name_that_does_not_exist_or_fits_another_model_lists_the_ones_that_do():
    with pytest.raises(ValueError) as error:
        keras_resnet.ResNet50(weights="tv3_in1k")
    assert str(error.value) == (
        "weights must be None (He initialisation), a name of list_weights('resnet50') "
        "(imagenet, tv_in1k, a1_in1k, tv2_in1k) or the path to an existing weights file. "
        "Received: weights='tv3_in1k'")
    with pytest.raises(ValueError) as error:
        keras_resnet.ResNet34(weights="a1_in1k")
    assert str(error.value) == (
        "weights must be None (He initialisation), a name of list_weights('resnet34') "
        "(tv_in1k, imagenet) or the path to an existing weights file ('a1_in1k' are weights of "
        "resnet50). Received: weights='a1_in1k'")
    with pytest.raises(ValueError, match=r"^weights must be None \(He initialisation\) or the "
                                         r"path to an existing weights file: resnet20 has no "
                                         r"published weights \('imagenet' are weights of "
                                         r"resnet101, resnet152, resnet18, resnet34, resnet50\)"):
        keras_resnet.ResNet20(weights="imagenet")


def test_list_weights_covers_every_name_weights_takes():
    every_name = {name for entry in pretrained.WEIGHTS for name in entry.names}
    for model in keras_resnet.list_models():
        listed = {name for entry in keras_resnet.list_weights(model) for name in entry.names}
        for name in every_name:
            try:
                pretrained.find(model, name)
                accepted = True
            except ValueError:
                accepted = False
            assert accepted == (name in listed), (model, name)
    assert keras_resnet.list_weights("ResNet-50") == [
        e for e in pretrained.WEIGHTS if e.model == "resnet50"]
    assert {(e.model, e.name) for e in keras_resnet.list_weights()} >= {
        ("resnet18", "tv_in1k"), ("resnet34", "tv_in1k"), ("resnet50", "imagenet"),
        ("resnet50", "tv2_in1k"), ("resnet50", "a1_in1k"), ("resnet152", "tv2_in1k")}


# What only the table may hold: a published file's URL, a checksum, a
# normalisation's numbers.
_TABLE_FACTS = re.compile(
    r"https?://(storage\.googleapis|huggingface|download\.pytorch|github\.com/.*/releases)"
    r"|\b[0-9a-f]{32}\b|\b[0-9a-f]{64}\b|-[0-9a-f]{8}\.pth"
    r"|103\.939|116\.779|123\.68|0\.485|0\.456|0\.406|0\.229|0\.224|0\.225|58\.395|57\.12|57\.375")


def test_only_the_table_holds_urls_checksums_and_normalisations():
    package = os.path.join(REPO, "keras_resnet")
    found = []
    for root, _, names in os.walk(package):
        for name in names:
            path = os.path.join(root, name)
            if not name.endswith(".py") or path == pretrained.__file__:
                continue
            with open(path) as f:
                found += [f"{os.path.relpath(path, REPO)}: {m.group(0)}"
                          for m in _TABLE_FACTS.finditer(f.read())]
    assert found == []
    with open(pretrained.__file__) as f:  # the pattern finds what the table holds
        assert len(_TABLE_FACTS.findall(f.read())) > 20


def test_the_weights_page_shows_the_table():
    with open(os.path.join(REPO, "docs", "weights.md")) as f:
        page = f.read()
    for entry in keras_resnet.list_weights():
        options = ", ".join(f'{k}="{v}"' for k, v in entry.options.items()) or "-"
        row = (f"| `{entry.model}` | {', '.join(f'`{n}`' for n in entry.names)} | {options} | "
               f"{entry.top1:g} | ")
        assert row in page, row


def test_get_preprocessing_gives_what_the_weights_expect():
    x = np.random.RandomState(2).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    torchvision = keras_resnet.get_preprocessing("tv2_in1k")
    expected = _torchvision_normalised(x)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(torchvision(x)), expected, atol=1e-5)
    assert torchvision.normalization == "torchvision"
    caffe = keras_resnet.get_preprocessing("imagenet", model="ResNet50")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(caffe(x)),
                               keras_resnet.preprocess_input(x), atol=1e-4)
    resnet18 = keras_resnet.get_preprocessing(keras_resnet.list_weights("resnet18")[0])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(resnet18(x)), expected, atol=1e-5)
    with pytest.raises(ValueError, match=r"weights='imagenet' are preprocessed differently for "
                                         r"different models .*: pass model="):
        keras_resnet.get_preprocessing("imagenet")
    with pytest.raises(ValueError, match=r"`weights` must be one of a1_in1k, imagenet, tv2_in1k, "
                                         r"tv_in1k \(list_weights\(\)\)\. Received: weights='x'"):
        keras_resnet.get_preprocessing("x")


def test_fine_tuned_from_torchvision_weights_is_evaluated_and_served_with_their_normalisation(
    published, mirror, image_folder, tmp_path
):
    """train.py --weights=imagenet --freeze_backbone for a ResNet-18, then
    evaluate and export, which read torchvision's normalisation from the
    metadata: no flag says it."""
    from keras_resnet.evaluation import artefacts
    from keras_resnet.training import trainer

    net, _ = published["resnet18", "tv_in1k"]
    model_dir = tmp_path / "run"
    result = trainer.train(trainer.Config(
        model="resnet18", weights="imagenet", freeze_backbone=True, dataset=str(image_folder),
        recipe="smoke", image_size=32, batch_size=4, train_steps=1, model_dir=str(model_dir),
        verbose=0))
    backbone = result.model.get_layer("resnet18")
    np.testing.assert_array_equal(  # frozen: still torchvision's
        keras.ops.convert_to_numpy(backbone.get_layer("conv1_conv").kernel),
        net.conv1.weight.detach().numpy().transpose(2, 3, 1, 0))
    x = np.random.RandomState(3).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    normalised = _torchvision_normalised(x)
    expected = keras.ops.convert_to_numpy(backbone(normalised, training=False))

    evaluated = artefacts.load_artefact(path=str(model_dir / "model.keras"))
    assert evaluated.info.preprocessing == "torchvision"
    np.testing.assert_allclose(evaluated.predict(x), expected, atol=1e-5)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO)
    exported = subprocess.run(
        [sys.executable, "-m", "export", f"--model_path={model_dir / 'model.keras'}",
         f"--output_dir={tmp_path / 'serving'}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert exported.returncode == 0, exported.stderr
    served = artefacts.load_artefact(path=str(tmp_path / "serving" / "resnet18"))
    assert served.info.preprocessing == "torchvision"
    np.testing.assert_allclose(served.predict(x), expected, atol=1e-4)
