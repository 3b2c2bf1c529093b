"""PyTorch checkpoints (`torch.save(model.state_dict(), path)`) as NumPy arrays,
without PyTorch and without running the file's pickle: `read_state_dict`.

torch.save's zip format (the default since PyTorch 1.6) is a zip archive of

    <name>/data.pkl      the pickled object; each tensor's storage in it is a
                         persistent id ("storage", <torch.FloatStorage, ...>,
                         key, location, number of elements)
    <name>/data/<key>    a storage's bytes, in the order of <name>/byteorder
                         (little when the record is absent)

and tensors are pickled as calls of `torch._utils._rebuild_tensor_v2(storage,
offset, size, stride, ...)` (`_rebuild_tensor_v3(..., dtype)` for uint16/32/64,
over an untyped storage of bytes).

A checkpoint is a file from a stranger, so it is read as hostile. The pickle
goes through our own closed reader (keras_resnet.models.torch_pickle), which
knows only the opcodes and the few globals a state dict needs and builds only
exact built-in values and the arrays made here from the file's own storage
bytes; every other global (a pickled module, `os.system`) is refused by name
before anything is called. Bounds: data.pkl at most MAX_PICKLE_BYTES and the
reader's opcode, memo and nesting limits; every byte this module allocates
(storages read, tensors built) counted against a budget of BUDGET_RATIO times
the file's size (plus 1 MiB), checked before the allocation, so a zip member
that claims gigabytes, a stride-0 tensor over a small storage or many tensors
over one storage are refused before they cost memory; a compressed storage
(torch.save stores them uncompressed) inflates within that budget.

Why not `torch.load(weights_only=True)`: it needs PyTorch (about 800 MB) to read
a few hundred tensors, and its allow-list covers far more than a state dict
(tensor subclasses, devices, quantized storages), where a flaw has let a
crafted file run code (CVE-2025-32434). This reader's surface is the ~40
opcodes it knows and three functions, each of whose arguments it checks.
"""

import os
import pickle
import zipfile
import zlib
from typing import Any
from typing import NamedTuple

import numpy as np

from keras_resnet.errors import ArgumentError
from keras_resnet.models import torch_pickle
from keras_resnet.models.torch_pickle import Refusal as _Refusal
from keras_resnet.models.torch_pickle import printable

# The tensor dtypes a file may hold, by the name of PyTorch's storage class
# (pickled as torch.FloatStorage, ...), as NumPy dtype names; bfloat16 has no
# NumPy dtype and is read as float32, which holds each of its values exactly.
_STORAGE_DTYPES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8",
    "BoolStorage": "bool",
}
# The dtypes `_rebuild_tensor_v3` names (torch.float32, ...: the same names).
_TORCH_DTYPES = sorted({*_STORAGE_DTYPES.values(), "uint16", "uint32", "uint64"})
_WRAPPER_KEYS = ("state_dict", "model")  # checkpoints that nest the state dict
_ACCEPTED = ("a state dict saved with torch.save(model.state_dict(), path), "
             "or a checkpoint dict holding one under 'state_dict' or 'model'")
# What torch.save wrote before PyTorch 1.6 (and with
# _use_new_zipfile_serialization=False): a pickle of this magic number first.
_LEGACY_MAGIC = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)[:-1]

MAX_PICKLE_BYTES = 64 << 20  # a ResNet-152 state dict's data.pkl is about 100 KB
BUDGET_RATIO = 4  # storages once, tensors once (bfloat16 twice, as float32)
_MAX_DIMS = 16
_MAX_KEY_CHARS = 64


class _Dtype(NamedTuple):
    """A stand-in for a torch dtype or storage class: its NumPy dtype name."""

    name: str


class _Storage:
    """A storage's elements, read once: `elements(dtype)` in this machine's
    byte order, converted once per dtype."""

    def __init__(self, raw: bytes, dtype: _Dtype, reader: "_Reader"):
        self.raw, self.dtype, self.reader = raw, dtype, reader
        self.views: dict[str, np.ndarray] = {}

    def elements(self, dtype: _Dtype) -> np.ndarray:
        if dtype.name not in self.views:
            self.views[dtype.name] = _elements(self.raw, dtype, self.reader)
        return self.views[dtype.name]


def is_torch_file(path: str | os.PathLike) -> bool:
    """Whether `path` is a zip archive with a `<name>/data.pkl` record, as
    torch.save writes; False for a missing file or any other file."""
    try:
        with zipfile.ZipFile(path) as archive:
            return _data_pkl(archive) is not None
    except (OSError, zipfile.BadZipFile):
        return False


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The tensors of a PyTorch checkpoint written by `torch.save`, by name.

    Args:
        path: a `.pth`/`.pt` file in torch.save's zip format, holding a state
            dict (`model.state_dict()`), or a dict that nests one under
            "state_dict" or "model" (its other entries, such as "epoch" or
            "optimizer", are skipped).

    Returns:
        A dict from tensor name to a NumPy array of the tensor's shape and
        dtype, in the file's order; bfloat16 tensors come out as float32.

    Raises:
        ArgumentError: `path` does not exist, or is no file.
        ValueError: one line naming `path`: the file is PyTorch's legacy
            format, no zip, a truncated or corrupt one, misses a storage,
            refers to a global other than the few a state dict needs, is past
            a bound (see the module docstring), or holds no state dict of
            tensors.
    """
    path = os.fspath(path)
    if not os.path.lexists(path):
        raise ArgumentError("path", path, "does not exist; accepted: a .pth file written by "
                            "torch.save")
    if not os.path.isfile(path):
        raise ArgumentError("path", path, "must be a .pth file written by torch.save")
    try:
        return _state_dict(_load(path))
    except _Refusal as e:
        raise ValueError(f"{path}: {e}") from None


def _load(path: str) -> Any:
    """The object pickled in the torch.save archive `path`."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        raise _Refusal(_not_a_zip(path, e)) from None
    with archive:
        name = _data_pkl(archive)
        if name is None:
            raise _Refusal(
                "a zip archive without a <name>/data.pkl record, so not written by "
                f"torch.save; accepted: {_ACCEPTED}"
            )
        reader = _Reader(archive, name[: -len("data.pkl")], os.path.getsize(path))
        data = reader.member(name, MAX_PICKLE_BYTES)
        try:
            return torch_pickle.load(
                data, functions=reader.functions, constants=_CONSTANTS,
                persistent_load=reader.persistent_load, results=(np.ndarray,),
                accepted=_ACCEPTED)
        except _Refusal:
            raise
        except Exception as e:  # any malformed opcode stream or argument
            reason = printable((str(e).strip().splitlines() or [""])[0])
            raise _Refusal(
                f"its {printable(name)} is no pickle of a state dict "
                f"({type(e).__name__}: {reason})"
            ) from None


_CONSTANTS = {
    ("torch.storage", "UntypedStorage"): _Dtype("uint8"),  # numel counts bytes
    **{("torch", k): _Dtype(v) for k, v in _STORAGE_DTYPES.items()},
    **{("torch", name): _Dtype(name) for name in _TORCH_DTYPES},
}


def _not_a_zip(path: str, error: Exception) -> str:
    """Why `path`, which zipfile cannot open, is not read."""
    with open(path, "rb") as f:
        head = f.read(len(_LEGACY_MAGIC))
    if head == _LEGACY_MAGIC:
        return ("PyTorch's legacy checkpoint format (torch.save before PyTorch 1.6, or "
                "_use_new_zipfile_serialization=False), which is not read here; re-save it "
                "with a current torch.save(state_dict, path), or as .safetensors")
    if head.startswith(b"PK"):
        return (f"a truncated or corrupt zip archive ({error}); download or save it "
                "again with torch.save(model.state_dict(), path)")
    return f"not a zip archive, so not written by torch.save; accepted: {_ACCEPTED}"


def _data_pkl(archive: zipfile.ZipFile) -> str | None:
    """The name of the archive's `<name>/data.pkl` record (None: none)."""
    names = [n for n in archive.namelist() if n.count("/") == 1 and n.endswith("/data.pkl")]
    return names[0] if names else None


class _Reader:
    """One archive's records, storages and tensors, within one byte budget."""

    def __init__(self, archive: zipfile.ZipFile, prefix: str, file_size: int):
        self.archive, self.prefix = archive, prefix
        self.budget = BUDGET_RATIO * file_size + (1 << 20)
        self.spent = 0
        self.storages: dict[str, tuple[_Storage, int]] = {}  # key -> (storage, numel)
        self.byteorder = self.byte_order()
        self.functions = {
            ("torch._utils", "_rebuild_tensor_v2"): self.rebuild_tensor_v2,
            ("torch._utils", "_rebuild_tensor_v3"): self.rebuild_tensor_v3,
            ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        }

    def spend(self, nbytes: int, what: str) -> None:
        """Counts `nbytes` about to be allocated for `what` against the budget."""
        if self.spent + nbytes > self.budget:
            raise _Refusal(
                f"{what} would take {nbytes:,} bytes, past what a file of its size may "
                f"make us allocate ({self.budget:,} bytes in all, {self.spent:,} spent); "
                "the file is corrupt or crafted"
            )
        self.spent += nbytes

    def member(self, name: str, limit: int | None = None) -> bytes:
        """The bytes of record `name`, checked against the archive's CRC, after
        its declared size is checked against `limit` and the budget."""
        try:
            info = self.archive.getinfo(name)
        except KeyError:
            raise _Refusal(f"its record {printable(name)} is missing; the archive is "
                           "incomplete") from None
        if limit is not None and info.file_size > limit:
            raise _Refusal(f"its record {printable(name)} claims {info.file_size:,} bytes; "
                           f"accepted: at most {limit:,}")
        self.spend(info.file_size, f"its record {printable(name)}")
        try:
            with self.archive.open(info) as f:
                return f.read(info.file_size)
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError) as e:
            raise _Refusal(f"a truncated or corrupt zip archive ({printable(name)}: {e})") from None

    def byte_order(self) -> str:
        """"<" or ">": the byte order of the storages (`<prefix>byteorder`)."""
        if f"{self.prefix}byteorder" not in self.archive.namelist():
            return "<"  # written before PyTorch recorded it: little-endian
        order = self.member(f"{self.prefix}byteorder", 16).decode("ascii", "replace").strip()
        if order not in ("little", "big"):
            raise _Refusal(f"its byteorder record is {printable(order)}; accepted: 'little' or "
                           "'big'")
        return "<" if order == "little" else ">"

    def persistent_load(self, pid: Any) -> _Storage:
        """A storage from its persistent id ("storage", dtype, key, location, numel)."""
        if not (type(pid) is tuple and len(pid) == 5 and type(pid[0]) is str
                and pid[0] == "storage" and type(pid[1]) is _Dtype and type(pid[2]) is str):
            raise _Refusal("its pickle has a persistent id that is no storage")
        _, dtype, key, _, numel = pid
        if not (key.isascii() and key.isprintable() and 0 < len(key) <= _MAX_KEY_CHARS):
            raise _Refusal(f"its storage key {printable(key)} is no short name; accepted: up "
                           f"to {_MAX_KEY_CHARS} printable ASCII characters")
        if not _is_index(numel):
            raise _Refusal(f"its storage {key!r} has {_describe(numel)} elements; accepted: an "
                           "int >= 0")
        if key in self.storages:
            storage, count = self.storages[key]
            if (storage.dtype, count) != (dtype, numel):
                raise _Refusal(f"its storage {key!r} is named twice, as {count} {storage.dtype.name}"
                               f" and as {numel} {dtype.name} elements")
            return storage
        name = f"{self.prefix}data/{key}"
        expected = numel * np.dtype(_numpy_dtype(dtype)).itemsize
        declared = self.archive.getinfo(name).file_size if name in self.archive.NameToInfo else None
        if declared is not None and declared != expected:
            raise _Refusal(
                f"its storage data/{key} holds {declared} bytes, but the pickle "
                f"says {numel} {dtype.name} elements ({expected} bytes)"
            )
        storage = _Storage(self.member(name), dtype, self)
        self.storages[key] = (storage, numel)
        return storage

    def rebuild_tensor_v2(self, storage, offset, size, stride, *_) -> np.ndarray:
        """Stand-in for torch._utils._rebuild_tensor_v2 (requires_grad, hooks
        and metadata do not matter to the values)."""
        return self.tensor(storage, None, offset, size, stride)

    def rebuild_tensor_v3(self, storage, offset, size, stride, _, __, dtype, *___):
        """Stand-in for torch._utils._rebuild_tensor_v3: an untyped storage
        read as `dtype`."""
        if type(dtype) is not _Dtype:
            raise _Refusal(f"its pickle gives the tensor dtype {_describe(dtype)}, which is no "
                           "dtype")
        return self.tensor(storage, dtype, offset, size, stride)

    def tensor(self, storage: Any, dtype: _Dtype | None, offset: Any, size: Any,
               stride: Any) -> np.ndarray:
        """A copy of the tensor of `size` and `stride` (in elements) that starts
        at element `offset` of `storage`, read as `dtype` (None: the storage's),
        after checking it lies inside the storage and within the budget."""
        if type(storage) is not _Storage:
            raise _Refusal(f"its pickle builds a tensor on {_describe(storage)}, which is no "
                           "storage")
        if not (_is_index(offset) and type(size) is tuple and type(stride) is tuple
                and len(size) == len(stride) <= _MAX_DIMS
                and all(map(_is_index, size + stride))):
            raise _Refusal(
                f"its pickle gives a tensor offset {_describe(offset)}, size {_describe(size)} "
                f"and stride {_describe(stride)}; accepted: an int and two equally long tuples "
                f"of at most {_MAX_DIMS} ints >= 0"
            )
        elements = storage.elements(dtype or storage.dtype)
        count = int(np.prod(size, dtype=object))
        self.spend(count * elements.itemsize, f"its tensor of size {size}")
        if count == 0:
            return np.zeros(size, elements.dtype)
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= len(elements):
            raise _Refusal(
                f"its tensor of size {size}, stride {stride} and offset {offset} reaches "
                f"element {last} of a storage of {len(elements)}; the file is corrupt"
            )
        strides = tuple(s * elements.itemsize for s in stride)
        view = np.lib.stride_tricks.as_strided(elements[offset:], size, strides, writeable=False)
        return view.copy()


def _rebuild_parameter(data: Any, *_: Any) -> np.ndarray:
    """Stand-in for torch._utils._rebuild_parameter: the parameter's tensor."""
    if type(data) is not np.ndarray:
        raise _Refusal(f"its pickle makes a parameter of {_describe(data)}, which is no tensor")
    return data


def _numpy_dtype(dtype: _Dtype) -> str:
    """The NumPy dtype that holds `dtype`'s bytes (bfloat16: its uint16 bits)."""
    return "uint16" if dtype.name == "bfloat16" else dtype.name


def _elements(raw: bytes, dtype: _Dtype, reader: _Reader) -> np.ndarray:
    """A storage's bytes as a 1-d array of `dtype` in this machine's byte
    order; a conversion that copies is counted against the budget."""
    on_file = np.dtype(_numpy_dtype(dtype)).newbyteorder(reader.byteorder)
    if len(raw) % on_file.itemsize:
        raise _Refusal(f"a storage of {len(raw)} bytes holds no whole {dtype.name}s")
    elements = np.frombuffer(raw, on_file)
    if dtype.name == "bfloat16":  # the upper half of a float32's bits
        reader.spend(2 * len(raw), "its bfloat16 storage as float32")
        return (elements.astype(np.uint32) << 16).view(np.float32)
    if not on_file.isnative:
        reader.spend(len(raw), "its storage in this machine's byte order")
        return elements.astype(on_file.newbyteorder("="))
    return elements


def _is_index(value: Any) -> bool:
    """Whether `value` is an int >= 0 (bool is no index)."""
    return type(value) is int and value >= 0


def _describe(value: Any) -> str:
    """A short description of a value from the file, for a message: scalars
    as they are (cut short), anything else by its type."""
    if type(value) in (int, float, bool, type(None)):
        return printable(repr(value), 40)
    if type(value) is str:
        return _quoted(value)
    if type(value) is tuple and len(value) <= _MAX_DIMS and all(type(v) is int for v in value):
        return printable(repr(value), 120)
    return f"a {type(value).__name__}"


def _quoted(text: str, limit: int = 40) -> str:
    """`text` quoted, its control characters escaped, cut to `limit`."""
    return repr(text[:limit]) + ("..." if len(text) > limit else "")


def _state_dict(obj: Any) -> dict[str, np.ndarray]:
    """The state dict the unpickled `obj` is or nests under a wrapper key."""
    if type(obj) is dict:
        for key in _WRAPPER_KEYS:
            if type(obj.get(key)) is dict:
                obj = obj[key]
                break
    if type(obj) is not dict or not any(type(v) is np.ndarray for v in obj.values()):
        found = f"a dict of {len(obj)} entries" if type(obj) is dict else type(obj).__name__
        raise _Refusal(f"it holds no tensors ({found}); accepted: {_ACCEPTED}")
    for key, value in obj.items():
        if type(key) is not str or type(value) is not np.ndarray:
            raise _Refusal(
                f"its state dict holds {_describe(key)}: {type(value).__name__}, which is no tensor "
                f"of a name; accepted: {_ACCEPTED}"
            )
    return obj
