"""tf.data input pipelines: decode -> resize -> cache -> shuffle -> augment -> batch -> prefetch.

Batches are (images float32 [B, S, S, 3] in [0, 255], one-hot labels float32 [B, C]). A task
whose targets lie in the image plane (a `Geometry`: boxes, masks) has them resized and augmented
with the pixels, and encoded a batch at a time after augmentation.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import tensorflow as tf

from ktransfer.data.examples import Examples
from ktransfer.data.options import without_autotune
from ktransfer.image.augment import (
    batch_augmenter,
    random_resized_crop,
    random_resized_crop_with,
)
from ktransfer.image.augmentation import Augmentation
from ktransfer.image.catalog import TTA_VIEWS
from ktransfer.image.imageset import ImageSet
from ktransfer.modality import Feed
from ktransfer.tasks.geometry import Geometry
from ktransfer.tasks.task import Task

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
    augment: Augmentation | None = None,
    cache: str = "memory",
    cache_path: str | os.PathLike | None = None,
    shuffle_buffer: int = 2048,
    seed: int = 0,
    repeat: bool = False,
    encode: Callable[[tf.Tensor], tf.Tensor] | None = None,
    geometry: Geometry | None = None,
) -> tf.data.Dataset:
    """Batched dataset of `images`; `training` shuffles and augments; `encode` turns targets
    into what the loss takes (default: one-hot class ids); `geometry`: how the task's targets
    follow the pixels (None: a target per whole image, encoded before batching).

    `cache` is 'memory', 'disk' (at `cache_path`) or 'none'; the cache holds resized images, so
    random augmentation still differs every epoch. Image files are shuffled by name before
    they are decoded, so the first training step does not wait for a full shuffle buffer of
    decoded images; later passes over a cache are shuffled from it.
    """
    num_classes = len(images.class_names)
    if encode is None:  # class ids, one-hot
        def encode(label: tf.Tensor) -> tf.Tensor:
            return tf.one_hot(label, num_classes)
    by_name = training and images.decoded_on_read
    early = encode if geometry is None else (lambda label: geometry.resized(label, image_size))
    ds = images.dataset(shuffle_seed=seed if by_name else None).map(
        lambda image, label: (resize(image, image_size), early(label)),
        num_parallel_calls=AUTOTUNE, deterministic=True)
    ds = _cached(ds, cache, cache_path)
    if training:
        buffer = min(shuffle_buffer, max(1, len(images)))
        if not by_name:
            ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
        elif cache != "none":
            ds = reshuffle_after_first_pass(ds, buffer, seed, len(images))
        if augment is not None and augment.aug_crop:
            ds = ds.map(_crop(image_size, augment.aug_crop, seed, geometry),
                        num_parallel_calls=AUTOTUNE)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=False)
    augmenter = (batch_augmenter(augment, seed, geometry, image_size)
                 if (training and augment is not None) else None)
    if augmenter is not None:
        ds = ds.map(augmenter, num_parallel_calls=AUTOTUNE)
    if geometry is not None:
        ds = ds.map(lambda x, y: (x, encode(geometry.encoded(y, image_size))),
                    num_parallel_calls=AUTOTUNE)
    return without_autotune(ds.prefetch(AUTOTUNE))


def _crop(size: int, min_area: float, seed: int, geometry: Geometry | None) -> Any:
    """The random resized crop of one (image, target) pair; the target cropped with the image
    where it lies in the image plane."""
    if geometry is None:
        return lambda x, y: (random_resized_crop(x, size, min_area, seed), y)
    return lambda x, y: random_resized_crop_with(x, y, size, min_area, seed, geometry)


def _cached(ds: tf.data.Dataset, cache: str, cache_path: str | os.PathLike | None
            ) -> tf.data.Dataset:
    if cache == "memory":
        return ds.cache()
    if cache == "disk":
        if cache_path is None:
            raise ValueError("cache='disk' needs cache_path")
        os.makedirs(os.path.dirname(os.fspath(cache_path)) or ".", exist_ok=True)
        return ds.cache(os.fspath(cache_path))
    return ds


class _PassDone:
    """Whether one pass over a cached dataset has run to its end (so the cache is whole)."""

    def __init__(self) -> None:
        self.done = False

    def mark(self) -> bool:
        self.done = True
        return False

    def read(self) -> bool:
        return self.done


def reshuffle_after_first_pass(cached: tf.data.Dataset, buffer: int, seed: int,
                               size: int) -> tf.data.Dataset:
    """`cached` (already in a random order on its first pass) as it comes until one pass has
    read it to the end, then shuffled through a `buffer`-element buffer from the full cache.

    A shuffle buffer placed after the cache would hold back the first element until `buffer`
    images were decoded; this way the first pass streams and the later ones are reshuffled.
    A pass left unfinished (which discards a half-filled cache) keeps the streaming order.
    """
    state = _PassDone()
    zeros = tuple(tf.zeros(s.shape, s.dtype) for s in cached.element_spec)
    marker = tf.data.Dataset.from_tensors(zeros).filter(  # yields nothing, marks the end
        lambda *_: tf.numpy_function(state.mark, [], tf.bool, stateful=True))
    first = cached.concatenate(marker)
    later = cached.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)

    def pick(_: tf.Tensor) -> tf.data.Dataset:
        done = tf.numpy_function(state.read, [], tf.bool, stateful=True)
        return tf.cond(done, lambda: later, lambda: first)

    picked = tf.data.Dataset.from_tensors(0).flat_map(pick)
    return picked.apply(tf.data.experimental.assert_cardinality(size))


@dataclass
class ImageFeed(Feed):
    """Images -> (pixels float32 [B, S, S, 3] in [0, 255], targets as the task encodes them).

    Args:
        image_size: S, the model's input size.
        augment: training-time augmentation (never applied when not training).
        cache: 'memory', 'disk' (needs a cache_path per dataset) or 'none'.
        shuffle_buffer: images in the shuffle buffer when training.
    """

    image_size: int
    augment: Augmentation | None = None
    cache: str = "none"
    shuffle_buffer: int = 2048
    task: Task | None = None

    def dataset(self, examples: Examples, *, batch_size: int, training: bool = False,
                seed: int = 0, repeat: bool = False,
                cache_path: str | os.PathLike | None = None) -> tf.data.Dataset:
        assert isinstance(examples, ImageSet)
        cache = "none" if self.cache == "disk" and cache_path is None else self.cache
        return make_dataset(examples, image_size=self.image_size, batch_size=batch_size,
                            training=training, augment=self.augment if training else None,
                            cache=cache, cache_path=cache_path,
                            shuffle_buffer=self.shuffle_buffer, seed=seed, repeat=repeat,
                            encode=self.encoder(examples),
                            geometry=self.task.geometry if self.task else None)

    def inputs(self, examples: Examples, batch_size: int) -> tf.data.Dataset:
        """The pixels alone, in order (prediction: unlabelled images have no targets to
        resize or encode)."""
        assert isinstance(examples, ImageSet)
        cache = "none" if self.cache == "disk" else self.cache
        return make_dataset(examples, image_size=self.image_size, batch_size=batch_size,
                            training=False, cache=cache, encode=lambda label: label
                            ).map(lambda x, y: x)

    @property
    def augments(self) -> bool:
        return self.augment is not None and self.augment.enabled

    def views(self, tta: str) -> list[Callable[[tf.Tensor], tf.Tensor]]:
        return list(TTA_VIEWS.get(tta))
