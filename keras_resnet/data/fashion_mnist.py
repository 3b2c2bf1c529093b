"""Fashion-MNIST, read offline from the files Debian's `dataset-fashion-mnist` installs.

The package puts the four gzip'd IDX files that TFDS's `fashion_mnist` builder
downloads in `DEFAULT_DIR`, recompressed (so TFDS refuses their checksums; the
decompressed bytes are the originals). `find` locates them, `read_idx` reads
one, `fashion_mnist_source` gives training's splits and `fashion_mnist_split`
evaluation's, as keras_resnet.data.sources' `Split` and `Source`.

Images are padded with 2 zero pixels on each side to 32x32, and the grey
channel is repeated to 3: the CIFAR nets of Sec. 4.2 then run at the paper's
feature-map sizes 32, 16 and 8, at Table 6's FLOPs, and the recipe's per-pixel
mean, 4-pixel pad, 32x32 crop and flip apply unchanged. Fashion-MNIST's
background is 0, so the padding is background; resizing 28 to 32 instead
would blur every pixel. The models and the mean take RGB.

Splits: the training file less a seeded `val_fraction` of it trains (54,000
of 60,000 by default), that share validates (picks the best model; as the
45k/5k split of CIFAR-10's training set, Sec. 4.2), and the t10k files are
the test split, scored apart.

The files are untrusted: each must be a regular file (a symlink to one is
read: Debian may ship links), of at most `max_compressed_bytes` compressed,
one complete gzip member and nothing after it, whose IDX header is exactly
Fashion-MNIST's (magic, counts 60000/10000, 28x28), checked before the data's
buffer is allocated; it is decompressed into a buffer of the expected size + 1 bytes,
in steps of at most `INFLATE_BYTES`, so a gzip bomb costs no more. Labels
must be below 10. Anything else is refused in one line naming the file.
"""

import dataclasses
import math
import numbers
import os
import stat
import struct
import zlib

import numpy as np
import tensorflow as tf

from keras_resnet.data.splits import Source
from keras_resnet.data.splits import Split
from keras_resnet.data.splits import VAL_FRACTION
from keras_resnet.errors import ArgumentError
from keras_resnet.errors import DatasetUnavailableError

NAME = "fashion_mnist"
DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
# Fashion-MNIST's own names, label order (as TFDS gives them).
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot")
IMAGE_SIZE = 28
PAD = 2  # zero pixels on each side: 28 + 2 + 2 = 32, the CIFAR nets' input (Sec. 4.2)
# split of the files -> (images file, labels file, examples)
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60_000),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10_000),
}
SPLITS = ("train", "validation", "test")  # fashion_mnist_split's
IDX_UBYTE = 0x00000800  # IDX magic of unsigned bytes, plus the number of dimensions
READ_BYTES = 1 << 20  # compressed bytes read at a time
INFLATE_BYTES = 1 << 20  # decompressed bytes at most per step
PAD_BATCH = 1024  # images padded at a time


def max_compressed_bytes(size: int) -> int:
    """The largest gzip file accepted for `size` bytes of data: deflate's
    stored blocks add 5 bytes per 64 KiB, gzip 18 bytes and its header's
    names; the cap bounds the time spent on blocks that inflate to nothing."""
    return size + size // 1000 + 4096


def find(manual_dir: str | None = None) -> str | None:
    """The folder holding the four files: `manual_dir` if it holds them, else
    `DEFAULT_DIR` if it does; None if neither."""
    names = [name for images, labels, _ in FILES.values() for name in (images, labels)]
    candidates = [os.path.expanduser(manual_dir)] if manual_dir else []
    for folder in [*candidates, DEFAULT_DIR]:
        if all(os.path.isfile(os.path.join(folder, name)) for name in names):
            return folder
    return None


# ------------------------------------------------------------ the IDX files


def _open(path: str, size: int):
    """`path` opened for reading, refused unless it is a regular file (not
    waiting on a FIFO) of at most `max_compressed_bytes(size)` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise DatasetUnavailableError(f"Cannot read Fashion-MNIST file {path} ({e.strerror})") from None
    info, cap = os.fstat(fd), max_compressed_bytes(size)
    if not stat.S_ISREG(info.st_mode) or info.st_size > cap:
        os.close(fd)
        found = f"{info.st_size} bytes" if stat.S_ISREG(info.st_mode) else "not a regular file"
        raise ValueError(f"{path}: {found}; accepted: a regular gzip file of at most {cap} bytes "
                         f"(Fashion-MNIST's {size} bytes of IDX data, compressed)")
    return os.fdopen(fd, "rb", buffering=0)


class _Gzip:
    """One gzip member of an open file, decompressed in bounded steps."""

    def __init__(self, f, path: str, size: int):
        self.f, self.path, self.size = f, path, size
        self.inflater, self.pending, self.done = zlib.decompressobj(16 + zlib.MAX_WBITS), b"", 0

    def refuse(self, what: str) -> ValueError:
        return ValueError(f"{self.path}: {what}; accepted: one complete gzip member of "
                          f"Fashion-MNIST's {self.size} bytes of IDX data, nothing after it")

    def read(self, n: int) -> bytearray:
        """The next `n` decompressed bytes, fewer only at the end of the member."""
        out, got = bytearray(n), 0
        while got < n and not self.inflater.eof:
            if not self.pending:
                self.pending = self.f.read(READ_BYTES)
                if not self.pending:
                    raise self.refuse(f"truncated after {self.done + got} decompressed bytes")
            try:
                chunk = self.inflater.decompress(self.pending, min(n - got, INFLATE_BYTES))
            except zlib.error as e:
                raise self.refuse(f"corrupt gzip data ({e})") from None
            self.pending = self.inflater.unconsumed_tail
            out[got:got + len(chunk)] = chunk
            got += len(chunk)
        self.done += got
        del out[got:]
        return out

    def end(self) -> None:
        """Refuses anything after the member (another member, or junk)."""
        if self.inflater.unused_data or self.f.read(1):
            raise self.refuse("data after the end of its gzip member")


def read_idx(path: str, shape: tuple[int, ...]) -> np.ndarray:
    """The uint8 array of a gzip'd IDX file, refused unless its header says
    unsigned bytes of exactly `shape` (checked before the data is read) and
    it holds exactly that much data."""
    size = math.prod(shape)
    header_size = 4 + 4 * len(shape)
    with _open(path, header_size + size) as f:
        stream = _Gzip(f, path, header_size + size)
        header = stream.read(header_size)
        if len(header) < header_size:
            raise stream.refuse(f"decompresses to {len(header)} bytes, less than its header")
        magic, *dims = struct.unpack(f">{1 + len(shape)}I", header)
        if magic != IDX_UBYTE + len(shape) or tuple(dims) != shape:
            raise ValueError(
                f"{path}: IDX header magic 0x{magic:08x}, dims {tuple(dims)}; accepted: "
                f"Fashion-MNIST's magic 0x{IDX_UBYTE + len(shape):08x}, dims {shape}")
        data = stream.read(size + 1)
        if len(data) > size:
            raise stream.refuse(f"more than {size} bytes of data after its header (a gzip bomb, "
                                "or trailing data)")
        if len(data) < size:
            raise stream.refuse(f"only {len(data)} bytes of data after its header")
        stream.end()
    return np.frombuffer(data, np.uint8).reshape(shape)


def read_files(folder: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images [N, 28, 28] uint8, labels [N] int32) of the "train" or "test"
    files in `folder`; labels of 10 or more are refused."""
    images_name, labels_name, count = FILES[split]
    images = read_idx(os.path.join(folder, images_name), (count, IMAGE_SIZE, IMAGE_SIZE))
    labels_path = os.path.join(folder, labels_name)
    labels = read_idx(labels_path, (count,))
    bad = np.flatnonzero(labels >= len(CLASS_NAMES))
    if bad.size:
        raise ValueError(f"{labels_path}: label {labels[bad[0]]} at index {bad[0]} ({bad.size} "
                         f"labels out of range); accepted: labels 0..{len(CLASS_NAMES) - 1}")
    return images, labels.astype("int32")


# ----------------------------------------------------------------- splits


def _padded_rgb(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """28x28 grey images as 32x32 RGB: a zero (background) border, grey in each channel."""
    images = tf.pad(images, [[0, 0], [PAD, PAD], [PAD, PAD]])
    return tf.tile(images[..., None], [1, 1, 1, 3]), labels


def _split(images: np.ndarray, labels: np.ndarray) -> Split:
    side = IMAGE_SIZE + 2 * PAD
    examples = tf.data.Dataset.from_tensor_slices((images, labels))
    # Padded a batch at a time: a third of the time of one image at a time.
    examples = examples.batch(PAD_BATCH).map(_padded_rgb, num_parallel_calls=tf.data.AUTOTUNE)
    return Split(examples=examples.unbatch(), count=len(labels), class_names=CLASS_NAMES,
                 decoded_bytes=len(labels) * side * side * 3)


def held_out(count: int, seed: int, val_fraction: float) -> np.ndarray:
    """The sorted indices of the `val_fraction` of `count` training images
    that validate, drawn with `seed`: the same for a seed in every run."""
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, numbers.Real) \
            or not 0 < val_fraction < 1:
        raise ArgumentError("val_fraction", val_fraction, "must be a number > 0 and < 1")
    take = int(val_fraction * count + 0.5)
    if not 0 < take < count:
        raise ArgumentError("val_fraction", val_fraction,
                            f"must hold out 1 to {count - 1} of the {count} training images")
    return np.sort(np.random.RandomState(seed).permutation(count)[:take])


def _train_and_val(folder: str, seed: int, val_fraction: float) -> tuple[Split, Split, dict]:
    """(train, validation, where each came from) of the training files."""
    count = FILES["train"][2]
    held = held_out(count, seed, val_fraction)
    images, labels = read_files(folder, "train")
    rest = np.setdiff1d(np.arange(count), held, assume_unique=True)
    splits = {"train": f"{NAME} train ({len(rest)} of {count}, seed {seed}) in {folder}",
              "val": f"{NAME} train ({len(held)} of {count} held out, seed {seed}) in {folder}"}
    return _split(images[rest], labels[rest]), _split(images[held], labels[held]), splits


def _test(folder: str) -> Split:
    return _split(*read_files(folder, "test"))


def fashion_mnist_source(folder: str, seed: int = 0, val_fraction: float = VAL_FRACTION) -> Source:
    """Training's splits: the training file less a seeded `val_fraction`,
    that share to validate, and the t10k files to test."""
    train, val, splits = _train_and_val(folder, seed, val_fraction)
    splits["test"] = f"{NAME} test ({FILES['test'][2]}, t10k) in {folder}"
    return Source(train, val, _test(folder), splits)


def fashion_mnist_split(folder: str, split: str | None = None, *, seed: int = 0,
                        val_fraction: float = VAL_FRACTION) -> Split:
    """Evaluation's split: "test" (the default; the t10k files), or the
    "train" or "validation" split that `fashion_mnist_source` gives for
    `seed` and `val_fraction`."""
    split = "test" if split is None else split
    if split not in SPLITS:
        raise ArgumentError("split", split, f"must be one of {', '.join(SPLITS)} for {NAME}")
    if split == "test":
        return dataclasses.replace(_test(folder), name=split)
    train, val, _ = _train_and_val(folder, seed, val_fraction)
    return dataclasses.replace(train if split == "train" else val, name=split)
