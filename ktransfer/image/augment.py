"""Training-time augmentation, applied in the tf.data pipeline (on CPU, in parallel).

Pixels stay float32 in [0, 255] throughout; the backbone's own preprocessing runs inside the
model, so the exported model takes raw pixels.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from ktransfer.image.augmentation import Augmentation
from ktransfer.tasks.geometry import BOX_FORMAT, Geometry


def _crop_window(image: tf.Tensor, min_area: float, seed: int) -> tuple[tf.Tensor, tf.Tensor]:
    """(begin, size) of a random box of `image` [H, W, 3] (area >= `min_area`, aspect
    3/4..4/3), as tf.slice takes them."""
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int32, seed=seed),
        min_object_covered=0.0,
        aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=(min_area, 1.0),
        use_image_if_no_bounding_boxes=True,
    )
    return begin, crop_size


def random_resized_crop(image: tf.Tensor, size: int, min_area: float, seed: int) -> tf.Tensor:
    """Crops a random box (area >= `min_area`, aspect 3/4..4/3) of one image [H, W, 3]; resizes
    it back to [size, size, 3] float32."""
    begin, crop_size = _crop_window(image, min_area, seed)
    return tf.image.resize(tf.slice(image, begin, crop_size), [size, size], antialias=True)


def random_resized_crop_with(image: tf.Tensor, target: tf.Tensor, size: int, min_area: float,
                             seed: int, geometry: Geometry) -> tuple[tf.Tensor, tf.Tensor]:
    """`random_resized_crop` of a `size`-pixel image and the same crop of its target (the
    task's `geometry` moves it: boxes whose centre leaves the window are dropped)."""
    begin, crop_size = _crop_window(image, min_area, seed)
    window = tf.cast(tf.concat([begin[:2], crop_size[:2]], axis=0), tf.float32) / size
    cropped = tf.image.resize(tf.slice(image, begin, crop_size), [size, size], antialias=True)
    return cropped, geometry.cropped(target, window)


def batch_augmenter(cfg: Augmentation, seed: int, geometry: Geometry | None = None,
                    size: int = 0) -> BatchAugmenter | TargetAugmenter | None:
    """Augmentation of batches [B, H, W, 3] in [0, 255] (labels [B, C] mixed by MixUp and
    CutMix); None when every transform is off. With a task's `geometry`, the geometric
    layers move its targets (on `size`-pixel images) with the pixels."""
    boxes = BOX_FORMAT if geometry is not None and geometry.has_boxes else None
    geometric = geometric_layers(cfg, seed, boxes, targets=geometry is not None)
    layers = [] if geometry else geometric
    layers += photometric_layers(cfg, seed)
    mixers = mixing_layers(cfg, seed)
    if not layers and not mixers and not cfg.aug_noise and not (geometry and geometric):
        return None
    pixels = BatchAugmenter(layers, cfg.aug_noise, seed + 5, mixers)
    return TargetAugmenter(geometric, geometry, size, pixels) if geometry else pixels


def geometric_layers(cfg: Augmentation, seed: int, box_format: str | None = None,
                     targets: bool = False) -> list[keras.layers.Layer]:
    """Flips, rotation, zoom, translation and shear, as the flags ask. With `targets` in the
    image plane (told that boxes come in `box_format`, if any) the space a move uncovers is
    left black: a reflection would show copies of objects that have no box or mask."""
    extra: dict[str, Any] = {"bounding_box_format": box_format} if box_format else {}
    fill = {"fill_mode": "constant" if targets else "reflect"}
    layers: list[keras.layers.Layer] = []
    if cfg.aug_flip != "none":
        mode = "horizontal_and_vertical" if cfg.aug_flip == "both" else cfg.aug_flip
        layers.append(keras.layers.RandomFlip(mode, seed=seed, **extra))
    if cfg.aug_rotation:
        layers.append(keras.layers.RandomRotation(cfg.aug_rotation, seed=seed + 1, **fill,
                                                  **extra))
    if cfg.aug_zoom:
        layers.append(keras.layers.RandomZoom(cfg.aug_zoom, cfg.aug_zoom, seed=seed + 2,
                                              **fill, **extra))
    if cfg.aug_translate:
        layers.append(keras.layers.RandomTranslation(cfg.aug_translate, cfg.aug_translate,
                                                     seed=seed + 3, **fill, **extra))
    if cfg.aug_shear:
        layers.append(keras.layers.RandomShear(cfg.aug_shear, cfg.aug_shear, seed=seed + 6,
                                               **fill, **extra))
    return layers


def photometric_layers(cfg: Augmentation, seed: int) -> list[keras.layers.Layer]:
    """Contrast, colour jitter, RandAugment and random erasing, as the flags ask."""
    layers: list[keras.layers.Layer] = []
    if cfg.aug_contrast:
        layers.append(keras.layers.RandomContrast(cfg.aug_contrast, value_range=(0, 255),
                                                  seed=seed + 4))
    if cfg.aug_color_jitter:
        s = cfg.aug_color_jitter
        layers.append(keras.layers.RandomColorJitter(
            value_range=(0, 255), brightness_factor=s / 2, contrast_factor=s,
            saturation_factor=(0.5 - s / 2, 0.5 + s / 2), seed=seed + 7))
    if cfg.aug_randaugment:
        n, m = cfg.randaugment()
        layers.append(keras.layers.RandAugment(value_range=(0, 255), num_ops=n, factor=m / 10,
                                               seed=seed + 8))
    if cfg.aug_erasing:
        layers.append(keras.layers.RandomErasing(factor=(cfg.aug_erasing, cfg.aug_erasing),
                                                 value_range=(0, 255), seed=seed + 9))
    return layers


def mixing_layers(cfg: Augmentation, seed: int) -> list[keras.layers.Layer]:
    """MixUp and CutMix, which mix pairs of images and their labels."""
    layers: list[keras.layers.Layer] = []
    if cfg.aug_mixup:
        layers.append(keras.layers.MixUp(alpha=cfg.aug_mixup, seed=seed + 10))
    if cfg.aug_cutmix:
        layers.append(keras.layers.CutMix(factor=cfg.aug_cutmix, seed=seed + 11))
    return layers


class BatchAugmenter:
    """Keras augmentation layers (training mode), then Gaussian pixel noise, then one of the
    label-mixing layers (MixUp or CutMix, chosen per batch); keeps pixels in [0, 255].

    Noise is added here, not with keras.layers.GaussianNoise, whose stddev is capped at 1.
    Mixed labels are soft: the loss takes them as they are, and training accuracy counts the
    larger share as the class.
    """

    def __init__(self, layers: list[keras.layers.Layer], noise_std: float, seed: int,
                 mixers: list[keras.layers.Layer] | None = None):
        self.layers = keras.Sequential(layers, name="augmentation") if layers else None
        self.noise_std = float(noise_std)
        self.seed = seed
        self.mixers = list(mixers or [])

    def __call__(self, images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        if self.layers is not None:
            images = self.layers(images, training=True)
        if self.noise_std:
            images = images + tf.random.normal(tf.shape(images), stddev=self.noise_std,
                                               seed=self.seed)
        images = tf.clip_by_value(images, 0.0, 255.0)
        if not self.mixers:
            return images, labels
        branches = [_mixing(layer, images, labels) for layer in self.mixers]
        pick = tf.random.uniform([], maxval=len(branches), dtype=tf.int32, seed=self.seed + 1)
        return tf.switch_case(pick, branches)


def _mixing(layer: keras.layers.Layer, images: tf.Tensor, labels: tf.Tensor):
    """A branch for tf.switch_case: `layer` applied to the batch, as (images, labels)."""
    def branch() -> tuple[tf.Tensor, tf.Tensor]:
        mixed = layer({"images": images, "labels": labels}, training=True)
        return tf.cast(mixed["images"], images.dtype), tf.cast(mixed["labels"], labels.dtype)
    return branch


class TargetAugmenter:
    """The geometric layers applied to images and a task's targets together (Keras' layers
    move boxes and masks with the pixels), then the pixel-only augmentation `pixels`."""

    def __init__(self, layers: list[keras.layers.Layer], geometry: Geometry, size: int,
                 pixels: BatchAugmenter):
        self.layers, self.geometry, self.size, self.pixels = layers, geometry, size, pixels

    def __call__(self, images: tf.Tensor, targets: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        data = {"images": images, **self.geometry.to_keras(targets, self.size)}
        for layer in self.layers:
            data = layer(data, training=True)
        moved = self.geometry.from_keras(data, self.size)
        return self.pixels(tf.cast(data["images"], images.dtype), moved)
