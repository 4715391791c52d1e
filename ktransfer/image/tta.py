"""Test-time augmentation: the views of an image batch whose predicted probabilities are
averaged by `evaluate --tta` and `predict --tta`.

Each view maps pixels float32 [B, S, S, 3] to pixels of the same shape, so the model and its
preprocessing run unchanged. Crops keep 87.5 % of the side (the usual centre-crop ratio) and are
resized back to S.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

View = Callable[[tf.Tensor], tf.Tensor]
CROP_FRACTION = 0.875


def _identity(images: tf.Tensor) -> tf.Tensor:
    return images


def _crop(where: str) -> View:
    """The crop at `where` (center, top_left, top_right, bottom_left, bottom_right)."""
    def view(images: tf.Tensor) -> tf.Tensor:
        size = int(images.shape[1])
        side = max(1, round(size * CROP_FRACTION))
        far = size - side
        top = {"center": far // 2}.get(where, 0 if where.startswith("top") else far)
        left = {"center": far // 2}.get(where, 0 if where.endswith("left") else far)
        crop = images[:, top:top + side, left:left + side, :]
        return tf.image.resize(crop, [size, size], antialias=True)
    return view


def _flipped(view: View) -> View:
    return lambda images: tf.image.flip_left_right(view(images))


_CROPS = [_crop(w) for w in ("center", "top_left", "top_right", "bottom_left", "bottom_right")]

# The registry's entries (image.catalog.TTA_VIEWS): the views whose probabilities are averaged.
NONE = [_identity]
FLIP = [_identity, tf.image.flip_left_right]
CROPS = _CROPS
FLIP_CROPS = _CROPS + [_flipped(v) for v in _CROPS]
