"""An image's size read from its header inside a TensorFlow graph, before it is decoded, so
that a SavedModel refuses a decompression bomb (a small file of a huge image) instead of
decoding it: one 430 kB PNG of 400 million pixels took 6.4 GB in `tf.io.decode_image`."""

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
         lambda: _little_endian(padded, 6, 2) * _little_endian(padded, 8, 2)),
        (tf.equal(tf.strings.substr(padded, 0, 2), b"BM"),
         lambda: _little_endian(padded, 18, 4) * _little_endian(padded, 22, 4)),
    ], default=lambda: tf.constant(0, tf.int64), exclusive=True)


def check_size(data: tf.Tensor) -> tf.Tensor:
    """An op that fails (InvalidArgumentError) when `data` holds more than MAX_PIXELS pixels."""
    return tf.debugging.assert_less_equal(
        header_pixels(data), tf.constant(MAX_PIXELS, tf.int64),
        message=f"image larger than {MAX_PIXELS // 10**6} million pixels; refused before "
                "decoding")
