"""tf.data input pipelines: decode -> resize -> cache -> shuffle -> augment -> batch -> prefetch.

Batches are (images float32 [B, S, S, 3] in [0, 255], one-hot labels float32 [B, C]).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import tensorflow as tf

from ktransfer.config import AugmentConfig
from ktransfer.data.examples import Examples
from ktransfer.image.augment import batch_augmenter, random_resized_crop
from ktransfer.image.imageset import ImageSet
from ktransfer.image.tta import TTA_VIEWS
from ktransfer.modality import Feed

AUTOTUNE = tf.data.AUTOTUNE


def resize(image: tf.Tensor, size: int) -> tf.Tensor:
    """uint8 [H, W, 3], any size -> float32 [size, size, 3] in [0, 255] (squashed, antialiased)."""
    image = tf.image.resize(tf.cast(image, tf.float32), [size, size], antialias=True)
    return tf.clip_by_value(image, 0.0, 255.0)


def make_dataset(
    images: ImageSet,
    *,
    image_size: int,
    batch_size: int,
    training: bool,
    augment: AugmentConfig | None = None,
    cache: str = "memory",
    cache_path: str | os.PathLike | None = None,
    shuffle_buffer: int = 2048,
    seed: int = 0,
    repeat: bool = False,
) -> tf.data.Dataset:
    """Batched dataset of `images`; `training` shuffles and augments.

    `cache` is 'memory', 'disk' (at `cache_path`) or 'none'; the cache holds resized images, so
    random augmentation still differs every epoch.
    """
    num_classes = len(images.class_names)
    ds = images.dataset().map(
        lambda image, label: (resize(image, image_size), tf.one_hot(label, num_classes)),
        num_parallel_calls=AUTOTUNE, deterministic=True)
    if cache == "memory":
        ds = ds.cache()
    elif cache == "disk":
        if cache_path is None:
            raise ValueError("cache='disk' needs cache_path")
        os.makedirs(os.path.dirname(os.fspath(cache_path)) or ".", exist_ok=True)
        ds = ds.cache(os.fspath(cache_path))
    if training:
        ds = ds.shuffle(min(shuffle_buffer, max(1, len(images))), seed=seed,
                        reshuffle_each_iteration=True)
        if augment is not None and augment.aug_crop:
            ds = ds.map(lambda x, y: (random_resized_crop(x, image_size, augment.aug_crop, seed),
                                      y), num_parallel_calls=AUTOTUNE)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=False)
    augmenter = batch_augmenter(augment, seed) if (training and augment is not None) else None
    if augmenter is not None:
        ds = ds.map(augmenter, num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)


@dataclass
class ImageFeed(Feed):
    """Images -> (pixels float32 [B, S, S, 3] in [0, 255], one-hot labels).

    Args:
        image_size: S, the model's input size.
        augment: training-time augmentation (never applied when not training).
        cache: 'memory', 'disk' (needs a cache_path per dataset) or 'none'.
        shuffle_buffer: images in the shuffle buffer when training.
    """

    image_size: int
    augment: AugmentConfig | None = None
    cache: str = "none"
    shuffle_buffer: int = 2048

    def dataset(self, examples: Examples, *, batch_size: int, training: bool = False,
                seed: int = 0, repeat: bool = False,
                cache_path: str | os.PathLike | None = None) -> tf.data.Dataset:
        assert isinstance(examples, ImageSet)
        cache = "none" if self.cache == "disk" and cache_path is None else self.cache
        return make_dataset(examples, image_size=self.image_size, batch_size=batch_size,
                            training=training, augment=self.augment if training else None,
                            cache=cache, cache_path=cache_path,
                            shuffle_buffer=self.shuffle_buffer, seed=seed, repeat=repeat)

    def views(self, tta: str) -> list[Callable[[tf.Tensor], tf.Tensor]]:
        return list(TTA_VIEWS.get(tta))
