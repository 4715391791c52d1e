"""`Geometry`: the part of a task whose targets lie in the image plane (boxes, masks).

A task with this part tells the image pipeline how its targets follow the pixels: resized with
the image, moved by the geometric augmentation layers (flips, rotation, zoom, translation,
shear: Keras' own preprocessing layers, which move boxes and masks with the pixels), and only
then encoded for the loss, a batch at a time; the random resized crop crops them with the
image (`cropped`). Augmentation that would move pixels without them (RandAugment, MixUp,
CutMix) and test-time augmentation are refused for such a task before any work. It also says
where answers lie in the image a user gave (`placed`) and draws them on it (`draw`, for
`predict --draw`).
"""

from __future__ import annotations

import abc
from typing import Any

import tensorflow as tf
from PIL import Image

# The flags of the image group that move pixels in ways that cannot move targets with them.
UNMOVED = ("aug_randaugment", "aug_mixup", "aug_cutmix")
# How boxes reach Keras' layers: pixels, x before y. Keras 3.15's RandomRotation misplaces
# "yxyx" and "rel_yxyx" boxes (it rotates them as if x came first: measured 18-20 px off on a
# 32 x 40 image, against under 0.5 px for "xyxy"; tests/test_geometry.py).
BOX_FORMAT = "xyxy"


class Geometry(abc.ABC):
    """How a task's targets follow its images (see the module docstring)."""

    has_boxes: bool = False  # whether `to_keras` gives boxes (in BOX_FORMAT)

    @abc.abstractmethod
    def resized(self, target: tf.Tensor, size: int) -> tf.Tensor:
        """One example's target for its image squashed to `size` x `size` pixels."""

    @abc.abstractmethod
    def to_keras(self, targets: tf.Tensor, size: int) -> dict[str, Any]:
        """A batch of targets as Keras' preprocessing layers take them beside "images"
        ({"bounding_boxes": {"boxes": [B, M, 4] in BOX_FORMAT, "labels": [B, M]}}, or
        {"segmentation_masks": [B, S, S, 1]}); `size`: the images' side in pixels."""

    @abc.abstractmethod
    def from_keras(self, data: dict[str, Any], size: int) -> tf.Tensor:
        """The batch of targets back from the layers' output `data` (as `to_keras` made it)."""

    @abc.abstractmethod
    def cropped(self, target: tf.Tensor, window: tf.Tensor) -> tf.Tensor:
        """One example's target for the crop `window` of its image (float32 [4]: top, left,
        height, width as fractions of the image), which is then resized to the whole image
        (--aug_crop)."""

    def encoded(self, targets: tf.Tensor, size: int) -> tf.Tensor:
        """A batch of (augmented) targets as the task's `encode` takes them, on `size`-pixel
        images (a detector matches its boxes to its anchors here); as they are by default."""
        return targets

    def placed(self, extra: dict[str, Any], width: int, height: int) -> dict[str, Any]:
        """One image's answers (the task's `extras`, in fractions of the model's input) in
        the pixels of the image as given, `width` x `height`; as they are by default."""
        return extra

    @abc.abstractmethod
    def draw(self, image: Image.Image, extra: dict[str, Any]) -> Image.Image:
        """`image` (RGB, as given) with its answers `extra` (as `placed` put them) drawn."""
