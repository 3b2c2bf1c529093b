"""What an encoded image will decode to, read without decoding it.

Decoding costs 3 bytes a pixel and more to resize, so a small file can take
gigabytes: a PNG of 12000x12000 zeros of a few hundred KB decodes to 432 MB
of uint8 RGB, four times that as float. Serving
(keras_resnet.export.saved_model) refuses such images, and training,
evaluation and export's image folders (keras_resnet.data.folders) skip them, both
by the width x height that TensorFlow's decoder (tf.io.decode_image, with
channels=3 and expand_animations=False) will allocate, before decoding.

For JPEG, PNG, BMP and WebP that is the size the header declares. For GIF it
is not: TensorFlow 2.21 ignores the logical screen, returns the first frame
on a canvas of the largest frame width x the largest frame height (offsets
ignored), and giflib first decodes every frame at 1 byte a pixel (a 150 KB
GIF of 40 frames of 2000x2000 takes 164 MB). So a GIF's blocks are walked
(`walk_gif`) to find its frames; its size is the larger of screen and frames
(a screen that no frame fills is refused as it declares). A GIF must also
have at most MAX_GIF_BLOCKS frames and extensions, frames of at most
`max_pixels` pixels in all, and blocks that end in its trailer: a truncated or
malformed GIF is refused rather than decoded in part, as giflib would. Not
bounded beyond the file's size: giflib keeps each extension sub-block in an
allocation of ~50 bytes (25 MB for 1 MB of 1-byte sub-blocks).

Checked against TensorFlow 2.21, and not bounded beyond the header for that:
an APNG decodes to its default image only (libpng ignores the animation; a
40-frame 2000x2000 APNG decodes to one 2000x2000 image); an animated WebP is
refused by the decoder with 3 channels ("WebP Animation must be 4 channel
RGBA") before anything is allocated (with channels=0 it is decoded, and the
process then aborts: "malloc(): invalid size"), and a VP8X canvas that
differs from its bitstream's size is refused by libwebp; a BMP decodes at
its header's int32 width and |height| and is refused when shorter than its
rows (BITMAPCOREHEADER, 1- and 16-bit BMPs are refused); PNG text and ICC
chunks of 400 MB of zeros are not inflated.
"""

import numbers
from typing import NamedTuple

import tensorflow as tf

MAX_PIXELS = 40_000_000  # width x height; 40 MP is a large phone photo.
# Frames and extensions a GIF may have: the walk takes a step of ~50-130 us
# for each (0.1-0.3 s for them all), and an animation has two a frame (its
# Graphic Control Extension and image).
MAX_GIF_BLOCKS = 2048
# Sub-blocks that one step of the walk goes past (2^8): a crafted file of
# 1-byte sub-blocks costs a step per 512 bytes, not per 2.
_SKIP_DOUBLINGS = 8


def check_max_pixels(max_pixels: int) -> None:
    """Export's check of its `max_pixels` argument, before any work."""
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, numbers.Integral) or max_pixels < 1:
        raise ValueError(
            f"max_pixels must be a positive integer (width x height). Received: {max_pixels!r}"
        )


HEADER_BYTES = 30  # the last field read: WebP's, at bytes 24..30


class GifWalk(NamedTuple):
    """What walking a GIF's blocks found (`walk_gif`): scalars, int64 but
    `complete`."""

    complete: tf.Tensor  # bool: its blocks end in the trailer
    stop: tf.Tensor  # the byte the walk stopped at: the trailer, or what is not a whole block
    blocks: tf.Tensor  # frames and extensions; the walk stops at MAX_GIF_BLOCKS + 1
    frames: tf.Tensor
    height: tf.Tensor  # the largest frame height, 0 without frames
    width: tf.Tensor  # the largest frame width
    pixels: tf.Tensor  # the frames' width x height, summed


def _no_gif() -> GifWalk:
    zero = tf.constant(0, tf.int64)
    return GifWalk(tf.constant(True), zero, zero, zero, zero, zero, zero)


def walk_gif(image_bytes: tf.Tensor) -> GifWalk:
    """The frames of a GIF, from its blocks: after the header and global
    colour table, extensions (0x21, a label, sub-blocks) and images (0x2C,
    left, top, width, height, flags, a local colour table, the LZW code size,
    sub-blocks), then the trailer (0x3B). Sub-blocks are a length byte and as
    many bytes, until a length of 0.

    In graph ops, so that it lives in a SavedModel. Sub-blocks are skipped
    2^_SKIP_DOUBLINGS at a time through a table of every position's successor
    squared that often (O(n) for n bytes; ~11 bytes of memory a byte); blocks
    are walked one a step, at most MAX_GIF_BLOCKS + 1.
    """
    data = tf.io.decode_raw(image_bytes, tf.uint8)
    n = tf.size(data)
    # Byte n stands for "past the end"; reads go up to 10 bytes further.
    data = tf.concat([data, tf.zeros([11], tf.uint8)], 0)
    lengths = tf.cast(data[: n + 1], tf.int32)
    # skip[p]: 2^_SKIP_DOUBLINGS sub-blocks on from a length byte at p, or
    # the chain's end: the terminator (a zero length), or n.
    skip = tf.minimum(tf.range(n + 1) + tf.where(lengths > 0, lengths + 1, 0), n)
    for _ in range(_SKIP_DOUBLINGS):
        skip = tf.gather(skip, skip)
    n = tf.cast(n, tf.int64)

    def colour_table(flags):
        return tf.where(flags >= 128, tf.bitwise.left_shift(tf.constant(3, tf.int64), flags % 8 + 1), 0)

    def step(s):  # s: [position, in sub-blocks (0/1), blocks, frames, height, width, pixels, state]
        at, in_data = s[0], s[1] == 1
        fields = tf.cast(tf.gather(data, tf.minimum(at, n) + tf.range(10, dtype=tf.int64)), tf.int64)
        kind = tf.where(in_data, tf.constant(-1, tf.int64), fields[0])
        image, block = kind == 0x2C, (kind == 0x2C) | (kind == 0x21)
        start = tf.where(image, at + 11 + colour_table(fields[9]), tf.where(block, at + 2, at))
        to = tf.cast(tf.gather(skip, tf.minimum(start, n)), tf.int64)
        ended = (tf.gather(data, to) == 0) & (to < n)
        on = tf.cast(image, tf.int64)
        width, height = fields[5] + 256 * fields[6], fields[7] + 256 * fields[8]
        state = tf.where((block | in_data) & (to < n), tf.constant(0, tf.int64),
                         tf.where(kind == 0x3B, tf.constant(1, tf.int64), 2))  # going, trailer, failed
        return [tf.stack([
            tf.where(block | in_data, to + tf.cast(ended, tf.int64), at), 1 - tf.cast(ended, tf.int64),
            s[2] + 1 - s[1], s[3] + on, tf.maximum(s[4], height * on), tf.maximum(s[5], width * on),
            s[6] + width * height * on, state])]

    first = 13 + colour_table(tf.cast(data[10], tf.int64))
    s = tf.while_loop(lambda s: (s[7] == 0) & (s[2] <= MAX_GIF_BLOCKS), step,
                      [tf.stack([tf.minimum(first, n), 0, 0, 0, 0, 0, 0, 0])])[0]
    # The trailer, or what failed, is not a block.
    blocks = s[2] - tf.cast(s[7] != 0, tf.int64)
    return GifWalk(s[7] == 1, s[0], blocks, s[3], s[4], s[5], s[6])


def _measure(image_bytes: tf.Tensor) -> tuple[tf.Tensor, GifWalk]:
    """`header_size`, and a GIF's `walk_gif` (`_no_gif` for other images)."""
    # The first bytes, zeros past the end of a short file.
    start = tf.strings.substr(image_bytes, 0, HEADER_BYTES)
    start = tf.strings.substr(tf.strings.join([start, "\0" * HEADER_BYTES]), 0, HEADER_BYTES)
    head = tf.cast(tf.io.decode_raw(start, tf.uint8), tf.int64)

    def number(first, length, big_endian=False):
        digits = head[first : first + length]
        if big_endian:
            digits = tf.reverse(digits, [0])
        return tf.reduce_sum(digits * tf.constant([1, 1 << 8, 1 << 16, 1 << 24][:length], tf.int64))

    def starts(magic, at=0):
        return tf.equal(tf.strings.substr(start, at, len(magic)), magic)

    def absolute_int32(value):
        return tf.abs(tf.where(value >= 1 << 31, value - (1 << 32), value))

    def webp(chunk):
        return starts(b"RIFF") & starts(b"WEBP", 8) & starts(chunk, 12)

    is_gif = starts(b"GIF8")
    gif = tf.cond(is_gif, lambda: walk_gif(image_bytes), _no_gif)
    vp8l = number(21, 4)
    candidates = [  # (is this format, height, width)
        (starts(b"\x89PNG\r\n\x1a\n"), number(20, 4, True), number(16, 4, True)),
        (is_gif, tf.maximum(number(8, 2), gif.height), tf.maximum(number(6, 2), gif.width)),
        (starts(b"BM"), absolute_int32(number(22, 4)), absolute_int32(number(18, 4))),
        (webp(b"VP8X"), number(27, 3) + 1, number(24, 3) + 1),
        (webp(b"VP8L"), (vp8l // (1 << 14)) % (1 << 14) + 1, vp8l % (1 << 14) + 1),
        (webp(b"VP8 "), number(28, 2) % (1 << 14), number(26, 2) % (1 << 14)),
    ]
    size = tf.constant([-1, -1], tf.int64)
    for found, height, width in reversed(candidates):
        size = tf.where(found, tf.stack([height, width]), size)
    # decode_image's own test for JPEG; the shape comes from its SOF marker.
    size = tf.cond(
        starts(b"\xff\xd8\xff"),
        lambda: tf.cast(tf.io.extract_jpeg_shape(image_bytes)[:2], tf.int64),
        lambda: size,
    )
    return size, gif


def header_size(image_bytes: tf.Tensor) -> tf.Tensor:
    """(height, width), int64, of what tf.io.decode_image will allocate for
    one encoded image (3 channels, no animation), read without decoding it.

    JPEG: its SOF marker (tf.io.extract_jpeg_shape). PNG: IHDR's big-endian
    uint32 width and height, bytes 16..24. GIF: the larger of the logical
    screen (little-endian uint16s, bytes 6..10) and the largest frame
    (`walk_gif`). BMP: BITMAPINFOHEADER's little-endian int32s, bytes 18..26
    (a negative height stores rows top-down). WebP: the VP8X canvas (24 bits
    each, minus one, bytes 24..30), else the 14-bit fields of the lossless
    (VP8L, bytes 21..25) or lossy ("VP8 ", 26..30) bitstream. (-1, -1) for
    other bytes: JPEG XL, whose header is not read here, or no image.
    """
    return _measure(image_bytes)[0]


def _gif_refusals(gif: GifWalk, image_bytes: tf.Tensor) -> list:
    """[(refused, what the image is)] for what any GIF is refused for,
    whatever the pixel limit; the first that holds is the reason."""
    return [
        (gif.blocks > MAX_GIF_BLOCKS, tf.constant(
            f"a GIF of more than {MAX_GIF_BLOCKS} blocks (frames and extensions); at most "
            f"{MAX_GIF_BLOCKS} are accepted")),
        (~gif.complete, tf.strings.format(
            "a truncated or malformed GIF: no whole extension (0x21), image (0x2C) or trailer (0x3B) "
            "block at byte {} of {}", (gif.stop, tf.strings.length(image_bytes)))),
    ]


def check_header(image_bytes: tf.Tensor, index: tf.Tensor, max_pixels: int) -> list:
    """Assertions (InvalidArgument) that image `index` is of a known format,
    a whole GIF if one, and decodes to at most `max_pixels` pixels by its
    header (a GIF: by its frames, `walk_gif`); one line, the first refusal."""
    size, gif = _measure(image_bytes)
    height, width = size[0], size[1]
    limit = f"the limit of {int(max_pixels)} pixels (max_pixels, set at export)"
    refusals = [  # (refused, what image `index` is)
        (height < 0, tf.constant("not a JPEG, PNG, GIF, BMP or WebP image")),
        *_gif_refusals(gif, image_bytes),
        (height * width > max_pixels, tf.strings.format(
            "{}x{} (width x height) = {} pixels, above " + limit, (width, height, height * width))),
        (gif.pixels > max_pixels, tf.strings.format(
            "a GIF of {} frames of {} pixels in all (each is decoded), above " + limit,
            (gif.frames, gif.pixels))),
    ]
    refused = tf.stack([r for r, _ in refusals])
    what = tf.stack([m for _, m in refusals])[tf.argmax(tf.cast(refused, tf.int32))]
    message = tf.strings.join([tf.strings.format("image_bytes[{}] is ", [index]), what])
    return [tf.debugging.Assert(~tf.reduce_any(refused), [message])]


# Traced once per process: the header reader's ~200 ops took ~0.1 s to trace
# into each tf.data pipeline that reads a folder.
@tf.function(input_signature=[tf.TensorSpec([], tf.string)])
def declared_pixels(image_bytes: tf.Tensor) -> tf.Tensor:
    """Width x height, int64, by the header (`header_size`), for a GIF at
    least its frames' pixels in all; 1 for bytes of no known format, so that
    decoding them fails rather than the limit; the largest int64 for a GIF
    refused whatever the limit (`check_header`), so that it is not decoded."""
    size, gif = _measure(image_bytes)
    refused = tf.reduce_any([r for r, _ in _gif_refusals(gif, image_bytes)])
    return tf.where(refused, tf.int64.max, tf.maximum(tf.reduce_prod(size), gif.pixels))
