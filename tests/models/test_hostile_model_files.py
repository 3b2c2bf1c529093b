"""Hostile weights and model files: each is built here and refused in one line
naming the file and what is accepted, before anything is inflated, built or
trained: zip bombs in a `.keras` archive, JSON nested deeper than a parser
recurses, a config's BN epsilon that is no finite number, dtypes NumPy or the
model cannot hold, block numbers of thousands of digits, and non-finite
weights in every format `weights=`, `from_torchvision` and `train.py
--weights` read (keras_resnet.models.metadata, .weights, .convert)."""

import json
import os
import struct
import zipfile
import zlib

import h5py
import keras
import numpy as np
import pytest
import safetensors.numpy

import keras_resnet
from keras_resnet.evaluation import artefacts
from keras_resnet.models import metadata
from keras_resnet.models import resolved
from keras_resnet.models import weights as weights_lib
from tests.bounded import run_bounded
from tests.helpers import error_line
from tests.helpers import run_commands

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BOMB_BYTES = 1 << 30  # what each crafted zip bomb inflates to, from ~1 MB


# ---------------------------------------------------------------- crafting


def _deflated(size, byte=b" ", tail=b""):
    """(a raw DEFLATE stream of `size` times `byte` then `tail`, its length
    inflated, its CRC-32),
    made in milliseconds: one fully flushed block (it refers to nothing
    before it) repeated, as compressing a GiB would take seconds."""
    chunk = byte * (1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    end = zlib.compressobj(9, zlib.DEFLATED, -15)
    stream = block * (size >> 20) + end.compress(tail) + end.flush()
    crc = 0
    for _ in range(size >> 20):
        crc = zlib.crc32(chunk, crc)
    return stream, size + len(tail), zlib.crc32(tail, crc)


def _write_zip(path, members):
    """A zip archive of `members`, [(name, bytes)] stored or [(name, (DEFLATE
    stream, size, CRC-32, declared stored size or None))] deflated: written by
    hand, as zipfile cannot write a ready stream or a declared size that lies."""
    out, central = bytearray(), bytearray()
    for name, content in members:
        if isinstance(content, bytes):
            method, data, size, crc, declared = 0, content, len(content), zlib.crc32(content), None
        else:
            method, (data, size, crc, declared) = 8, content
        fields = struct.pack("<HHHHHIII", 20, 0, method, 0, 0x21, crc, len(data), size)
        central_fields = struct.pack("<HHHHHIII", 20, 0, method, 0, 0x21, crc,
                                     declared or len(data), size)
        name = name.encode()
        central += (b"PK\x01\x02" + struct.pack("<H", 20) + central_fields
                    + struct.pack("<HHHHHII", len(name), 0, 0, 0, 0, 0, len(out)) + name)
        out += b"PK\x03\x04" + fields + struct.pack("<HH", len(name), 0) + name + data
    end = struct.pack("<HHHHIIH", 0, 0, len(members), len(members), len(central), len(out), 0)
    with open(path, "wb") as f:
        f.write(bytes(out + central) + b"PK\x05\x06" + end)
    return str(path)


def _members(path):
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _replaced(source, path, **members):
    """The `.keras` file `source` with `members` (config_json=..., metadata_json=...)
    in place of its own, written to `path`."""
    contents = _members(source)
    contents.update({name.replace("_", "."): content for name, content in members.items()})
    return _write_zip(path, list(contents.items()))


@pytest.fixture(scope="module")
def resnet20(tmp_path_factory):
    """(ResNet-20, its .keras file, its .weights.h5 file), made once."""
    folder = tmp_path_factory.mktemp("resnet20")
    model = keras_resnet.get_model("resnet20")
    model.save(folder / "model.keras")
    model.save_weights(folder / "model.weights.h5")
    return model, str(folder / "model.keras"), str(folder / "model.weights.h5")


def _vars_of(f, layer):
    """The `vars` group of `layer` in a Keras 3 weights file."""
    groups = []
    f.visititems(lambda key, item: groups.append(item) if key.endswith("/vars")
                 and item.attrs.get("name") == layer else None)
    return groups[0]


@pytest.fixture(scope="module")
def bombs(resnet20, tmp_path_factory):
    """name -> a .keras file of ResNet-20 with one member a zip bomb, or
    a .weights.h5 file with an HDF5 dataset that is one."""
    folder = tmp_path_factory.mktemp("bombs")
    source = _members(resnet20[1])
    metadata_bomb = _deflated(BOMB_BYTES, tail=b"{}")
    weights_bomb = _deflated(BOMB_BYTES, byte=b"\0")
    bombs = {
        # Whitespace and {}: valid JSON, so an unbounded reader "loaded" it.
        "metadata": {**source, "metadata.json": (*metadata_bomb, None)},
        "config": {**source, "config.json": (*_deflated(64 << 20, tail=b"{}"), None)},
        "weights": {**source, "model.weights.h5": (*weights_bomb, None)},
        # Its stored size declared 12 MiB, so that the expansion looks < 100x.
        "lying": {**source, "model.weights.h5": (*weights_bomb, 12 << 20)},
    }
    files = {name: _write_zip(folder / f"{name}.keras", list(members.items()))
             for name, members in bombs.items()}
    # A .weights.h5 file whose conv1_conv kernel is a GiB no chunk was written of.
    files["hdf5"] = str(folder / "hdf5.weights.h5")
    with open(resnet20[2], "rb") as source, open(files["hdf5"], "wb") as target:
        target.write(source.read())
    with h5py.File(files["hdf5"], "r+") as f:
        group = _vars_of(f, "conv1_conv")
        del group["0"]
        group.create_dataset("0", shape=(BOMB_BYTES // 4,), dtype="float32", chunks=(1 << 20,),
                             compression="gzip")
    return files


# ------------------------------------------------------------ zip bombs


# Runs each reader on each file and prints [[reader, file, outcome]]: the
# ValueError's message, or the type and message of anything else.
_READ_EACH = """
import json, sys
from keras_resnet.evaluation import artefacts
from keras_resnet.models import metadata, weights
import zipfile

def unchecked_member(path):  # the bounded read alone, on an archive nobody checked
    with zipfile.ZipFile(path) as archive:
        return metadata.read_member(path, archive, "metadata.json")

readers = {"read_keras": metadata.read_keras, "read_weights": weights.read_weights,
           "load_keras_model": artefacts.load_keras_model, "read_member": unchecked_member}
outcomes = []
for job in json.loads(sys.argv[1]):
    try:
        readers[job[0]](job[1])
        outcome = "read"
    except ValueError as e:
        outcome = str(e)
    except BaseException as e:
        outcome = f"{type(e).__name__}: {e}"
    outcomes.append([*job, outcome])
print(json.dumps(outcomes))
"""
# The address space these readers need, measured (VmPeak): 1.7 GiB for the
# imports (TensorFlow's), 2.1 GiB once they have read ResNet-20's own .keras
# file whole. The bound claimed on top is 256 MiB: a GiB bomb read whole fails
# on it with a MemoryError.
_BASELINE_MB = 2200
_BOUND_MB = 256


def test_zip_bombs_are_refused_by_declared_size_before_any_inflation(bombs):
    jobs = [
        ("read_keras", bombs["metadata"]), ("read_weights", bombs["metadata"]),
        ("load_keras_model", bombs["metadata"]), ("read_member", bombs["metadata"]),
        ("read_weights", bombs["config"]), ("load_keras_model", bombs["config"]),
        ("read_weights", bombs["weights"]), ("load_keras_model", bombs["weights"]),
        ("read_weights", bombs["lying"]), ("read_weights", bombs["hdf5"]),
    ]
    outcome = run_bounded(_READ_EACH, json.dumps(jobs), memory_mb=_BASELINE_MB + _BOUND_MB,
                          timeout_s=60)
    assert outcome.returncode == 0, outcome.stderr[-3000:]
    results = {(reader, path): line for reader, path, line in json.loads(outcome.stdout)}
    size = os.path.getsize(bombs["lying"])
    expected = {
        "metadata": f"its metadata.json declares {BOMB_BYTES + 2} bytes; accepted: at most 1048576",
        "config": f"its config.json declares {(64 << 20) + 2} bytes; accepted: at most 16777216",
        "weights": f"its member 'model.weights.h5' declares {BOMB_BYTES} bytes from ",
    }
    hdf5 = (f"Weights file {bombs['hdf5']} is not usable: dataset 'layers/conv2d/vars/0' declares "
            f"{BOMB_BYTES} bytes from 0 stored; accepted: at most 100 times its stored bytes. "
            f"{weights_lib.ACCEPTED_FILES}")
    for (reader, path), line in results.items():
        kind = os.path.basename(path).split(".")[0]
        if kind == "hdf5":
            assert line == hdf5
            continue
        if reader == "read_member":  # the member read whole would be a GiB
            assert line == f"{path}: its metadata.json holds over 1048576 bytes; accepted: at most 1048576"
            continue
        if kind == "lying":
            assert line.startswith(f"{path}: its members declare "), line
            assert line.endswith(f"stored bytes, more than the file's {size}: damaged or crafted")
            continue
        assert line.startswith(f"{path}: {expected[kind]}"), (reader, line)
        assert "\n" not in line
    assert outcome.seconds < 40  # nothing was inflated: the imports' time


# ------------------------------------------------------------------ JSON


def _valid_entry():
    return json.loads(metadata.ModelInfo(
        model="resnet20", family="cifar", image_size=32, test_view="single",
        class_names=["cat", "dog"], preprocessing="pixel_mean").to_json())


@pytest.mark.parametrize("entry, reason", [
    ([1, 2], "a JSON array; accepted: a JSON object"),
    ("resnet20", "a JSON string; accepted: a JSON object"),
    ({**_valid_entry(), "image_size": True}, "image_size is a JSON boolean; accepted: a JSON integer"),
    ({**_valid_entry(), "class_names": "cd"}, "class_names is a JSON string; accepted: a JSON array"),
    ({**_valid_entry(), "class_names": ["cat", 2]}, "class_names holds a value that is not a JSON string"),
], ids=["array", "string", "boolean_size", "string_names", "number_name"])
def test_metadata_entry_of_another_json_type_is_refused(resnet20, tmp_path, entry, reason):
    content = json.dumps({"keras_version": "3.15.1", "keras_resnet": entry}).encode()
    path = _replaced(resnet20[1], tmp_path / "model.keras", metadata_json=content)
    with pytest.raises(ValueError) as error:
        resolved.read_info(path)  # train.py's reader; evaluate's is metadata.read_keras
    assert str(error.value) == f"{path} holds unreadable keras_resnet metadata ({reason})"
    # The valid entry it was made from reads back.
    valid = _replaced(resnet20[1], tmp_path / "valid.keras", metadata_json=json.dumps(
        {"keras_resnet": _valid_entry()}).encode())
    assert metadata.read_keras(valid).class_names == ("cat", "dog")


def test_json_nested_past_the_bound_is_refused_before_it_is_parsed(resnet20, tmp_path):
    deep = b"[" * 100_000 + b"]" * 100_000  # json.loads: RecursionError
    meta = _replaced(resnet20[1], tmp_path / "meta.keras",
                     metadata_json=b'{"keras_resnet": ' + deep + b"}")
    with pytest.raises(ValueError) as error:
        metadata.read_keras(meta)
    assert str(error.value) == (f"{meta} holds an unreadable metadata.json (JSON nested 100001 "
                                "deep; accepted: at most 100); Keras writes it whole, so the "
                                "file is damaged")
    config = _replaced(resnet20[1], tmp_path / "config.keras", config_json=deep)
    expected = f"{config} holds an unreadable config.json (JSON nested 100000 deep; accepted: at most 100)"
    for load in (lambda: keras_resnet.get_model("resnet20", weights=config),
                 lambda: artefacts.load_keras_model(config)):
        with pytest.raises(ValueError) as error:
            load()
        assert str(error.value) == expected
    # The bound itself parses, and brackets inside strings are text.
    assert metadata.parse_json(b"[" * 100 + b"]" * 100) is not None
    assert metadata.parse_json(json.dumps({"name": "[{" * 1000 + '\\"'})) == {"name": "[{" * 1000 + '\\"'}


@pytest.mark.parametrize("epsilon, shown", [
    ('"1e-05"', "'1e-05'"), ("NaN", "'nan'"), ("Infinity", "'inf'"), ("-1e-05", "'-1e-05'"),
    ("true", "'True'"), ("null", "'None'"), ("1" + "0" * 400, "'1" + "0" * 49 + "'"),
], ids=["string", "nan", "inf", "negative", "boolean", "null", "past_float"])
def test_a_bn_epsilon_that_is_no_finite_positive_number_is_refused(resnet20, tmp_path, epsilon, shown):
    config = _members(resnet20[1])["config.json"].replace(b'"epsilon": 1e-05', b'"epsilon": ' + epsilon.encode())
    path = _replaced(resnet20[1], tmp_path / "model.keras", config_json=config)
    # The first BN of the config (every one has it).
    expected = (f"{path}: its config.json gives BatchNormalization layer 'conv1_bn' epsilon "
                f"{shown}; accepted: a finite number > 0")
    for load in (lambda: keras_resnet.get_model("resnet20", weights=path),
                 lambda: artefacts.load_keras_model(path)):
        with pytest.raises(ValueError) as error:
            load()
        assert str(error.value) == expected


# ---------------------------------------------------- dtypes and numbers


def _write_safetensors(path, tensors):
    """A safetensors file of {name: (dtype, shape, bytes)}, written by hand:
    safetensors.numpy cannot write dtypes NumPy lacks (F8_E4M3, BF16)."""
    header, blobs, offset = {}, [], 0
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    return str(path)


@pytest.mark.parametrize("dtype, itemsize", [("F8_E4M3", 1), ("F8_E5M2", 1), ("BF16", 2), ("C64", 8)],
                         ids=["F8_E4M3", "F8_E5M2", "BF16", "C64"])
def test_a_safetensors_dtype_not_read_is_refused_naming_the_tensor(tmp_path, dtype, itemsize):
    path = _write_safetensors(tmp_path / "model.safetensors", {
        "bn1.weight": ("F32", [64], b"\0" * 256), "conv1.weight": (dtype, [64, 3, 7, 7], b"\0" * 9408 * itemsize)})
    expected = (f"{path}: tensor 'conv1.weight' has dtype {dtype}; accepted: F16, F32, F64, I8, "
                "I16, I32, I64, U8, U16, U32, U64, BOOL (convert the state dict to float32 first)")
    for load in (lambda: keras_resnet.from_torchvision(path),
                 lambda: keras_resnet.get_model("resnet18", weights=path, include_top=False)):
        with pytest.raises(ValueError) as error:
            load()
        assert str(error.value) == expected


def test_block_numbers_of_thousands_of_digits_are_no_block(resnet20, tmp_path):
    # int() of over 4,300 digits raises "Exceeds the limit": such a number is no block.
    key = "layer1." + "9" * 5000 + ".conv1.weight"
    path = _write_safetensors(tmp_path / "model.safetensors", {key: ("F32", [1], b"\0" * 4)})
    with pytest.raises(ValueError) as error:
        keras_resnet.from_torchvision(path)
    assert str(error.value).startswith(f"{path}: its tensors have basic blocks [0, 0, 0, 0] in layer1")
    for load in (lambda: keras_resnet.from_torchvision(path, "resnet18", include_top=False),
                 lambda: keras_resnet.get_model("resnet18", weights=path, include_top=False)):
        with pytest.raises(ValueError) as error:
            load()
        assert str(error.value) == (f"{path}: tensor {key[:100]!r} has no place in resnet18; is "
                                    "the file a ResNet of another depth?")
    # A Keras file's layer names: a stage's block, and a variable's index.
    legacy = str(tmp_path / "legacy.h5")
    layer = "conv2_block" + "9" * 5000 + "_1_conv"
    with h5py.File(legacy, "w") as f:
        f.attrs["layer_names"] = [layer.encode()]
        group = f.create_group(layer)
        group.attrs["weight_names"] = [f"{layer}/kernel:0".encode()]
        group.create_dataset(f"{layer}/kernel:0", data=np.zeros((3, 3, 16, 16), "float32"))
    with pytest.raises(ValueError) as error:
        keras_resnet.get_model("resnet20", weights=legacy)
    assert str(error.value) == (f"Weights file {legacy} does not fit the model: the file has layer "
                                f"{layer[:100]!r}, which the model lacks (1 such layers).")
    indexed = str(tmp_path / "indexed.weights.h5")
    with open(resnet20[2], "rb") as source, open(indexed, "wb") as target:
        target.write(source.read())
    with h5py.File(indexed, "r+") as f:
        group = _vars_of(f, "conv1_conv")
        group.move("0", "0" * 5000)
        group_name = group.name[1:]
    with pytest.raises(ValueError) as error:
        keras_resnet.get_model("resnet20", weights=indexed)
    assert str(error.value) == (
        f"Weights file {indexed} is not usable: {group_name} holds {'0' * 100!r}; accepted "
        f"there: the variables' indices (0, 1, ...). {weights_lib.ACCEPTED_FILES}")


def test_an_hdf5_dataset_of_text_is_refused_naming_it(resnet20, tmp_path):
    path = str(tmp_path / "text.weights.h5")
    with open(resnet20[2], "rb") as source, open(path, "wb") as target:
        target.write(source.read())
    with h5py.File(path, "r+") as f:
        group = _vars_of(f, "conv1_conv")
        del group["0"]
        group.create_dataset("0", data=np.array([b"kernel"] * 432).reshape(3, 3, 3, 16))
    with pytest.raises(ValueError) as error:
        keras_resnet.get_model("resnet20", weights=path)
    assert str(error.value) == (f"Weights file {path} is not usable: 'layers/conv2d/vars/0' is no "
                                f"dataset of numbers (integers or floats). {weights_lib.ACCEPTED_FILES}")


def test_a_missing_state_dict_file_is_said_not_to_exist(tmp_path):
    (tmp_path / "folder.pth").mkdir()
    for name, kind in (("absent.safetensors", "does not exist"), ("absent.pth", "does not exist"),
                       ("folder.pth", "is a directory")):
        path = str(tmp_path / name)
        with pytest.raises(ValueError) as error:
            keras_resnet.from_torchvision(path)
        assert str(error.value) == (f"path {kind}: it must be a .safetensors or torch.save (.pth) "
                                    f"file. Received: path={path!r}")


# ----------------------------------------------------- non-finite weights


@pytest.fixture(scope="module")
def non_finite(resnet20, tmp_path_factory):
    """name -> (file with one non-finite weight, the one line refusing it):
    ResNet-20's Keras files (NaN in conv1_conv's kernel) and ResNet-18 state
    dicts (inf in conv1.weight; 1e300 in float64, inf once a float32)."""
    import torch

    from tests.helpers import write_legacy
    from tests.torch_resnet import torch_net

    folder = tmp_path_factory.mktemp("non_finite")
    model = keras.models.clone_model(resnet20[0])
    kernel = model.get_layer("conv1_conv").kernel
    kernel.assign(keras.ops.convert_to_numpy(kernel) * np.where(np.arange(432) == 5, np.nan, 1)
                  .reshape(kernel.shape).astype("float32"))
    files = {"keras": folder / "nan.keras", "weights_h5": folder / "nan.weights.h5",
             "legacy": folder / "nan.h5"}
    model.save(files["keras"])
    model.save_weights(files["weights_h5"])
    write_legacy(model, str(files["legacy"]))
    keras_line = "holds non-finite weights: conv1_conv/kernel has 1 NaN or inf of 432 values"
    expected = {str(p): f"Weights file {p} {keras_line} (a diverged run?); not loaded"
                for p in files.values()}
    state = {k: v.detach().numpy().copy() for k, v in torch_net("resnet18").state_dict().items()}
    state["conv1.weight"][0, 0, 0, 0] = np.inf
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, folder / "inf.pth")
    safetensors.numpy.save_file(state, str(folder / "inf.safetensors"))
    state_line = "holds non-finite weights: tensor 'conv1.weight' has 1 NaN or inf of 9408 values"
    for name in ("inf.pth", "inf.safetensors"):
        expected[str(folder / name)] = f"{folder / name} {state_line} (a diverged run?); not loaded"
    state = {k: v.astype("float64") for k, v in state.items()}
    state["conv1.weight"][0, 0, 0, 0] = 0
    state["bn1.running_var"][3] = 1e300
    safetensors.numpy.save_file(state, str(folder / "huge.safetensors"))
    expected[str(folder / "huge.safetensors")] = (
        f"{folder / 'huge.safetensors'} holds non-finite weights: tensor 'bn1.running_var' has 1 NaN "
        "or inf of 64 values (a diverged run?); not loaded")
    return expected


def test_non_finite_weights_are_refused_naming_the_file_and_tensor(non_finite, resnet20):
    for path, expected in non_finite.items():
        state_dict = path.endswith((".pth", ".safetensors"))
        loads = ([lambda: keras_resnet.from_torchvision(path),
                  lambda: keras_resnet.get_model("resnet18", weights=path, include_top=False)]
                 if state_dict else [lambda: keras_resnet.get_model("resnet20", weights=path)])
        for load in loads:
            with pytest.raises(ValueError) as error:
                load()
            assert str(error.value) == expected
    # All or nothing: a model the file is loaded into keeps every weight.
    model = keras.models.clone_model(resnet20[0])
    before = [keras.ops.convert_to_numpy(v) for v in model.weights]
    keras_path = next(p for p in non_finite if p.endswith(".keras"))
    with pytest.raises(ValueError, match="non-finite"):
        weights_lib.load_weights(model, resolved.resolve_weights("resnet20", keras_path), include_top=True)
    for value, variable in zip(before, model.weights, strict=True):
        np.testing.assert_array_equal(value, keras.ops.convert_to_numpy(variable))


def test_a_non_finite_input_mean_is_refused(resnet20, tmp_path):
    from keras_resnet.models import preprocessing

    mean = np.zeros((32, 32, 3), "float32")
    mean[0, 0, 0] = np.nan
    model = preprocessing.with_preprocessing(
        keras.models.clone_model(resnet20[0]), preprocessing.MeanSubtraction(mean, name="preprocessing"))
    path = str(tmp_path / "nan_mean.keras")
    model.save(path)
    with pytest.raises(ValueError) as error:
        weights_lib.read_source(resolved.resolve_weights("resnet20", path))  # train.py --weights' reader
    assert str(error.value) == (f"Weights file {path} holds non-finite weights: preprocessing (its "
                                "input mean) has 1 NaN or inf of 3072 values (a diverged run?); "
                                "not loaded")


def test_train_py_refuses_non_finite_weights_before_an_epoch(non_finite, tmp_path):
    keras_file = next(p for p in non_finite if p.endswith(".keras"))
    state_dict = next(p for p in non_finite if p.endswith("inf.safetensors"))
    runs = [("resnet20", keras_file, tmp_path / "keras_run"),
            ("resnet18", state_dict, tmp_path / "state_dict_run")]
    argvs = [[f"--model={model}", "--dataset=synthetic", "--synthetic_examples=8", "--batch_size=4",
              "--epochs=1", "--image_size=32", f"--weights={weights}", f"--model_dir={model_dir}"]
             for model, weights, model_dir in runs]
    for (_, weights, model_dir), (code, stderr) in zip(runs, run_commands("train.py", argvs, cwd=ROOT),
                                                        strict=True):
        assert error_line(code, stderr, "train.py") == non_finite[weights]
        assert "Epoch 1" not in stderr
        # Refused as the model was built: no run config, backup or model written.
        assert not os.path.exists(model_dir) or not (
            {"config.json", "backup", "model.keras"} & set(os.listdir(model_dir))), stderr
