"""`ImageSet`: the labelled images of one split, and how their pixels are read (files,
in-memory arrays or TFDS records), as uint8 RGB [H, W, 3] of any size."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from ktransfer.data import tfds
from ktransfer.data.examples import Examples


@dataclass(frozen=True)
class ImageSet(Examples):
    """The labelled images of one split.

    Exactly one of `files` (paths of encoded images), `images` (uint8 array [N, H, W, 3]) or
    `tfds_split` (a TFDS split whose records are selected by `tfds_index`) holds the pixels.
    `labels` are the targets, in the form of `task` (see `Examples`).
    """

    files: np.ndarray | None = None
    images: np.ndarray | None = None
    tfds_split: tuple[str, str, str, str] | None = None  # (name, split, data_dir, image key)
    tfds_index: np.ndarray | None = None

    def names(self) -> list[str] | None:
        return None if self.files is None else [str(f) for f in self.files]

    @property
    def decoded_on_read(self) -> bool:
        """Whether reading decodes files, so that the order can be shuffled before decoding."""
        return self.files is not None

    def dataset(self, shuffle_seed: int | None = None) -> tf.data.Dataset:
        """(image uint8 [H, W, 3], label int32) pairs, in order; images not yet resized.

        With `shuffle_seed` (files only), the file names are shuffled, afresh on every pass,
        before they are decoded.
        """
        labels = tf.data.Dataset.from_tensor_slices(self.labels)
        if self.images is not None:
            return tf.data.Dataset.zip(tf.data.Dataset.from_tensor_slices(self.images), labels)
        if self.files is not None:
            pairs = tf.data.Dataset.zip(tf.data.Dataset.from_tensor_slices(self.files.astype(str)),
                                        labels)
            if shuffle_seed is not None:
                pairs = pairs.shuffle(len(self.files), seed=shuffle_seed,
                                      reshuffle_each_iteration=True)
            return pairs.map(lambda path, label: (decode_file(path), label),
                             num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return _tfds_images(self)


def decode_file(path: tf.Tensor | str) -> tf.Tensor:
    """The pixels of the image file at `path`, uint8 [H, W, 3], decoded as every reader of
    image files here decodes them (grey and RGBA become RGB; a GIF's first frame)."""
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    return tf.ensure_shape(image, [None, None, 3])


def _tfds_images(images: ImageSet) -> tf.data.Dataset:
    assert images.tfds_split is not None
    name, split, data_dir, image_key = images.tfds_split
    index = images.tfds_index
    assert index is not None
    records = tfds.builder(name, data_dir, "data").as_dataset(split=split, shuffle_files=False)
    # Keep the wanted records (by position in the split) with their targets (a class id, or a
    # label set), looked up by the record's row in `images`.
    rows = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(index), tf.range(len(index), dtype=tf.int64)), default_value=-1)
    targets = tf.constant(images.labels)
    ds = records.enumerate().map(lambda i, r: (r[image_key], rows.lookup(i)))
    ds = ds.filter(lambda image, row: row >= 0)
    return ds.map(lambda image, row: (_to_rgb(image), tf.gather(targets, row)))


def _to_rgb(image: tf.Tensor) -> tf.Tensor:
    """Grey [H, W] / [H, W, 1] or RGBA [H, W, 4] -> RGB [H, W, 3]."""
    image = tf.convert_to_tensor(image)
    if image.shape.rank == 2:
        image = image[..., None]
    if image.shape[-1] is None:
        image = tf.cond(tf.shape(image)[-1] == 1, lambda: tf.tile(image, [1, 1, 3]),
                        lambda: image[..., :3])
    else:
        image = tf.tile(image, [1, 1, 3]) if image.shape[-1] == 1 else image[..., :3]
    return tf.ensure_shape(image, [None, None, 3])
