"""Images whose header lies about what they decode to, against the bounds
of keras_resnet.data.images in the SavedModel's serving_bytes
(keras_resnet.export.saved_model) and in the image folders: GIFs whose
logical screen says 1x1 while a frame is 12000x12000, of 64 frames decoded
each, of more blocks than are walked, truncated and malformed. Each is built
here (a GIF encoder of one colour, below) and sent to the exported SavedModel
in a subprocess under an address-space limit (tests/bounded.py): it must be
refused in one line naming the image, within a second and the memory bound,
and the same process must then serve a valid request as before."""

import io
import json
import logging
import os
import struct
import time

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_resnet.data import augment
from keras_resnet.data import folders
from keras_resnet.data import images
from tests.bounded import run_bounded
from tests.export.test_export import _bytes_vs_keras
from tests.export.test_export import _files
from tests.export.test_export import _photo
from tests.export.test_export import exported  # noqa: F401
from tests.export.test_export import info  # noqa: F401
from tests.export.test_export import keras_file  # noqa: F401
from tests.export.test_export import model  # noqa: F401
from tests.export.test_export import workdir  # noqa: F401

# ------------------------------------------------------- a GIF of one colour

_PALETTE = bytes([0, 0, 0, 200, 30, 40, 20, 160, 60, 10, 20, 250])  # 4 colours


def _lzw(colour, pixels):
    """GIF LZW, code size 2, of `pixels` pixels of one `colour`: code j after
    a clear stands for j pixels (the entry the decoder adds as it reads it),
    so a 12000x12000 frame is ~100 KB."""
    codes, j = [(4, 3)], 1  # (code, width in bits): a clear first
    while pixels:
        # The decoder's next free entry is 6 + (j - 2): its code width.
        width = min(12, max(3, (4 + j).bit_length()))
        if j > 4000:  # clear before the table is full
            codes.append((4, width))
            j = 1
            continue
        run = min(j, pixels)
        codes.append((colour if run == 1 else 4 + run, width))
        pixels -= run
        j += 1
    codes.append((5, min(12, max(3, (4 + j).bit_length()))))  # end of information
    out, value, bits = bytearray(), 0, 0
    for code, width in codes:  # least significant bit first
        value |= code << bits
        bits += width
        while bits >= 8:
            out.append(value & 255)
            value >>= 8
            bits -= 8
    return bytes(out + (bytes([value]) if bits else b""))


def _sub_blocks(data, size=255):
    return b"".join(bytes([len(data[i : i + size])]) + data[i : i + size]
                    for i in range(0, len(data), size)) + b"\0"


def _frame(width, height, colour=1, left=0, top=0):
    return (b"," + struct.pack("<HHHHB", left, top, width, height, 0) + b"\x02"
            + _sub_blocks(_lzw(colour, width * height)))


_GRAPHIC_CONTROL = b"\x21\xf9\x04\x00\x05\x00\x00\x00"  # a frame's delay


def _gif(screen_width, screen_height, blocks, trailer=b";"):
    return (b"GIF89a" + struct.pack("<HHBBB", screen_width, screen_height, 0x81, 0, 0)
            + _PALETTE + b"".join(blocks) + trailer)


def _decoded_shape(content):
    return list(tf.io.decode_image(content, channels=3, expand_animations=False).shape[:2])


# ----------------------------------------------------------- sizes, in process


def test_a_gif_s_size_is_its_largest_frame_as_tensorflow_decodes_it():
    # Pillow's animation stores the second frame as the 20x8 that changed, at (5, 3).
    first = np.zeros((30, 40), "uint8")
    first[:, 20:] = 1
    second = first.copy()
    second[3:11, 5:25] = 2
    frames = [Image.fromarray(f, "P") for f in (first, second)]
    for frame in frames:
        frame.putpalette(_PALETTE)
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:])
    pillow = out.getvalue()
    assert b"," + struct.pack("<HHHH", 5, 3, 20, 8) in pillow
    cases = {  # (GIF, its decoded (height, width): TensorFlow 2.21's own)
        "pillow's animation": (pillow, [30, 40]),
        "screen 1x1": (_gif(1, 1, [_frame(300, 200)]), [200, 300]),
        "frame at an offset": (_gif(1, 1, [_frame(300, 200, left=50, top=70)]), [200, 300]),
        "one frame tall, one wide": (_gif(1, 1, [_frame(10, 200), _frame(300, 5, 2)]), [200, 300]),
        "extensions, a local colour table": (_gif(1, 1, [
            _GRAPHIC_CONTROL, b"\x21\xfe\x03abc\x00",
            b"," + struct.pack("<HHHHB", 0, 0, 30, 20, 0x81) + _PALETTE + b"\x02" + _sub_blocks(_lzw(2, 600)),
        ]), [20, 30]),
    }
    for name, (content, decoded) in cases.items():
        assert _decoded_shape(content) == decoded, name
        assert bool(images.walk_gif(tf.constant(content)).complete), name
        assert images.header_size(tf.constant(content)).numpy().tolist() == decoded, name
    # A screen larger than its frames: refused as it declares (it decodes as 20x30).
    larger = _gif(500, 400, [_frame(30, 20)])
    assert _decoded_shape(larger) == [20, 30]
    assert images.header_size(tf.constant(larger)).numpy().tolist() == [400, 500]
    # Pixels decoded: every frame's, or the canvas if larger.
    animation = _gif(100, 100, [_GRAPHIC_CONTROL + _frame(100, 100, k % 3) for k in range(3)])
    assert images.declared_pixels(tf.constant(animation)).numpy() == 3 * 100 * 100
    assert images.declared_pixels(cases["one frame tall, one wide"][0]).numpy() == 300 * 200
    walk = images.walk_gif(tf.constant(animation))
    assert [int(walk.blocks), int(walk.frames), int(walk.stop)] == [6, 3, len(animation) - 1]


def test_the_walk_costs_little_for_a_crafted_mb_of_sub_blocks_or_of_blocks():
    walk = tf.function(images.walk_gif, input_signature=[tf.TensorSpec([], tf.string)])
    walk(_gif(2, 2, [_frame(2, 2)]))  # traced

    def timed(content):
        start = time.monotonic()
        result = walk(tf.constant(content))
        return time.monotonic() - start, (bool(result.complete), int(result.blocks), int(result.frames))

    sub_blocks = _gif(2, 2, [b"\x21\xfe" + b"\x01x" * 500_000 + b"\x00", _frame(2, 2)])
    assert len(sub_blocks) > 1_000_000
    seconds, result = timed(sub_blocks)
    # One step per 2^8 sub-blocks: ~0.25 s on 2 busy cores; one a sub-block, 25 s.
    assert seconds < 2 and result == (True, 2, 1), (seconds, result)
    assert images.declared_pixels(sub_blocks).numpy() == 4 and _decoded_shape(sub_blocks) == [2, 2]
    # 200000 empty comments: the walk stops after MAX_GIF_BLOCKS, ~0.2 s; all, ~15 s.
    seconds, result = timed(_gif(2, 2, [b"\x21\xfe\x00" * 200_000, _frame(2, 2)]))
    assert seconds < 2 and result == (False, images.MAX_GIF_BLOCKS + 1, 0), (seconds, result)


# ---------------------------------------------------- serving, in a subprocess

# Loads the SavedModel argv[1] and serves the image argv[3]; then, its
# address space limited to its peak so far (the baseline: TensorFlow, the
# SavedModel and a valid request, ~2.3 GiB here) + argv[2] MiB, serves [the
# image, the image argv[i]] for each i > 3, printing each refusal's line and
# seconds (exit 3 if one is served), and the valid image alone, printing its
# probabilities; then the baseline and the peak, in MiB.
_SERVE = """
    import json, resource, sys, time
    import tensorflow as tf

    def peak_mb():
        return int(open("/proc/self/status").read().split("VmPeak:")[1].split()[0]) >> 10

    serve = tf.saved_model.load(sys.argv[1]).signatures["serving_bytes"]
    good = open(sys.argv[3], "rb").read()
    serve(image_bytes=tf.constant([good]))
    baseline = peak_mb()
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    resource.setrlimit(resource.RLIMIT_AS, ((baseline + int(sys.argv[2])) << 20, hard))
    code = 0
    for path in sys.argv[4:]:
        start = time.monotonic()
        try:
            serve(image_bytes=tf.constant([good, open(path, "rb").read()]))
            print(json.dumps([path, "served", 0]))
            code = 3
        except tf.errors.InvalidArgumentError as e:
            line = [l for l in e.message.splitlines() if "assertion failed: [" in l][0]
            print(json.dumps([path, line.split("assertion failed: [", 1)[1][:-1], time.monotonic() - start]))
    print(json.dumps(serve(image_bytes=tf.constant([good]))["probabilities"].numpy().tolist()))
    print(baseline, peak_mb())
    sys.exit(code)
"""
HEADROOM_MB = 256  # what a refused request may make the server allocate, at most


def _hostile_gifs(folder):
    """{name: (path, the refusal after "image_bytes[1] is ")}; built once."""
    lying = _gif(1, 1, [_frame(12000, 12000)])
    # 64 frames of 2500x2500: each 6.25 MP, under the limit; giflib decodes
    # all 400 MP, 1 byte a pixel.
    frames = _gif(2500, 2500, [_GRAPHIC_CONTROL + _frame(2500, 2500, k % 3) for k in range(64)])
    many = _gif(2, 2, [_GRAPHIC_CONTROL + _frame(2, 2)] * 1500)  # 3000 blocks
    truncated = lying[: len(lying) // 2]
    junk = _gif(30, 20, [_frame(30, 20), b"\x99", _frame(12000, 12000)])
    assert max(len(lying), len(frames), len(many)) < 400_000
    limit = "above the limit of 40000000 pixels (max_pixels, set at export)"
    malformed = ("a truncated or malformed GIF: no whole extension (0x21), image (0x2C) or trailer (0x3B) "
                 "block at byte {} of {}")
    cases = {
        "lying": (lying, f"12000x12000 (width x height) = 144000000 pixels, {limit}"),
        "frames": (frames, f"a GIF of 64 frames of 400000000 pixels in all (each is decoded), {limit}"),
        "many": (many, "a GIF of more than 2048 blocks (frames and extensions); at most 2048 are accepted"),
        "truncated": (truncated, malformed.format(len(truncated), len(truncated))),
        "junk": (junk, malformed.format(junk.index(b"\x99"), len(junk))),
    }
    for name, (content, _) in cases.items():
        (folder / f"{name}.gif").write_bytes(content)
    return {name: (str(folder / f"{name}.gif"), line) for name, (_, line) in cases.items()}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    return _hostile_gifs(tmp_path_factory.mktemp("hostile"))


def test_serving_refuses_gifs_by_what_they_decode_to_within_memory_and_time(exported, workdir, hostile):
    report, loaded = exported
    good = _files(workdir, "*.png")[0]
    expected = loaded.signatures["serving_bytes"](image_bytes=tf.stack([tf.io.read_file(good)]))
    # Decoded, "lying" alone would take 144 MB (giflib) + 432 MB (RGB) + 1.7 GB
    # (float, to resize), "frames" 400 MB: both far above HEADROOM_MB. The
    # outer limit only keeps a runaway child off the machine.
    paths = [path for path, _ in hostile.values()]
    outcome = run_bounded(_SERVE, report.path, str(HEADROOM_MB), good, *paths, memory_mb=16 << 10,
                          timeout_s=120)
    assert outcome.returncode == 0, outcome.stderr[-3000:]
    *refusals, probabilities, peaks = outcome.stdout.strip().splitlines()
    refusals = [json.loads(line) for line in refusals]
    assert [line for _, line, _ in refusals] == [f"image_bytes[1] is {line}" for _, line in hostile.values()]
    assert max(seconds for _, _, seconds in refusals) < 1.0, refusals
    baseline, peak = map(int, peaks.split())
    assert peak - baseline < 64, (baseline, peak)  # the walks' tables: ~11 bytes a byte
    # The same process serves the next request as before.
    np.testing.assert_allclose(json.loads(probabilities), expected["probabilities"].numpy(), atol=1e-6)


def test_valid_gifs_are_served_as_keras_sees_them(exported, model, tmp_path):
    out = io.BytesIO()
    Image.fromarray(_photo(40, 52, 3)).save(out, "GIF")
    animation = io.BytesIO()  # served: its first frame
    Image.fromarray(_photo(36, 30, 5)).save(
        animation, "GIF", save_all=True, append_images=[Image.fromarray(_photo(36, 30, 6))])
    contents = [out.getvalue(), animation.getvalue(), _gif(1, 1, [_frame(300, 200, 2)])]
    paths = []
    for i, content in enumerate(contents):
        paths.append(str(tmp_path / f"{i}.gif"))
        open(paths[-1], "wb").write(content)
    assert _bytes_vs_keras(exported[1], model, paths, augment.resize_to) <= 1e-5


# ------------------------------------------------------------- image folders


def test_image_folders_skip_gifs_that_decode_above_max_pixels(tmp_path, caplog):
    for i in range(3):
        os.makedirs(tmp_path / f"class{i % 2}", exist_ok=True)
        tf.io.write_file(str(tmp_path / f"class{i % 2}" / f"{i}.png"), tf.io.encode_png(_photo(20, 24, i)))
    # GIFs named .png, as decode_image reads them whatever the name.
    lying = _gif(1, 1, [_frame(2000, 2000)])  # 4 MP decoded
    (tmp_path / "class0" / "lying.png").write_bytes(lying)
    (tmp_path / "class1" / "truncated.png").write_bytes(lying[: len(lying) // 2])
    (tmp_path / "class1" / "fine.png").write_bytes(_gif(1, 1, [_frame(30, 20)]))
    assert images.declared_pixels(lying).numpy() == 4_000_000
    assert images.declared_pixels(lying[: len(lying) // 2]).numpy() == np.iinfo(np.int64).max
    caplog.set_level(logging.INFO)
    split = folders.read_folder(str(tmp_path), str(tmp_path), max_pixels=1_000_000)
    assert split.count == 4 and split.skipped == 2
    shapes = sorted(x.shape for x, _ in split.examples.as_numpy_iterator())
    assert shapes == [(20, 24, 3)] * 3 + [(20, 30, 3)]
    skipped = [r.getMessage() for r in caplog.records if "above max_pixels=1000000" in r.getMessage()]
    assert len(skipped) == 1 and "lying.png (4000000 pixels)" in skipped[0]
    assert "truncated.png (a truncated, malformed or many-block GIF)" in skipped[0]
