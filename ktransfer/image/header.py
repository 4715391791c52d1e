"""An image's size read from its header inside a TensorFlow graph, before it is decoded, so
that a SavedModel refuses a decompression bomb (a small file of a huge image) instead of
decoding it: one 430 kB PNG of 400 million pixels took 6.4 GB in `tf.io.decode_image`.

A GIF's logical screen says nothing of its frames: TensorFlow's decoder (giflib's DGifSlurp)
holds every frame at the frame's own size, so an 857 kB GIF with a 1x1 screen and 8 frames of
12000x12000 took 3.0 GB. For GIFs the count is the larger of the screen and the sum of every
frame's width x height, found by walking the file's blocks (`gif_frame_pixels`)."""

from __future__ import annotations

import tensorflow as tf

MAX_PIXELS = 100_000_000  # 10k x 10k; a larger image is refused before it is decoded
_PAD = b"\0" * 32  # headers are read at fixed offsets: short inputs read as zeros


def _bytes(data: tf.Tensor, offset: int, n: int) -> tf.Tensor:
    return tf.cast(tf.io.decode_raw(tf.strings.substr(data, offset, n), tf.uint8), tf.int64)


def _big_endian(data: tf.Tensor, offset: int) -> tf.Tensor:
    b = _bytes(data, offset, 4)
    return ((b[0] * 256 + b[1]) * 256 + b[2]) * 256 + b[3]


def _little_endian(data: tf.Tensor, offset: int, n: int) -> tf.Tensor:
    b = _bytes(data, offset, n)
    value = tf.reduce_sum(b * tf.constant([256**i for i in range(n)], tf.int64))
    if n == 4:  # BMP sizes are signed (a negative height is a top-down image)
        value = tf.where(value >= 2**31, 2**32 - value, value)
    return value


def header_pixels(data: tf.Tensor) -> tf.Tensor:
    """Width x height (int64 scalar) of an encoded JPEG, PNG, GIF or BMP string, from its
    header; 0 for anything else (the decoder then says what is wrong)."""
    padded = data + _PAD
    magic = tf.strings.substr(padded, 0, 4)

    def jpeg() -> tf.Tensor:
        shape = tf.cast(tf.image.extract_jpeg_shape(data), tf.int64)
        return shape[0] * shape[1]

    return tf.case([
        (tf.equal(tf.strings.substr(padded, 0, 2), b"\xff\xd8"), jpeg),
        (tf.equal(magic, b"\x89PNG"), lambda: _big_endian(padded, 16) * _big_endian(padded, 20)),
        (tf.equal(tf.strings.substr(padded, 0, 3), b"GIF"),
         lambda: tf.maximum(_little_endian(padded, 6, 2) * _little_endian(padded, 8, 2),
                            gif_frame_pixels(data))),
        (tf.equal(tf.strings.substr(padded, 0, 2), b"BM"),
         lambda: _little_endian(padded, 18, 4) * _little_endian(padded, 22, 4)),
    ], default=lambda: tf.constant(0, tf.int64), exclusive=True)


def _byte_at(data: tf.Tensor, pos: tf.Tensor) -> tf.Tensor:
    return tf.cast(tf.io.decode_raw(tf.strings.substr(data, pos, 1), tf.uint8)[0], tf.int64)


def _word_at(data: tf.Tensor, pos: tf.Tensor) -> tf.Tensor:
    b = tf.cast(tf.io.decode_raw(tf.strings.substr(data, pos, 2), tf.uint8), tf.int64)
    return b[0] + 256 * b[1]


def _table(packed: tf.Tensor) -> tf.Tensor:
    """Bytes of the colour table a GIF packed-fields byte announces (0 without one)."""
    return tf.where(packed >= 128, 3 * tf.bitwise.left_shift(tf.constant(2, tf.int64),
                                                             packed % 8), 0)


def gif_frame_pixels(data: tf.Tensor, hops: int = 16) -> tf.Tensor:
    """The sum of width x height (int64 scalar) over the image descriptors of a GIF, found by
    walking its blocks (GIF89a: header, screen, colour table, then extensions and images, each
    followed by length-prefixed sub-blocks of at most 255 bytes, up to the trailer 0x3B). Each
    loop step reads one block or up to `hops` sub-blocks; a malformed file stops the walk where
    it breaks (the decoder then says what is wrong). About 0.1 s per MB."""
    padded = data + _PAD
    size = tf.cast(tf.strings.length(data, unit="BYTE"), tf.int64)
    start = tf.constant(13, tf.int64) + _table(_byte_at(padded, 10))

    def sub_blocks(pos, in_blocks):
        for _ in range(hops):  # unrolled: a loop step costs more than these reads
            kind = _byte_at(padded, tf.minimum(pos, size))  # past the end: a padding zero
            pos = tf.where(in_blocks, pos + kind + 1, pos)
            in_blocks = tf.logical_and(in_blocks, kind != 0)
        return pos, in_blocks

    def block(pos, total):
        kind = _byte_at(padded, pos)
        image = pos + 10 + _table(_byte_at(padded, pos + 9)) + 1  # + LZW minimum code size
        frame = _word_at(padded, pos + 5) * _word_at(padded, pos + 7)
        yes, no = tf.constant(True), tf.constant(False)
        return tf.case([(tf.equal(kind, 0x2C), lambda: (image, total + frame, yes, no)),
                        (tf.equal(kind, 0x21), lambda: (pos + 2, total, yes, no))],
                       default=lambda: (pos, total, no, yes))

    def step(pos, total, in_blocks, done):
        def skip():
            after, still = sub_blocks(pos, in_blocks)
            return after, total, still, done

        return tf.cond(in_blocks, skip, lambda: block(pos, total))

    _, total, _, _ = tf.while_loop(
        lambda pos, total, in_blocks, done: tf.logical_and(pos < size, tf.logical_not(done)),
        step, (start, tf.constant(0, tf.int64), tf.constant(False), tf.constant(False)))
    return total


def check_size(data: tf.Tensor) -> tf.Tensor:
    """An op that fails (InvalidArgumentError) when `data` holds more than MAX_PIXELS pixels."""
    return tf.debugging.assert_less_equal(
        header_pixels(data), tf.constant(MAX_PIXELS, tf.int64),
        message=f"image larger than {MAX_PIXELS // 10**6} million pixels; refused before "
                "decoding")
