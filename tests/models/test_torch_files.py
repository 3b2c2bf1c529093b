"""PyTorch checkpoints read without PyTorch (keras_resnet.models.torch_files):
every tensor torch.save writes comes back exactly as the tensor's `.numpy()`
(the peer here is torch itself, 2.x, saving into tmp_path); legacy, truncated,
corrupt, incomplete and malicious files are refused in one line, the last
without running anything."""

import collections
import io
import os
import pickle
import re
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

from keras_resnet.errors import ArgumentError
from keras_resnet.models.torch_files import is_torch_file
from keras_resnet.models.torch_files import read_state_dict


def _save(tmp_path, obj, name="weights.pth"):
    path = tmp_path / name
    torch.save(obj, path)
    return path


def _numpy(tensor):
    """What the reader should give for `tensor` (bfloat16 comes out as float32)."""
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.float()
    return tensor.detach().numpy()


def _assert_read_equal(path, state):
    arrays = read_state_dict(path)
    assert list(arrays) == list(state)
    for key, tensor in state.items():
        expected = _numpy(tensor)
        assert arrays[key].dtype == expected.dtype, key
        np.testing.assert_array_equal(arrays[key], expected, err_msg=key)


def _rewrite(source, target, records):
    """Copies the zip `source` to `target`, its records replaced by `records`
    (name -> bytes; None drops the record)."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for name in old.namelist():
            data = records.get(name, old.read(name))
            if data is not None:
                new.writestr(name, data)
    return target


def _write_zip(path, records):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in records.items():
            archive.writestr(name, data)
    return path


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 5)


def test_model_state_dict_comes_back_exactly(tmp_path):
    torch.manual_seed(0)
    net = _Net()
    with torch.no_grad():
        for tensor in (net.conv.weight, net.bn.weight, net.bn.bias, net.bn.running_mean):
            tensor.copy_(torch.randn_like(tensor))
        net.bn.running_var.copy_(torch.rand(4) + 0.5)
        net.bn.num_batches_tracked.fill_(17)
    state = net.state_dict()
    _assert_read_equal(_save(tmp_path, state), state)
    assert read_state_dict(_save(tmp_path, state))["bn.num_batches_tracked"].dtype == np.int64


def test_half_and_bfloat16(tmp_path):
    torch.manual_seed(1)
    state = {"half": torch.randn(3, 4).half(), "bfloat16": torch.randn(5, 2).bfloat16()}
    _assert_read_equal(_save(tmp_path, state), state)


def test_non_contiguous_and_shared_storages(tmp_path):
    base = torch.arange(20, dtype=torch.float32)
    state = {
        "transposed": torch.randn(3, 5).t(),  # stride (1, 5), saved as is
        "head": base[2:8].view(2, 3),  # two views of one storage,
        "tail": base[10:16:2],  # the second at offset 10, stride 2
    }
    assert not state["transposed"].is_contiguous()
    _assert_read_equal(_save(tmp_path, state), state)


def test_0d_int_bool_and_uint16_tensors(tmp_path):
    # uint16 is pickled with _rebuild_tensor_v3 over an untyped storage.
    wide = torch.arange(60000, 60008, dtype=torch.int32).to(torch.uint16)
    state = {"scalar": torch.tensor(2.5), "count": torch.tensor(3), "flags":
             torch.tensor([True, False, True]), "int8": torch.tensor([-3, 7], dtype=torch.int8),
             "uint16": wide[3:7]}
    _assert_read_equal(_save(tmp_path, state), state)
    assert read_state_dict(_save(tmp_path, state))["scalar"].shape == ()


def test_parameters(tmp_path):
    # A dict of nn.Parameters (not a state_dict) pickles _rebuild_parameter.
    state = {"weight": nn.Parameter(torch.randn(2, 3))}
    _assert_read_equal(_save(tmp_path, state), state)


@pytest.mark.parametrize("wrapper", ["state_dict", "model"])
def test_checkpoint_that_nests_the_state_dict(tmp_path, wrapper):
    state = _Net().state_dict()
    path = _save(tmp_path, {"epoch": 3, wrapper: state, "best": torch.ones(1)})
    arrays = read_state_dict(path)
    assert list(arrays) == list(state)
    np.testing.assert_array_equal(arrays["fc.weight"], state["fc.weight"].numpy())


def test_byte_order(tmp_path):
    # No machine at hand writes big-endian; torch.load reads this file back
    # as `state`, so it is what torch.save writes on one.
    state = {"w": torch.randn(2, 3), "n": torch.tensor(7), "b": torch.randn(3).bfloat16()}
    path = _save(tmp_path, state, "little.pth")
    swapped = {"little/byteorder": b"big"}
    with zipfile.ZipFile(path) as archive:
        for key, tensor in enumerate(state.values()):  # storages data/0, 1, 2 in this order
            raw = np.frombuffer(archive.read(f"little/data/{key}"), f"u{tensor.element_size()}")
            swapped[f"little/data/{key}"] = raw.byteswap().tobytes()
    big = _rewrite(path, tmp_path / "big.pth", swapped)
    assert all(torch.equal(t, state[k]) for k, t in torch.load(big).items())
    _assert_read_equal(big, state)
    # Files written before PyTorch recorded the byte order are little-endian.
    _assert_read_equal(_rewrite(path, tmp_path / "old.pth", {"little/byteorder": None}), state)


def test_legacy_format_is_refused(tmp_path):
    path = tmp_path / "legacy.pth"
    torch.save({"w": torch.ones(2)}, path, _use_new_zipfile_serialization=False)
    assert not is_torch_file(path)
    with pytest.raises(ValueError, match=re.escape(
            f"{path}: PyTorch's legacy checkpoint format") + ".*re-save it with a current "
            r"torch\.save\(state_dict, path\), or as \.safetensors$"):
        read_state_dict(path)


def test_truncated_and_corrupt_archives_are_refused(tmp_path):
    path = _save(tmp_path, {"w": torch.arange(64.0)})
    data = path.read_bytes()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=re.escape(f"{truncated}: a truncated or corrupt zip")):
        read_state_dict(truncated)
    # A flipped byte in the storage: the zip's CRC catches it (torch.load does not).
    start = data.index(np.arange(64.0, dtype=np.float32).tobytes())
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(data[:start] + b"\xff" + data[start + 1:])
    with pytest.raises(ValueError, match=re.escape(f"{corrupt}: a truncated or corrupt zip")
                       + ".*Bad CRC-32"):
        read_state_dict(corrupt)


def test_zip_without_data_pkl_is_refused(tmp_path):
    path = _write_zip(tmp_path / "other.zip", {"other/notes.txt": b"hello"})
    assert not is_torch_file(path)
    with pytest.raises(ValueError, match=re.escape(
            f"{path}: a zip archive without a <name>/data.pkl record, so not written by torch.save")):
        read_state_dict(path)


def test_missing_storage_is_refused(tmp_path):
    path = _save(tmp_path, {"a": torch.ones(2), "b": torch.zeros(3)})
    incomplete = _rewrite(path, tmp_path / "incomplete.pth", {"weights/data/1": None})
    with pytest.raises(ValueError, match=re.escape(
            f"{incomplete}: its record weights/data/1 is missing; the archive is incomplete")):
        read_state_dict(incomplete)


class _Command:
    """Pickles as a call of `function(argument)`, as a malicious file would."""

    def __init__(self, function, argument):
        self.function, self.argument = function, argument

    def __reduce__(self):
        return self.function, (self.argument,)


@pytest.mark.parametrize("protocol", [2, 4])  # torch.save's; GLOBAL vs STACK_GLOBAL
@pytest.mark.parametrize("function, code", [
    (os.system, "touch {}"),  # pickled as posix.system on Linux
    (eval, "open({!r}, 'w').close()"),
])
def test_pickle_with_other_globals_is_refused_before_it_runs(tmp_path, function, code, protocol):
    marker = tmp_path / "marker"
    command = _Command(function, code.format(str(marker)))
    data = pickle.dumps({"w": command}, protocol=protocol)
    # Protocol 2 writes builtins under its Python 2 name.
    module = "__builtin__" if protocol < 3 and function is eval else function.__module__
    name = f"{module}.{function.__name__}"
    path = _write_zip(tmp_path / "evil.pth", {"evil/data.pkl": data, "evil/version": b"3\n"})
    assert is_torch_file(path)
    with pytest.raises(ValueError, match=re.escape(
            f"{path}: its pickle refers to {name}, which a state dict does not need, so the "
            "file is not loaded; accepted: a state dict saved with torch.save(")):
        read_state_dict(path)
    assert not marker.exists()


def test_whole_model_is_refused_by_its_class(tmp_path):
    path = _save(tmp_path, nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(ValueError, match=re.escape(
            f"{path}: its pickle refers to torch.nn.modules.container.Sequential,")):
        read_state_dict(path)


class _Storage:
    def __init__(self, key, numel):
        self.key, self.numel = key, numel


class _Tensor:
    """Pickles as torch.save pickles a float32 tensor on `storage`."""

    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return torch._utils._rebuild_tensor_v2, self.args


class _TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel)
        return None


def _handcrafted(path, tensors, storage_bytes):
    buffer = io.BytesIO()
    _TorchPickler(buffer, protocol=2).dump(tensors)
    return _write_zip(path, {"x/data.pkl": buffer.getvalue(), "x/data/0": storage_bytes})


def test_tensor_outside_its_storage_is_refused(tmp_path):
    storage = _Storage("0", 4)
    floats = np.arange(4, dtype=np.float32)
    inside = _handcrafted(tmp_path / "inside.pth", {"t": _Tensor(storage, 1, (2, 2), (0, 2))},
                          floats.tobytes())
    np.testing.assert_array_equal(read_state_dict(inside)["t"], [[1, 3], [1, 3]])
    outside = _handcrafted(tmp_path / "outside.pth", {"t": _Tensor(storage, 1, (2, 2), (1, 2))},
                           floats.tobytes())
    with pytest.raises(ValueError, match=re.escape(
            f"{outside}: its tensor of size (2, 2), stride (1, 2) and offset 1 reaches "
            "element 4 of a storage of 4; the file is corrupt")):
        read_state_dict(outside)


def test_storage_of_another_length_than_the_pickle_says_is_refused(tmp_path):
    tensor = _Tensor(_Storage("0", 4), 0, (3,), (1,))
    path = _handcrafted(tmp_path / "short.pth", {"t": tensor}, np.zeros(3, np.float32).tobytes())
    with pytest.raises(ValueError, match=re.escape(
            f"{path}: its storage data/0 holds 12 bytes, but the pickle says 4 float32 "
            "elements (16 bytes)")):
        read_state_dict(path)


def test_pickle_without_tensors_is_refused(tmp_path):
    path = _save(tmp_path, {"epoch": 3})
    with pytest.raises(ValueError, match=re.escape(
            f"{path}: it holds no tensors (a dict of 1 entries); accepted: a state dict")):
        read_state_dict(path)


def test_non_tensor_in_an_unwrapped_state_dict_is_refused(tmp_path):
    path = _save(tmp_path, {"epoch": 3, "w": torch.ones(2)})
    with pytest.raises(ValueError, match=re.escape(
            f"{path}: its state dict holds 'epoch': int, which is no tensor")):
        read_state_dict(path)


def test_missing_path_and_a_folder(tmp_path):
    path = str(tmp_path / "absent.pth")
    assert not is_torch_file(path)
    with pytest.raises(ArgumentError, match=re.escape(
            "path does not exist; accepted: a .pth file written by torch.save. Received: "
            f"path={path!r}")):
        read_state_dict(path)
    with pytest.raises(ArgumentError, match=re.escape(
            f"path must be a .pth file written by torch.save. Received: path={str(tmp_path)!r}")):
        read_state_dict(tmp_path)


def test_is_torch_file(tmp_path):
    assert is_torch_file(_save(tmp_path, {"w": torch.ones(1)}))
    safetensors = tmp_path / "w.safetensors"
    safetensors.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    assert not is_torch_file(safetensors)

