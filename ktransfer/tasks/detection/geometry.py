"""How a detector's boxes follow the pixels: kept as fractions through the resize, handed to
Keras' geometric layers in pixels (x first), dropped when a move leaves less than a sliver of
them in the image, and matched to the anchors after augmentation."""

from __future__ import annotations

import functools
from typing import Any

import tensorflow as tf

from ktransfer.tasks.detection.anchors import encode_boxes, encoder
from ktransfer.tasks.geometry import Geometry

SLIVER = 1e-3  # a box thinner than this (fraction of the image) after a move is dropped


class BoxGeometry(Geometry):
    """Padded boxes [M, 5] per image (class id, -1 for padding; ymin, xmin, ymax, xmax)."""

    has_boxes = True

    def resized(self, target: tf.Tensor, size: int) -> tf.Tensor:
        return target  # fractions stay where they are when the image is squashed

    def to_keras(self, targets: tf.Tensor, size: int) -> dict[str, Any]:
        xyxy = tf.gather(targets, [2, 1, 4, 3], axis=-1) * size
        return {"bounding_boxes": {"boxes": xyxy, "labels": tf.cast(targets[..., 0],
                                                                    tf.int32)}}

    def from_keras(self, data: dict[str, Any], size: int) -> tf.Tensor:
        found = data["bounding_boxes"]
        boxes = tf.gather(tf.clip_by_value(tf.cast(found["boxes"], tf.float32) / size, 0.0,
                                           1.0), [1, 0, 3, 2], axis=-1)
        labels = tf.cast(found["labels"], tf.float32)
        kept = ((boxes[..., 2] - boxes[..., 0] > SLIVER)
                & (boxes[..., 3] - boxes[..., 1] > SLIVER) & (labels >= 0))
        return tf.concat([tf.where(kept, labels, -1.0)[..., None],
                          tf.where(kept[..., None], boxes, -1.0)], axis=-1)

    def encoded(self, targets: tf.Tensor, size: int) -> tf.Tensor:
        return encode_boxes(targets, size, self._encoder)

    @functools.cached_property
    def _encoder(self) -> Any:
        return encoder()


GEOMETRY = BoxGeometry()
