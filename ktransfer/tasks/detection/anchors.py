"""The detector's anchor boxes, the label encoder that matches boxes to them, and decoding:
keras-hub's RetinaNet parts (`AnchorGenerator`, `RetinaNetLabelEncoder`) with one fixed grid.

The grid: pyramid levels 3-5 (strides 8, 16, 32), at each cell 3 scales x 3 aspect ratios of a
base size 4 x the stride (RetinaNet's). Boxes are (ymin, xmin, ymax, xmax); the encoding is
keras-hub's `center_xywh` (offsets of the centre in anchor widths, log size ratios), which does
not depend on the image size, so anchors are kept as fractions of the image.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

LEVELS = (3, 4, 5)
STRIDES = tuple(2 ** level for level in LEVELS)
SCALES = 3
RATIOS = (0.5, 1.0, 2.0)
ANCHOR_SIZE = 4.0
PER_CELL = SCALES * len(RATIOS)
LARGEST = float(np.log(1000 / 16))  # the most a box may grow over its anchor (log), as torchvision


def generator() -> Any:
    """keras-hub's anchor generator for the grid (boxes in pixels, yxyx)."""
    from keras_hub.layers import AnchorGenerator

    return AnchorGenerator("yxyx", min_level=LEVELS[0], max_level=LEVELS[-1],
                           num_scales=SCALES, aspect_ratios=list(RATIOS),
                           anchor_size=ANCHOR_SIZE)


def anchor_grid(image_size: int) -> np.ndarray:
    """float32 [A, 4]: the anchors of a `image_size`-pixel square image, as fractions."""
    found = generator()(np.zeros((1, image_size, image_size, 3), np.float32))
    boxes = np.concatenate([keras.ops.convert_to_numpy(found[f"P{level}"]) for level in LEVELS])
    return (boxes / image_size).astype(np.float32)


@keras.saving.register_keras_serializable("ktransfer")
class AnchorBoxes(keras.layers.Layer):
    """The anchors [B, A, 4] (fractions of the image), the same for every image: the constant
    part of a detector's output that decoding reads, so that the saved model alone says where
    its boxes are. Input: any [B, A, ...] tensor (its batch size)."""

    def __init__(self, image_size: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.image_size = int(image_size)
        self.grid = anchor_grid(self.image_size)

    def call(self, like: Any) -> Any:
        zeros = keras.ops.zeros_like(like[..., :1])
        return zeros + keras.ops.convert_to_tensor(self.grid)[None]

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (*input_shape[:-1], 4)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "image_size": self.image_size}


def encoder() -> Any:
    """keras-hub's RetinaNet label encoder on the grid: an anchor whose best IoU with a true box
    is >= 0.5 is that box's (class and offsets), < 0.4 background (-1), between ignored (-2)."""
    from keras_hub.src.models.retinanet.retinanet_label_encoder import RetinaNetLabelEncoder

    return RetinaNetLabelEncoder(generator(), bounding_box_format="yxyx",
                                 encoding_format="center_xywh")


def encode_boxes(targets: tf.Tensor, size: int, label_encoder: Any) -> tf.Tensor:
    """Padded targets [B, M, 5] (class id, -1 for padding; then the box as fractions) ->
    float32 [B, A, 5]: each anchor's offsets to its box and its class (-1 background, -2
    ignored), for `size`-pixel images."""
    targets = tf.cast(targets, tf.float32)
    classes = targets[..., 0]
    boxes = tf.where(classes[..., None] >= 0, targets[..., 1:] * size, -1.0)
    shape = tf.stack([tf.shape(targets)[0], size, size, 1])
    offsets, labels = label_encoder(images=tf.zeros(shape), gt_boxes=boxes, gt_classes=classes)
    return tf.concat([tf.cast(offsets, tf.float32), tf.cast(labels, tf.float32)[..., None]],
                     axis=-1)


def input_size(outputs: Any) -> int:
    """The side (pixels) of the images a detector's outputs [N, A, W] were made from: the grid
    has PER_CELL anchors per cell of every stride, so A fixes it."""
    cells = sum(1 / stride ** 2 for stride in STRIDES)
    return int(round(float(np.sqrt(outputs.shape[1] / (PER_CELL * cells)))))


def decode_boxes(offsets: Any, anchors: Any) -> Any:
    """Boxes [..., 4] (yxyx, fractions) from `center_xywh` offsets [..., 4] on `anchors`."""
    ops = keras.ops
    height, width = anchors[..., 2] - anchors[..., 0], anchors[..., 3] - anchors[..., 1]
    cy, cx = anchors[..., 0] + height / 2, anchors[..., 1] + width / 2
    y = cy + offsets[..., 1] * height
    x = cx + offsets[..., 0] * width
    h = height * ops.exp(ops.minimum(offsets[..., 3], LARGEST))
    w = width * ops.exp(ops.minimum(offsets[..., 2], LARGEST))
    return ops.stack([y - h / 2, x - w / 2, y + h / 2, x + w / 2], axis=-1)
