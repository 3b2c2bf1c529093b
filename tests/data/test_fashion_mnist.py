"""Fashion-MNIST read offline from Debian's files (keras_resnet.data.fashion_mnist):
the real files' facts, the 32x32 RGB images and the seeded splits, and crafted
hostile files, each refused in one line naming it."""

import gzip
import hashlib
import os
import struct
import types
import zlib

import numpy as np
import pytest

from keras_resnet.data import fashion_mnist
from keras_resnet.data import sources
from keras_resnet.errors import ArgumentError
from tests.bounded import run_bounded

INSTALLED = fashion_mnist.find() is not None
needs_files = pytest.mark.skipif(
    not INSTALLED, reason=f"Fashion-MNIST files absent from {fashion_mnist.DEFAULT_DIR}: they come "
    "with the Debian package dataset-fashion-mnist (apt-get install dataset-fashion-mnist)")
# SHA-256 of the decompressed files (`zcat FILE | sha256sum`): the originals'
# bytes, as other projects that read them pin them too.
SHA256 = {
    "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
TRAIN_IMAGES, TRAIN_LABELS, _ = fashion_mnist.FILES["train"]
TEST_IMAGES, TEST_LABELS, _ = fashion_mnist.FILES["test"]


def _arrays(split):
    """(images, labels) of a Split as NumPy arrays."""
    batches = list(split.examples.batch(10_000).as_numpy_iterator())
    return np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches])


@pytest.fixture(scope="module")
def real():
    """The real files, read once: the raw arrays and the source's splits."""
    folder = fashion_mnist.find()
    source = fashion_mnist.fashion_mnist_source(folder)
    return types.SimpleNamespace(
        folder=folder, source=source, train_file=fashion_mnist.read_files(folder, "train"),
        test_file=fashion_mnist.read_files(folder, "test"), train=_arrays(source.train),
        val=_arrays(source.val), test=_arrays(source.test))


def _sha256(array, magic):
    header = struct.pack(f">{1 + array.ndim}I", magic, *array.shape)
    return hashlib.sha256(header + array.tobytes()).hexdigest()


@needs_files
def test_the_real_files_hold_fashion_mnist(real):
    (train_images, train_labels), (test_images, test_labels) = real.train_file, real.test_file
    assert train_images.shape == (60_000, 28, 28) and test_images.shape == (10_000, 28, 28)
    assert np.bincount(train_labels).tolist() == [6000] * 10
    assert np.bincount(test_labels).tolist() == [1000] * 10
    # Read here, and as published (e.g. elixir-nx/scidata's FashionMNIST docs
    # list the training labels; the first training image is an Ankle boot).
    assert train_labels[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert fashion_mnist.CLASS_NAMES[train_labels[0]] == "Ankle boot"
    assert test_labels[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert {name: _sha256(array, magic) for name, array, magic in [
        (TRAIN_IMAGES, train_images, 0x803), (TRAIN_LABELS, train_labels.astype("uint8"), 0x801),
        (TEST_IMAGES, test_images, 0x803), (TEST_LABELS, test_labels.astype("uint8"), 0x801),
    ]} == SHA256
    assert train_images.mean() == pytest.approx(72.94, abs=0.005)  # shared/REFERENCE.md


@needs_files
def test_images_are_32x32_rgb_padded_with_background(real):
    test_images, test_labels = real.test
    assert test_images.shape == (10_000, 32, 32, 3) and test_images.dtype == np.uint8
    assert test_labels.dtype == np.int32
    np.testing.assert_array_equal(test_labels, real.test_file[1])
    for images, labels in (real.train, real.val, real.test):
        assert (images[..., 1] == images[..., 0]).all() and (images[..., 2] == images[..., 0]).all()
        border = np.ones((32, 32), bool)
        border[2:30, 2:30] = False
        assert not images[:, border].any()  # 2 zero pixels on each side
        assert 0 <= labels.min() and labels.max() <= 9
    # The 28x28 inside is the file's image, unchanged.
    np.testing.assert_array_equal(test_images[:, 2:30, 2:30, 0], real.test_file[0])
    held = fashion_mnist.held_out(60_000, 0, 0.1)
    rest = np.setdiff1d(np.arange(60_000), held)
    np.testing.assert_array_equal(real.val[0][:, 2:30, 2:30, 0], real.train_file[0][held])
    np.testing.assert_array_equal(real.train[0][:, 2:30, 2:30, 0], real.train_file[0][rest])
    np.testing.assert_array_equal(real.train[1], real.train_file[1][rest])
    assert real.source.train.decoded_bytes == 54_000 * 32 * 32 * 3


@needs_files
def test_the_validation_share_is_seeded_disjoint_and_a_tenth(real):
    source = real.source
    assert (source.train.count, source.val.count, source.test.count) == (54_000, 6_000, 10_000)
    assert len(real.train[1]) == 54_000 and len(real.val[1]) == 6_000
    assert source.splits == {
        "train": f"fashion_mnist train (54000 of 60000, seed 0) in {real.folder}",
        "val": f"fashion_mnist train (6000 of 60000 held out, seed 0) in {real.folder}",
        "test": f"fashion_mnist test (10000, t10k) in {real.folder}"}
    # The training file's 60,000 images are distinct, so disjoint images are disjoint examples.
    train, val = {x.tobytes() for x in real.train[0]}, {x.tobytes() for x in real.val[0]}
    assert not train & val and len(train | val) == 60_000
    assert source.train.class_names == fashion_mnist.CLASS_NAMES
    np.testing.assert_array_equal(fashion_mnist.held_out(60_000, 0, 0.1),
                                  fashion_mnist.held_out(60_000, 0, 0.1))
    again = fashion_mnist.fashion_mnist_split(real.folder, "validation", seed=0)
    np.testing.assert_array_equal(_arrays(again)[0], real.val[0])
    other = _arrays(fashion_mnist.fashion_mnist_source(real.folder, seed=1).val)[0]
    assert len(other) == 6_000 and len({x.tobytes() for x in other} & val) < 1_000


@needs_files
def test_evaluation_splits_and_their_names(real):
    test = fashion_mnist.fashion_mnist_split(real.folder)
    assert test.count == 10_000
    np.testing.assert_array_equal(_arrays(test)[0], real.test[0])
    train = fashion_mnist.fashion_mnist_split(real.folder, "train", seed=0)
    assert train.count == 54_000
    labels = [int(y) for _, y in train.examples.take(100).as_numpy_iterator()]
    assert labels == real.train[1][:100].tolist()
    with pytest.raises(ArgumentError, match=r"^split must be one of train, validation, test "
                       r"for fashion_mnist. Received: split='val'$"):
        fashion_mnist.fashion_mnist_split(real.folder, "val")
    for fraction in (0, 1, 1e-6, -0.1, float("nan"), True, "0.1"):
        with pytest.raises(ArgumentError, match="val_fraction"):
            fashion_mnist.fashion_mnist_source(real.folder, val_fraction=fraction)


def test_find_picks_the_folder_holding_the_four_files(tmp_path, monkeypatch):
    full, partial = tmp_path / "full", tmp_path / "partial"
    full.mkdir(), partial.mkdir()
    for name in SHA256:
        (full / name).write_bytes(b"")
    (partial / TRAIN_IMAGES).write_bytes(b"")
    assert fashion_mnist.find(str(full)) == str(full)
    installed = fashion_mnist.DEFAULT_DIR if INSTALLED else None
    assert fashion_mnist.find(str(partial)) == installed and fashion_mnist.find(None) == installed
    monkeypatch.setattr(fashion_mnist, "DEFAULT_DIR", str(full))
    assert fashion_mnist.find(str(partial)) == str(full)
    monkeypatch.setattr(fashion_mnist, "DEFAULT_DIR", str(partial))
    assert fashion_mnist.find(None) is None and fashion_mnist.find(str(tmp_path)) is None


# ------------------------------------------------------------ crafted files


def _idx(magic, dims, body):
    return struct.pack(f">{1 + len(dims)}I", magic, *dims) + body


def _gz(data):
    return gzip.compress(data, mtime=0)


GOOD_IMAGES = _idx(0x803, (10_000, 28, 28), bytes(10_000 * 784))
LABELS = np.random.RandomState(0).randint(0, 10, 10_000).astype("uint8").tobytes()
GOOD_LABELS = _idx(0x801, (10_000,), LABELS)


def _test_folder(tmp_path):
    """A folder of valid t10k files (black images, random labels)."""
    folder = tmp_path / "fashion"
    folder.mkdir(parents=True)
    (folder / TEST_IMAGES).write_bytes(_gz(GOOD_IMAGES))
    (folder / TEST_LABELS).write_bytes(_gz(GOOD_LABELS))
    return folder


def _trailer_flipped(data):
    packed = bytearray(_gz(data))
    packed[-8] ^= 0xFF  # the CRC-32
    return bytes(packed)


CRAFTED = {  # name: (file, its bytes, the refusal)
    "wrong magic": (TEST_IMAGES, _gz(_idx(0x801, (10_000, 28, 28), bytes(7_840_000))),
                    "IDX header magic 0x00000801, dims (10000, 28, 28); accepted: Fashion-MNIST's "
                    "magic 0x00000803, dims (10000, 28, 28)"),
    "images for labels": (TEST_LABELS, _gz(GOOD_IMAGES), "IDX header magic 0x00000803, dims (10000,)"),
    "wrong dims": (TEST_IMAGES, _gz(_idx(0x803, (10_000, 27, 28), bytes(10_000 * 27 * 28))),
                   "dims (10000, 27, 28); accepted: Fashion-MNIST's magic 0x00000803, "
                   "dims (10000, 28, 28)"),
    "wrong count": (TEST_LABELS, _gz(_idx(0x801, (9_999,), LABELS[:9_999])),
                    "dims (9999,); accepted: Fashion-MNIST's magic 0x00000801, dims (10000,)"),
    "truncated": (TEST_LABELS, _gz(GOOD_LABELS)[:2000], "truncated after"),
    "no trailer": (TEST_LABELS, _gz(GOOD_LABELS)[:-8], "truncated after 10008 decompressed bytes"),
    "short data": (TEST_LABELS, _gz(GOOD_LABELS[:-1]), "only 9999 bytes of data after its header"),
    "short header": (TEST_LABELS, _gz(b"\0\0\x08"), "decompresses to 3 bytes, less than its header"),
    "a byte too many": (TEST_LABELS, _gz(GOOD_LABELS + b"\0"), "more than 10000 bytes of data"),
    "bad checksum": (TEST_LABELS, _trailer_flipped(GOOD_LABELS), "corrupt gzip data"),
    "not gzip": (TEST_LABELS, GOOD_LABELS, "corrupt gzip data (Error -3"),
    "empty": (TEST_LABELS, b"", "truncated after 0 decompressed bytes"),
    "second member": (TEST_LABELS, _gz(GOOD_LABELS) + _gz(b"x"), "data after the end of its gzip member"),
    "label 10": (TEST_LABELS, _gz(_idx(0x801, (10_000,), LABELS[:7] + b"\x0a" + LABELS[8:])),
                 "label 10 at index 7 (1 labels out of range); accepted: labels 0..9"),
    "too large": (TEST_LABELS, _gz(GOOD_LABELS) + bytes(20_000),
                  "bytes; accepted: a regular gzip file of at most 14114 bytes"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_files_are_refused_in_one_line(tmp_path, case):
    folder = _test_folder(tmp_path)
    name, content, refusal = CRAFTED[case]
    (folder / name).write_bytes(content)
    with pytest.raises(ValueError) as error:
        fashion_mnist.fashion_mnist_split(str(folder), "test")
    message = str(error.value)
    assert message.startswith(f"{folder / name}: ") and "\n" not in message
    assert refusal in message


def test_links_are_read_to_regular_files_only(tmp_path):
    folder = _test_folder(tmp_path)
    labels = folder / TEST_LABELS
    os.rename(labels, tmp_path / "elsewhere.gz")
    labels.symlink_to(tmp_path / "elsewhere.gz")  # as Debian may ship it
    images, read = _arrays(fashion_mnist.fashion_mnist_split(str(folder), "test"))
    assert read.tolist() == list(LABELS) and images.shape == (10_000, 32, 32, 3)
    for make in (lambda: labels.symlink_to("/dev/zero"), lambda: os.mkfifo(labels), labels.mkdir):
        if labels.is_dir():
            labels.rmdir()
        else:
            labels.unlink()
        make()
        with pytest.raises(ValueError, match=rf"^{labels}: not a regular file; accepted: a regular "
                           "gzip file of at most 14114 bytes"):
            fashion_mnist.fashion_mnist_split(str(folder), "test")
    labels.rmdir()
    with pytest.raises(ValueError, match=rf"^Cannot read Fashion-MNIST file {labels} \(No such file"):
        fashion_mnist.fashion_mnist_split(str(folder), "test")


# The child measures its address space after its imports (TensorFlow maps
# about 1.7 GiB, more on machines with more cores) and lowers RLIMIT_AS to
# that plus BOUND_MB, what reading a t10k folder may cost: a valid one costs
# its 7.8 MB of images and 2 MiB of buffers; a reader that trusted the header
# (1.7 TB) or inflated a bomb whole (1 GiB) would fail with MemoryError.
BOUND_MB = 64
READ_IN_BOUNDS = """
    import resource, sys
    from keras_resnet.data import fashion_mnist
    status = open("/proc/self/status").read()
    base = int(status.split("VmSize:")[1].split()[0]) << 10
    resource.setrlimit(resource.RLIMIT_AS, (base + (int(sys.argv[1]) << 20),
                                             resource.getrlimit(resource.RLIMIT_AS)[1]))
    for folder in sys.argv[2:]:
        try:
            images, labels = fashion_mnist.read_files(folder, "test")
            print("read", images.shape, labels.shape)
        except ValueError as e:
            print(e)
        except MemoryError:
            print("MemoryError")
"""


def _gzip_bomb(prefix, size):
    """A gzip member of `prefix` and `size` zero bytes, about size / 1000 bytes:
    one 1 MiB block of zeros, deflated once and repeated."""
    mib = bytes(1 << 20)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    first = deflate.compress(prefix) + deflate.flush(zlib.Z_FULL_FLUSH)
    block = deflate.compress(mib) + deflate.flush(zlib.Z_FULL_FLUSH)
    crc = zlib.crc32(prefix)
    for _ in range(size >> 20):
        crc = zlib.crc32(mib, crc)
    body = first + block * (size >> 20) + deflate.flush()
    trailer = struct.pack("<II", crc, (len(prefix) + size) & 0xFFFFFFFF)
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + body + trailer


def test_a_lying_header_and_a_gzip_bomb_are_refused_within_their_expected_size(tmp_path):
    # Both in one child: it imports TensorFlow once.
    lying, bomb, valid = (_test_folder(tmp_path / name) for name in ("lying", "bomb", "valid"))
    (lying / TEST_IMAGES).write_bytes(_gz(_idx(0x803, (1 << 31, 28, 28), bytes(784))))
    # Under the images' compressed cap (the labels' cap, 14 KB, refuses any bomb).
    packed = _gzip_bomb(GOOD_IMAGES, 1 << 30)
    assert len(packed) < 1_100_000 < fashion_mnist.max_compressed_bytes(len(GOOD_IMAGES))
    assert zlib.decompressobj(31).decompress(packed, len(GOOD_IMAGES) + 1) == GOOD_IMAGES + b"\0"
    (bomb / TEST_IMAGES).write_bytes(packed)
    outcome = run_bounded(READ_IN_BOUNDS, str(BOUND_MB), str(lying), str(bomb), str(valid),
                          memory_mb=16 << 10, timeout_s=60)
    assert outcome.returncode == 0, outcome.stderr[-3000:]
    assert outcome.stdout.splitlines() == [
        f"{lying / TEST_IMAGES}: IDX header magic 0x00000803, dims (2147483648, 28, 28); "
        "accepted: Fashion-MNIST's magic 0x00000803, dims (10000, 28, 28)",
        f"{bomb / TEST_IMAGES}: more than 7840000 bytes of data after its header (a gzip bomb, "
        "or trailing data); accepted: one complete gzip member of "
        "Fashion-MNIST's 7840016 bytes of IDX data, nothing after it",
        "read (10000, 28, 28) (10000,)",
    ]


@needs_files
def test_the_dataset_name_reads_the_files_offline_for_training_and_evaluation(real, monkeypatch):
    # No TFDS: its builder is never asked for (it would try to download).
    monkeypatch.setattr(sources, "tfds_builder", lambda *a, **k: pytest.fail("TFDS was asked"))
    source = sources.training_source("fashion_mnist", image_size=32, num_classes=10,
                                     synthetic_examples=0, synthetic_val_examples=0)
    assert (source.train.count, source.val.count, source.test.count) == (54_000, 6_000, 10_000)
    assert source.splits == real.source.splits
    test = sources.eval_split("fashion_mnist", image_size=32, num_classes=10)
    assert test.count == 10_000 and test.class_names == fashion_mnist.CLASS_NAMES
