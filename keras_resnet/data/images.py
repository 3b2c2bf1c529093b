"""What an encoded image declares in its header, read without decoding it.

Decoding costs 3 bytes a pixel and more to resize, so a small file can take
gigabytes: a PNG of 12000x12000 zeros of a few hundred KB decodes to 432 MB
of uint8 RGB, four times that as float. Serving
(keras_resnet.export.saved_model) refuses such images, and training,
evaluation and export's image folders (keras_resnet.data.folders) skip them, both
by the width x height that the header declares, before decoding.
"""

import numbers

import tensorflow as tf

MAX_PIXELS = 40_000_000  # width x height; 40 MP is a large phone photo.


def check_max_pixels(max_pixels: int) -> None:
    """Export's check of its `max_pixels` argument, before any work."""
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, numbers.Integral) or max_pixels < 1:
        raise ValueError(
            f"max_pixels must be a positive integer (width x height). Received: {max_pixels!r}"
        )


HEADER_BYTES = 30  # the last field read: WebP's, at bytes 24..30


def header_size(image_bytes: tf.Tensor) -> tf.Tensor:
    """(height, width), int64, that one encoded image declares in its header,
    read without decoding it.

    JPEG: its SOF marker (tf.io.extract_jpeg_shape). PNG: IHDR's big-endian
    uint32 width and height, bytes 16..24. GIF: the logical screen's
    little-endian uint16s, bytes 6..10. BMP: BITMAPINFOHEADER's little-endian
    int32s, bytes 18..26 (a negative height stores rows top-down). WebP: the
    VP8X canvas (24 bits each, minus one, bytes 24..30), else the 14-bit
    fields of the lossless (VP8L, bytes 21..25) or lossy ("VP8 ", 26..30)
    bitstream. (-1, -1) for other bytes: JPEG XL, whose header is not read
    here, or no image.
    """
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

    vp8l = number(21, 4)
    candidates = [  # (is this format, height, width)
        (starts(b"\x89PNG\r\n\x1a\n"), number(20, 4, True), number(16, 4, True)),
        (starts(b"GIF8"), number(8, 2), number(6, 2)),
        (starts(b"BM"), absolute_int32(number(22, 4)), absolute_int32(number(18, 4))),
        (webp(b"VP8X"), number(27, 3) + 1, number(24, 3) + 1),
        (webp(b"VP8L"), (vp8l // (1 << 14)) % (1 << 14) + 1, vp8l % (1 << 14) + 1),
        (webp(b"VP8 "), number(28, 2) % (1 << 14), number(26, 2) % (1 << 14)),
    ]
    size = tf.constant([-1, -1], tf.int64)
    for found, height, width in reversed(candidates):
        size = tf.where(found, tf.stack([height, width]), size)
    # decode_image's own test for JPEG; the shape comes from its SOF marker.
    return tf.cond(
        starts(b"\xff\xd8\xff"),
        lambda: tf.cast(tf.io.extract_jpeg_shape(image_bytes)[:2], tf.int64),
        lambda: size,
    )


def check_header(image_bytes: tf.Tensor, index: tf.Tensor, max_pixels: int) -> list:
    """Assertions (InvalidArgument) that image `index` is of a known format
    and has at most `max_pixels` pixels by its header."""
    size = header_size(image_bytes)
    height, width = size[0], size[1]
    return [
        tf.debugging.Assert(height >= 0, [tf.strings.format(
            "image_bytes[{}] is not a JPEG, PNG, GIF, BMP or WebP image", index)]),
        tf.debugging.Assert(height * width <= max_pixels, [tf.strings.format(
            "image_bytes[{}] is {}x{} (width x height) = {} pixels, above the "
            "limit of {} pixels (max_pixels, set at export)",
            (index, width, height, height * width, int(max_pixels)))]),
    ]


# Traced once per process: the header reader's ~200 ops took ~0.1 s to trace
# into each tf.data pipeline that reads a folder.
@tf.function(input_signature=[tf.TensorSpec([], tf.string)])
def declared_pixels(image_bytes: tf.Tensor) -> tf.Tensor:
    """Width x height, int64, by the header (`header_size`); 1 for bytes of
    no known format, so that decoding them fails rather than the limit."""
    return tf.reduce_prod(header_size(image_bytes))
