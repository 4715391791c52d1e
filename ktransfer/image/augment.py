"""Training-time augmentation, applied in the tf.data pipeline (on CPU, in parallel).

Pixels stay float32 in [0, 255] throughout; the backbone's own preprocessing runs inside the
model, so the exported model takes raw pixels.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from ktransfer.config import AugmentConfig


def random_resized_crop(image: tf.Tensor, size: int, min_area: float, seed: int) -> tf.Tensor:
    """Crops a random box (area >= `min_area`, aspect 3/4..4/3) of one image [H, W, 3]; resizes
    it back to [size, size, 3] float32."""
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int32, seed=seed),
        min_object_covered=0.0,
        aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=(min_area, 1.0),
        use_image_if_no_bounding_boxes=True,
    )
    crop = tf.slice(image, begin, crop_size)
    return tf.image.resize(crop, [size, size], antialias=True)


def batch_augmenter(cfg: AugmentConfig, seed: int) -> BatchAugmenter | None:
    """Augmentation of batches [B, H, W, 3] in [0, 255]; None when every transform is off."""
    layers: list[keras.layers.Layer] = []
    if cfg.aug_flip != "none":
        mode = "horizontal_and_vertical" if cfg.aug_flip == "both" else cfg.aug_flip
        layers.append(keras.layers.RandomFlip(mode, seed=seed))
    if cfg.aug_rotation:
        layers.append(keras.layers.RandomRotation(cfg.aug_rotation, fill_mode="reflect",
                                                  seed=seed + 1))
    if cfg.aug_zoom:
        layers.append(keras.layers.RandomZoom(cfg.aug_zoom, cfg.aug_zoom, seed=seed + 2))
    if cfg.aug_translate:
        layers.append(keras.layers.RandomTranslation(cfg.aug_translate, cfg.aug_translate,
                                                     seed=seed + 3))
    if cfg.aug_contrast:
        layers.append(keras.layers.RandomContrast(cfg.aug_contrast, value_range=(0, 255),
                                                  seed=seed + 4))
    if not layers and not cfg.aug_noise:
        return None
    return BatchAugmenter(layers, cfg.aug_noise, seed + 5)


class BatchAugmenter:
    """Keras augmentation layers (training mode) then Gaussian pixel noise; keeps [0, 255].

    Noise is added here, not with keras.layers.GaussianNoise, whose stddev is capped at 1.
    """

    def __init__(self, layers: list[keras.layers.Layer], noise_std: float, seed: int):
        self.layers = keras.Sequential(layers, name="augmentation") if layers else None
        self.noise_std = float(noise_std)
        self.seed = seed

    def __call__(self, images: tf.Tensor) -> tf.Tensor:
        if self.layers is not None:
            images = self.layers(images, training=True)
        if self.noise_std:
            images = images + tf.random.normal(tf.shape(images), stddev=self.noise_std,
                                               seed=self.seed)
        return tf.clip_by_value(images, 0.0, 255.0)
