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
over an untyped storage of bytes). Our unpickler resolves only those globals,
`collections.OrderedDict` and `torch._utils._rebuild_parameter`, to functions of
its own; any other global (a pickled module, `os.system`) is refused before
anything is called, so a file cannot run code as `torch.load(weights_only=False)`
would let it.
"""

import collections
import io
import os
import pickle
import zipfile
import zlib
from typing import Any
from typing import NamedTuple

import numpy as np

from keras_resnet.errors import ArgumentError

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


class _Refusal(ValueError):
    """Why the file cannot be read; `read_state_dict` puts the path first."""


class _Dtype(NamedTuple):
    """A stand-in for a torch dtype or storage class: its NumPy dtype name.
    Immutable, so a pickle cannot change it (BUILD) after a storage names it."""

    name: str


class _Storage(NamedTuple):
    """A storage's bytes (byte order as written) and the dtype they hold."""

    raw: bytes
    dtype: _Dtype


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
        ArgumentError: `path` is no file.
        ValueError: one line naming `path`: the file is PyTorch's legacy
            format, no zip, a truncated or corrupt one, misses a storage,
            refers to a global other than the few a state dict needs, or
            holds no state dict of tensors.
    """
    path = os.fspath(path)
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
        prefix = name[: -len("data.pkl")]
        data = _member(archive, name)
        unpickler = _Unpickler(data, archive, prefix, _byteorder(archive, prefix))
        try:
            return unpickler.load()
        except _Refusal:
            raise
        except Exception as e:  # any malformed opcode stream or argument
            reason = (str(e).strip().splitlines() or [""])[0]
            raise _Refusal(
                f"its {name} is no pickle of a state dict ({type(e).__name__}: {reason})"
            ) from None


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


def _member(archive: zipfile.ZipFile, name: str) -> bytes:
    """The bytes of record `name`, checked against the archive's CRC."""
    try:
        return archive.read(name)
    except KeyError:
        raise _Refusal(f"its record {name} is missing; the archive is incomplete") from None
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as e:
        raise _Refusal(f"a truncated or corrupt zip archive ({name}: {e})") from None


def _byteorder(archive: zipfile.ZipFile, prefix: str) -> str:
    """"<" or ">": the byte order of the storages (`<prefix>byteorder`)."""
    if f"{prefix}byteorder" not in archive.namelist():
        return "<"  # written before PyTorch recorded it: little-endian
    order = _member(archive, f"{prefix}byteorder").decode("ascii", "replace").strip()
    if order not in ("little", "big"):
        raise _Refusal(f"its byteorder record is {order!r}; accepted: 'little' or 'big'")
    return "<" if order == "little" else ">"


class _Unpickler(pickle.Unpickler):
    """Unpickles data.pkl with our stand-ins for the few globals a state dict
    refers to, and refuses every other global by name."""

    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, byteorder: str):
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix, self.byteorder = archive, prefix, byteorder
        self.storages: dict[str, _Storage] = {}
        # Bound methods: a pickle cannot set attributes on them (BUILD).
        self.allowed = {
            ("collections", "OrderedDict"): collections.OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2"): self.rebuild_tensor_v2,
            ("torch._utils", "_rebuild_tensor_v3"): self.rebuild_tensor_v3,
            ("torch._utils", "_rebuild_parameter"): self.rebuild_parameter,
            ("torch.storage", "UntypedStorage"): _Dtype("uint8"),  # numel counts bytes
            **{("torch", k): _Dtype(v) for k, v in _STORAGE_DTYPES.items()},
            **{("torch", name): _Dtype(name) for name in _TORCH_DTYPES},
        }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.allowed:
            raise _Refusal(
                f"its pickle refers to {module}.{name}, which a state dict does not need, "
                f"so the file is not loaded; accepted: {_ACCEPTED}"
            )
        return self.allowed[module, name]

    def persistent_load(self, pid: Any) -> _Storage:
        """A storage from its persistent id ("storage", dtype, key, location, numel)."""
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _Dtype) and isinstance(pid[2], str)):
            raise _Refusal(f"its pickle has the persistent id {pid!r}, which is no storage")
        _, dtype, key, _, numel = pid
        if not _is_index(numel):
            raise _Refusal(f"its storage {key!r} has {numel!r} elements; accepted: an int >= 0")
        if key not in self.storages:
            raw = _member(self.archive, f"{self.prefix}data/{key}")
            expected = numel * np.dtype(_numpy_dtype(dtype)).itemsize
            if len(raw) != expected:
                raise _Refusal(
                    f"its storage data/{key} holds {len(raw)} bytes, but the pickle "
                    f"says {numel} {dtype.name} elements ({expected} bytes)"
                )
            self.storages[key] = _Storage(raw, dtype)
        return self.storages[key]

    def rebuild_tensor_v2(self, storage, offset, size, stride, *_) -> np.ndarray:
        """Stand-in for torch._utils._rebuild_tensor_v2 (requires_grad, hooks
        and metadata do not matter to the values)."""
        return _tensor(_elements(storage, None, self.byteorder), offset, size, stride)

    def rebuild_tensor_v3(self, storage, offset, size, stride, _, __, dtype, *___):
        """Stand-in for torch._utils._rebuild_tensor_v3: an untyped storage
        read as `dtype`."""
        if not isinstance(dtype, _Dtype):
            raise _Refusal(f"its pickle gives the tensor dtype {dtype!r}, which is no dtype")
        return _tensor(_elements(storage, dtype, self.byteorder), offset, size, stride)

    def rebuild_parameter(self, data, *_) -> np.ndarray:
        """Stand-in for torch._utils._rebuild_parameter: the parameter's tensor."""
        return data


def _numpy_dtype(dtype: _Dtype) -> str:
    """The NumPy dtype that holds `dtype`'s bytes (bfloat16: its uint16 bits)."""
    return "uint16" if dtype.name == "bfloat16" else dtype.name


def _elements(storage: Any, dtype: _Dtype | None, byteorder: str) -> np.ndarray:
    """A storage's elements as a 1-d array of `dtype` (None: the storage's own)
    in this machine's byte order."""
    if not isinstance(storage, _Storage):
        raise _Refusal(f"its pickle builds a tensor on {storage!r}, which is no storage")
    dtype = dtype or storage.dtype
    on_file = np.dtype(_numpy_dtype(dtype)).newbyteorder(byteorder)
    if len(storage.raw) % on_file.itemsize:
        raise _Refusal(f"a storage of {len(storage.raw)} bytes holds no whole {dtype.name}s")
    elements = np.frombuffer(storage.raw, on_file).astype(on_file.newbyteorder("="), copy=False)
    if dtype.name == "bfloat16":  # the upper half of a float32's bits
        return (elements.astype(np.uint32) << 16).view(np.float32)
    return elements


def _tensor(elements: np.ndarray, offset: Any, size: Any, stride: Any) -> np.ndarray:
    """A copy of the tensor of `size` and `stride` (in elements) that starts at
    element `offset` of `elements`, after checking it lies inside them."""
    if not (_is_index(offset) and isinstance(size, tuple) and isinstance(stride, tuple)
            and len(size) == len(stride) and all(map(_is_index, size + stride))):
        raise _Refusal(
            f"its pickle gives a tensor offset {offset!r}, size {size!r} and stride "
            f"{stride!r}; accepted: an int and two equally long tuples of ints >= 0"
        )
    if 0 in size:
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


def _is_index(value: Any) -> bool:
    """Whether `value` is an int >= 0 (bool is no index)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _state_dict(obj: Any) -> dict[str, np.ndarray]:
    """The state dict the unpickled `obj` is or nests under a wrapper key."""
    if isinstance(obj, dict):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not any(isinstance(v, np.ndarray) for v in obj.values()):
        found = f"a dict of {len(obj)} entries" if isinstance(obj, dict) else type(obj).__name__
        raise _Refusal(f"it holds no tensors ({found}); accepted: {_ACCEPTED}")
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, np.ndarray):
            raise _Refusal(
                f"its state dict holds {key!r}: {type(value).__name__}, which is no tensor "
                f"of a name; accepted: {_ACCEPTED}"
            )
    return dict(obj)
