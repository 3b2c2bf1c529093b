"""Crafted torch.save files against keras_resnet.models.torch_files: each one
is built here, opcode by opcode where torch.save would never write it, and
read in a subprocess under an address-space limit (tests/bounded.py), which
must end in one line naming the file, within seconds and the memory bound,
and never in a segfault. The attacks: objects whose methods or attributes the
pickle sets (the state dict's own `items`, an `__array_interface__` that
points into the heap), nesting that overflows the C stack when hashed,
opcode and memo floods, colliding dict keys, zip members that inflate to
gigabytes, tensors larger than their storage, and names with terminal codes."""

import functools
import pickle
import re
import struct
import zipfile
import zlib

import numpy as np
import pytest

from keras_resnet.models import torch_pickle
from keras_resnet.models.torch_files import read_state_dict
from tests.bounded import run_bounded

# Reads the file argv[1]: prints the tensors' names and shapes, or the one
# line of a refusal (exit 3), and this process's peak address space.
_READ = """
    import sys
    from keras_resnet.models.torch_files import read_state_dict
    try:
        tensors = read_state_dict(sys.argv[1])
        print(sorted((k, v.shape) for k, v in tensors.items()))
        code = 0
    except ValueError as e:
        print(e, file=sys.stderr)
        code = 3
    status = open("/proc/self/status").read()
    print("VmPeak", int(status.split("VmPeak:")[1].split()[0]) << 10)
    sys.exit(code)
"""
HEADROOM_MB = 256  # what a crafted file may make the reader allocate, at most


@functools.cache
def _baseline_mb(tmp_root):
    """The peak address space of reading a small real file (the imports)."""
    path = _zip(f"{tmp_root}/small.pth", _pickle(_state([("w", "0", 4, (4,), (1,))])),
                {"0": np.arange(4, dtype=np.float32).tobytes()})
    outcome = run_bounded(_READ, str(path), memory_mb=1 << 16)
    assert outcome.returncode == 0, outcome.stderr[-2000:]
    return int(outcome.stdout.split("VmPeak")[1]) >> 20


@pytest.fixture
def read_bounded(tmp_path_factory):
    """Reads a file in a subprocess with HEADROOM_MB over the baseline:
    (return code, stdout, last line of stderr, seconds)."""
    baseline = _baseline_mb(str(tmp_path_factory.getbasetemp()))

    def read(path):
        outcome = run_bounded(_READ, str(path), memory_mb=baseline + HEADROOM_MB, timeout_s=120)
        assert outcome.returncode in (0, 3), (outcome.returncode, outcome.stderr[-3000:])
        return outcome

    return read


# ------------------------------------------------------------------ pickles by hand


def _global(module, name):
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()


def _str(text):
    data = text.encode("utf8", "surrogatepass")
    return pickle.BINUNICODE + struct.pack("<I", len(data)) + data


def _int(value):
    return pickle.BININT + struct.pack("<i", value)


def _tuple(*parts):
    return pickle.MARK + b"".join(parts) + pickle.TUPLE


_ORDERED = _global("collections", "OrderedDict") + pickle.EMPTY_TUPLE + pickle.REDUCE


def _tensor(key, numel, size, stride, offset=0):
    """A float32 tensor as torch.save pickles it."""
    storage = _tuple(_str("storage"), _global("torch", "FloatStorage"), _str(key), _str("cpu"),
                     _int(numel)) + pickle.BINPERSID
    return (_global("torch._utils", "_rebuild_tensor_v2")
            + _tuple(storage, _int(offset), _tuple(*map(_int, size)), _tuple(*map(_int, stride)),
                     pickle.NEWFALSE, _ORDERED)
            + pickle.REDUCE)


def _state(entries, build=b""):
    """An OrderedDict of (name, storage key, numel, size, stride) tensors;
    `build` a BUILD state pushed after its items."""
    items = b"".join(_str(name) + _tensor(key, numel, size, stride)
                     for name, key, numel, size, stride in entries)
    body = _ORDERED + pickle.MARK + items + pickle.SETITEMS
    return body + (build + pickle.BUILD if build else b"")


def _pickle(body):
    return pickle.PROTO + b"\x02" + body + pickle.STOP


def _zip(path, data_pkl, storages=(), compressed=()):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x/data.pkl", data_pkl)
        for key, data in dict(storages).items():
            archive.writestr(f"x/data/{key}", data)
        for name, info, data in compressed:
            archive.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    return path


def _refusal(outcome, path, text):
    assert outcome.returncode == 3, outcome.stdout
    assert outcome.last_line.startswith(f"{path}: "), outcome.stderr[-2000:]
    assert "Traceback" not in outcome.stderr
    assert re.search(text, outcome.last_line), outcome.last_line
    assert outcome.seconds < 30


# ----------------------------------------------------------------------- attacks


def test_state_dict_whose_pickle_sets_its_methods_and_an_array_interface(tmp_path, read_bounded):
    # The state dict's BUILD gives it `items` and `values` that hide its
    # entries from a duck-typed check, and an entry that is an OrderedDict
    # whose BUILD sets an __array_interface__ at a heap address: NumPy would
    # read the process's memory there into the "tensor".
    hidden = _global("collections", "OrderedDict")
    interface = (pickle.EMPTY_DICT + _str("__array_interface__") + pickle.EMPTY_DICT
                 + pickle.MARK + _str("data") + _tuple(pickle.LONG1 + b"\x04\x00\x00\x40\x7f",
                                                       pickle.NEWFALSE)
                 + _str("shape") + _tuple(_int(4096)) + _str("typestr") + _str("<f4")
                 + _str("version") + _int(3) + pickle.SETITEMS + pickle.SETITEM)
    fake = _ORDERED + interface + pickle.BUILD
    methods = (pickle.EMPTY_DICT + pickle.MARK + _str("items") + hidden + _str("values") + hidden
               + _str("keys") + hidden + pickle.SETITEMS)
    body = (_ORDERED + pickle.MARK + _str("conv1.weight") + fake
            + _str("bn1.weight") + _tensor("0", 4, (4,), (1,)) + pickle.SETITEMS
            + methods + pickle.BUILD)
    path = _zip(tmp_path / "heap.pth", _pickle(body), {"0": np.ones(4, np.float32).tobytes()})
    _refusal(read_bounded(path), path, re.escape("its state dict holds 'conv1.weight': dict, "
                                                 "which is no tensor of a name"))


def test_build_on_anything_but_an_ordered_dict_is_refused(tmp_path, read_bounded):
    body = _state([("w", "0", 4, (4,), (1,))]) + pickle.EMPTY_LIST + pickle.EMPTY_DICT + pickle.BUILD
    path = _zip(tmp_path / "build.pth", _pickle(body + pickle.POP),
                {"0": np.ones(4, np.float32).tobytes()})
    _refusal(read_bounded(path), path, "its pickle sets the state of a list to a dict, which a "
                                       "state dict does not do")


def test_ordered_dict_state_is_dropped_and_the_result_is_a_plain_dict(tmp_path):
    # torch.save writes the state dict's `_metadata` as a BUILD: accepted and dropped.
    metadata = pickle.EMPTY_DICT + _str("_metadata") + _ORDERED + pickle.SETITEM
    path = _zip(tmp_path / "meta.pth", _pickle(_state([("w", "0", 2, (2,), (1,))], metadata)),
                {"0": np.array([1.5, -2], np.float32).tobytes()})
    tensors = read_state_dict(path)
    assert type(tensors) is dict and type(tensors["w"]) is np.ndarray
    np.testing.assert_array_equal(tensors["w"], [1.5, -2])


@pytest.mark.parametrize("kind", ["key", "value"])
def test_deep_nesting_is_refused_without_a_crash(tmp_path, read_bounded, kind):
    # 200,000 nested tuples (one opcode each): hashing it as a dict key
    # overflowed the C stack (a segfault) in Python's own unpickler.
    deep = pickle.NONE + pickle.TUPLE1 * 200_000
    entry = deep + pickle.NONE if kind == "key" else _str("w") + deep
    path = _zip(tmp_path / "deep.pth", _pickle(pickle.EMPTY_DICT + entry + pickle.SETITEM))
    expected = ("its pickle has a dict key of type tuple" if kind == "key"
                else f"its pickle nests more than {torch_pickle.MAX_DEPTH} levels deep")
    _refusal(read_bounded(path), path, re.escape(expected))


def test_open_marks_are_bounded(tmp_path):
    path = _zip(tmp_path / "marks.pth", _pickle(pickle.MARK * 10_000 + pickle.NONE))
    with pytest.raises(ValueError, match=re.escape(
            f"{path}: its pickle nests more than {torch_pickle.MAX_DEPTH} levels deep")):
        read_state_dict(path)


def test_a_list_that_contains_itself_is_refused(tmp_path):
    body = (pickle.EMPTY_DICT + _str("w") + pickle.EMPTY_LIST + pickle.BINPUT + b"\x00"
            + pickle.BINGET + b"\x00" + pickle.APPEND + pickle.SETITEM)
    path = _zip(tmp_path / "cycle.pth", _pickle(body))
    with pytest.raises(ValueError, match=re.escape(
            f"{path}: its pickle holds a container that contains itself")):
        read_state_dict(path)


def test_opcode_flood_is_refused_within_seconds(tmp_path, read_bounded):
    flood = (pickle.NONE + pickle.POP) * (torch_pickle.MAX_OPCODES // 2 + 1)
    path = _zip(tmp_path / "flood.pth", _pickle(flood + pickle.EMPTY_DICT))
    outcome = read_bounded(path)
    _refusal(outcome, path, re.escape(f"its pickle has more than {torch_pickle.MAX_OPCODES:,} "
                                      "opcodes"))
    assert outcome.seconds < 20


def test_memo_flood_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(torch_pickle, "MAX_MEMO", 1000)
    flood = b"".join(pickle.NONE + pickle.LONG_BINPUT + struct.pack("<I", i) + pickle.POP
                     for i in range(1001))
    path = _zip(tmp_path / "memo.pth", _pickle(flood + pickle.EMPTY_DICT))
    with pytest.raises(ValueError, match=re.escape(
            f"{path}: its pickle stores more than 1,000 memo entries")):
        read_state_dict(path)


def _keys(keys):
    """A dict of `keys` (ints, as LONG1) to None."""
    def long1(i):
        data = i.to_bytes((i.bit_length() + 8) // 8, "little", signed=True)
        return pickle.LONG1 + bytes([len(data)]) + data
    pairs = b"".join(long1(k) + pickle.NONE for k in keys)
    return _pickle(pickle.EMPTY_DICT + pickle.MARK + pairs + pickle.SETITEMS)


def test_colliding_integer_keys_are_refused_at_once(tmp_path, read_bounded):
    # i * (2**61 - 1) all hash to 0: inserting n of them costs n**2 / 2 probes
    # (14 s for 40,000 in Python's unpickler). Past 64 bits no int is read;
    # within them, only ints within 2**31 are keys (no two share a hash).
    flood = _zip(tmp_path / "collide.pth", _keys(i * (2**61 - 1) for i in range(1, 40_000)))
    outcome = read_bounded(flood)
    _refusal(outcome, flood, re.escape("its pickle holds an integer of 65 bits; accepted: at "
                                       "most 64"))
    assert outcome.seconds < 20
    few = _zip(tmp_path / "few.pth", _keys(i * (2**61 - 1) for i in range(1, 5)))
    with pytest.raises(ValueError, match=re.escape(
            f"{few}: its pickle has a dict key of type int beyond 2**31; accepted: str, or int "
            "within 2**31")):
        read_state_dict(few)


def test_huge_integer_is_refused(tmp_path):
    digits = 10 ** 5000  # past Python's 4,300-digit limit on int to str
    data = digits.to_bytes((digits.bit_length() + 8) // 8, "little", signed=True)
    body = pickle.EMPTY_DICT + _str("w") + pickle.LONG4 + struct.pack("<i", len(data)) + data
    path = _zip(tmp_path / "long.pth", _pickle(body + pickle.SETITEM))
    with pytest.raises(ValueError, match=re.escape(
            f"{path}: its pickle holds an integer of {digits.bit_length()} bits; accepted: "
            "at most 64")):
        read_state_dict(path)


@pytest.mark.parametrize("opcode, name", [
    (pickle.INST + b"os\nsystem\n", "INST"), (pickle.OBJ, "OBJ"), (pickle.NEWOBJ, "NEWOBJ"),
    (pickle.EXT1 + b"\x01", "EXT1"), (pickle.INT + b"1\n", "INT"), (pickle.EMPTY_SET, "EMPTY_SET"),
])
def test_opcodes_a_state_dict_does_not_need_are_refused_by_name(tmp_path, opcode, name):
    path = _zip(tmp_path / "op.pth", _pickle(pickle.MARK + opcode))
    with pytest.raises(ValueError, match=re.escape(
            f"{path}: its pickle uses the opcode {name}, which a state dict does not need")):
        read_state_dict(path)


def test_storage_member_that_inflates_to_gigabytes_is_refused_before_inflating(
        tmp_path, read_bounded):
    # 512 MiB of zeros deflate to 2 MB (a 4.2 GB storage fits in 4 MB); its
    # declared size is refused before a byte is inflated.
    numel, chunk = (512 << 20) // 4, bytes(64 << 20)
    squeezer = zlib.compressobj(1, zlib.DEFLATED, -15)
    deflated = b"".join(squeezer.compress(chunk) for _ in range(8)) + squeezer.flush()
    crc = functools.reduce(lambda crc, _: zlib.crc32(chunk, crc), range(8), 0)
    path = tmp_path / "bomb.pth"
    _zip(path, _pickle(_state([("w", "0", numel, (numel,), (1,))])))
    _append_deflated(path, "x/data/0", deflated, 512 << 20, crc)
    outcome = read_bounded(path)
    _refusal(outcome, path, r"its record x/data/0 would take 536,870,912 bytes, past what a "
                            r"file of its size may make us allocate")


def test_data_pkl_that_inflates_past_its_cap_is_refused(tmp_path):
    path = tmp_path / "pkl.pth"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x/data.pkl", bytes(65 << 20))
    with pytest.raises(ValueError, match=re.escape(
            f"{path}: its record x/data.pkl claims 68,157,440 bytes; accepted: at most "
            "67,108,864")):
        read_state_dict(path)


def test_stride_zero_tensor_larger_than_the_file_allows_is_refused(tmp_path, read_bounded):
    # 4 bytes of storage seen as a 1 GB tensor.
    size = (1000, 1000, 250)
    path = _zip(tmp_path / "stride0.pth", _pickle(_state([("w", "0", 1, size, (0, 0, 0))])),
                {"0": np.ones(1, np.float32).tobytes()})
    _refusal(read_bounded(path), path, re.escape("its tensor of size (1000, 1000, 250) would take "
                                                 "1,000,000,000 bytes"))


def test_many_tensors_over_one_storage_are_bounded_by_the_file(tmp_path, read_bounded):
    numel = 256 << 10  # 1 MiB of storage, seen 300 times
    entries = [(f"w{i}", "0", numel, (numel,), (1,)) for i in range(300)]
    path = _zip(tmp_path / "shared.pth", _pickle(_state(entries)),
                {"0": np.ones(numel, np.float32).tobytes()})
    _refusal(read_bounded(path), path, r"its tensor of size \(262144,\) would take 1,048,576 bytes")


def test_shared_storages_within_the_budget_are_read(tmp_path):
    entries = [(f"w{i}", "0", 4, (2,), (2,)) for i in range(3)]
    path = _zip(tmp_path / "views.pth", _pickle(_state(entries)),
                {"0": np.arange(4, dtype=np.float32).tobytes()})
    tensors = read_state_dict(path)
    assert [t.tolist() for t in tensors.values()] == [[0, 2]] * 3


def test_storage_key_with_terminal_codes_is_shown_escaped(tmp_path):
    key = "\x1b[2J\x1b[31mkey"
    path = _zip(tmp_path / "escape.pth", _pickle(_state([("w", key, 4, (4,), (1,))])))
    with pytest.raises(ValueError) as raised:
        read_state_dict(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: its storage key '\\x1b[2J\\x1b[31mkey' is no short name")
    assert "\x1b" not in message


def test_global_name_with_terminal_codes_is_shown_escaped(tmp_path):
    path = _zip(tmp_path / "global.pth", _pickle(_global("os\x1b[2J", "system")))
    with pytest.raises(ValueError) as raised:
        read_state_dict(path)
    assert "\x1b" not in str(raised.value)
    assert "its pickle refers to 'os\\x1b[2J.system'" in str(raised.value)


def _append_deflated(path, name, deflated, size, crc):
    """Adds the record `name` to the zip `path` with raw deflated bytes and
    the declared `size` and `crc` (zipfile cannot write a member it did not
    compress itself)."""
    with zipfile.ZipFile(path, "a") as archive:
        info = zipfile.ZipInfo(name)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.file_size, info.compress_size, info.CRC = size, len(deflated), crc
        archive.fp.seek(archive.start_dir)
        info.header_offset = archive.fp.tell()
        archive.fp.write(info.FileHeader(zip64=size >= zipfile.ZIP64_LIMIT))
        archive.fp.write(deflated)
        archive.start_dir = archive.fp.tell()
        archive.filelist.append(info)
        archive.NameToInfo[name] = info
        archive._didModify = True
