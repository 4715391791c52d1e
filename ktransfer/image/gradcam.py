"""Grad-CAM (Selvaraju et al., ICCV 2017): which parts of an image a class's score rests on.

The class's log-probability is differentiated with respect to a spatial feature map of the
backbone ([B, h, w, C], by default the last one); each channel is weighted by its mean gradient,
the weighted sum is rectified and scaled to [0, 1], and the map is resized to the image. Works
for any backbone that is a Keras model with a spatial layer (keras.applications, small_cnn,
`.keras` files, keras-hub image backbones); a TF Hub module is one opaque layer that outputs
vectors, so it has no map to weigh.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from ktransfer.errors import ConfigError
from ktransfer.image.imageset import ImageSet
from ktransfer.image.pipeline import resize
from ktransfer.network.classifier import BACKBONE_NAME, backbone_input, get_backbone
from ktransfer.runs import atomic

SHOWN_SIDE = 224  # an overlay's longer side is at least this (pixels): an 8 px input is visible


def spatial_layer(backbone: keras.Model, name: str = "") -> str:
    """The backbone layer Grad-CAM weighs: `name` (checked), else the last layer whose output
    is a feature map [B, h, w, C] with h, w > 1.

    Raises ConfigError(explain_layer) when there is no such layer.
    """
    def is_map(layer: keras.layers.Layer) -> bool:
        if isinstance(layer, keras.layers.InputLayer):
            return False
        shape = getattr(layer, "output", None)
        shape = getattr(shape, "shape", None)
        return shape is not None and len(shape) == 4 and (shape[1] or 0) > 1 \
            and (shape[2] or 0) > 1

    layers = getattr(backbone, "layers", [])
    if name:
        found = [layer for layer in layers if layer.name == name]
        if not found or not is_map(found[0]):
            maps = [layer.name for layer in layers if is_map(layer)][-5:]
            raise ConfigError("explain_layer", f"{name!r} is not a layer of the backbone with a "
                              f"spatial output; the last ones that are: {', '.join(maps)}")
        return name
    for layer in reversed(layers):
        if is_map(layer):
            return layer.name
    raise ConfigError("explain_layer", f"the backbone {backbone.name!r} has no layer with a "
                      "spatial feature map [B, h, w, C] (a TF Hub module outputs vectors): "
                      "Grad-CAM needs a convolutional backbone such as keras.applications, "
                      "small_cnn or a .keras model")


class GradCAM:
    """Grad-CAM heat maps of a ktransfer image classifier.

    Args:
        model: a classifier (pixels [B, S, S, 3] in [0, 255] -> probabilities [B, C]) with a
            `backbone` sub-model.
        layer: the backbone layer to weigh; default: its last spatial feature map.

    Example:
        cam = GradCAM(model)
        maps = cam.heatmaps(pixels, class_ids)   # [N, S, S] in [0, 1]
    """

    def __init__(self, model: keras.Model, layer: str = ""):
        backbone = get_backbone(model)
        self.layer = spatial_layer(backbone, layer)
        feature = backbone.get_layer(self.layer).output
        self._cut = _cut_at(backbone, feature)
        self._maps = (keras.Model(backbone.input, [feature, backbone.output])
                      if self._cut is None else None)
        self._preprocess = backbone_input(model)
        names = [lay.name for lay in model.layers]
        self._head = model.layers[names.index(BACKBONE_NAME) + 1:]
        self.size = int(model.input_shape[1])

    def heatmaps(self, pixels: np.ndarray, class_ids: Sequence[int]) -> np.ndarray:
        """Heat maps [N, S, S] float32 in [0, 1] of `class_ids` [N] for `pixels` [N, S, S, 3]
        (model inputs, floats in [0, 255])."""
        x = tf.convert_to_tensor(pixels, tf.float32)
        inputs = self._preprocess(x, training=False) if self._preprocess is not None else x
        if self._cut is not None:  # the tape records from the map on, and no variable
            feature_map = self._cut[0](inputs, training=False)
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(feature_map)
                score = self._score(self._cut[1](feature_map, training=False), class_ids)
        else:
            assert self._maps is not None
            with tf.GradientTape() as tape:
                feature_map, y = self._maps(inputs, training=False)
                score = self._score(y, class_ids)
        grads = tf.cast(tape.gradient(score, feature_map), tf.float32)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)  # [N, 1, 1, C]
        cam = tf.nn.relu(tf.reduce_sum(weights * tf.cast(feature_map, tf.float32), axis=-1))
        cam = cam / (tf.reduce_max(cam, axis=(1, 2), keepdims=True) + 1e-12)
        cam = tf.image.resize(cam[..., None], [self.size, self.size], method="bilinear")
        return cam[..., 0].numpy()

    def _score(self, features: tf.Tensor, class_ids: Sequence[int]) -> tf.Tensor:
        """log p(class) [N] of each row's class, from the backbone's output through the head."""
        y = features
        for layer in self._head:
            y = layer(y, training=False)
        chosen = tf.gather(tf.cast(y, tf.float32), tf.constant(list(class_ids)), batch_dims=1)
        return tf.math.log(chosen + 1e-12)


def _cut_at(backbone: keras.Model, feature: keras.KerasTensor
            ) -> tuple[keras.Model, keras.layers.Layer] | None:
    """(inputs -> the feature map, the feature map -> the backbone's output): the eager
    gradient tape then records only what follows the map (recording the whole backbone, whose
    variables it watches, and backpropagating through it doubled the time: 0.8 s for 17
    MobileNetV2 images at 160 px). None when the layers after the map also read earlier
    tensors (a skip connection across it)."""
    try:
        to_map = keras.Model(backbone.input, feature)
        if feature is backbone.output:  # the backbone ends with the map
            return to_map, keras.layers.Identity()
        return to_map, keras.Model(feature, backbone.output)
    except ValueError:
        return None


def explain_images(cam: GradCAM, images: ImageSet, class_ids: Sequence[int],
                   out_dir: str | os.PathLike, batch_size: int = 32) -> list[Path]:
    """`write_overlays` for every image of `images` (resized as the model's input pipeline
    does), `batch_size` at a time."""
    names = images.names() or [f"image{i}" for i in range(len(images))]
    paths: list[Path] = []
    batch: list[np.ndarray] = []
    originals: list[np.ndarray] = []
    for image, _ in images.dataset().as_numpy_iterator():
        batch.append(resize(image, cam.size).numpy())
        originals.append(image)
        if len(batch) == batch_size or len(paths) + len(batch) == len(class_ids):
            k = len(paths)
            paths += write_overlays(cam, np.stack(batch), class_ids[k:k + len(batch)],
                                    names[k:k + len(batch)], out_dir, start=k,
                                    originals=originals)
            batch, originals = [], []
    return paths


def shown_size(height: int, width: int, least: int = SHOWN_SIDE) -> tuple[int, int]:
    """(height, width) an overlay is written at: the image's own size, scaled up (aspect kept)
    until its longer side is at least `least` pixels, so that a small input can be seen."""
    factor = max(1.0, least / max(height, width, 1))
    return round(height * factor), round(width * factor)


def overlay(pixels: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """uint8 [S, S, 3]: the image (floats or uint8 in [0, 255]) under the heat map in the jet
    colour map (blue 0 -> red 1)."""
    from matplotlib import colormaps

    colour = colormaps["jet"](np.clip(heat, 0.0, 1.0))[..., :3] * 255.0
    return np.clip((1 - alpha) * np.asarray(pixels, np.float32) + alpha * colour, 0,
                   255).astype(np.uint8)


def overlay_on(image: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """`overlay` of a heat map [S, S] (at the model's input size) on an image of any size
    [H, W, 3], the map resized to it."""
    height, width = np.shape(image)[:2]
    spread = tf.image.resize(heat[..., None], (height, width), method="bilinear").numpy()
    return overlay(image, spread[..., 0])


def write_overlays(cam: GradCAM, pixels: np.ndarray, class_ids: Sequence[int],
                   names: Sequence[str], out_dir: str | os.PathLike, start: int = 0,
                   originals: Sequence[np.ndarray] | None = None) -> list[Path]:
    """One PNG per image, `OUT_DIR/NNNN-NAME.png` (NNNN: `start` + position, NAME: the file's
    stem), of the heat map of its class in `class_ids` over it; returns the paths. `pixels`
    [B, S, S, 3] are the model's inputs; the overlay is drawn on `originals` (the images as
    read, default `pixels`) at `shown_size`."""
    out, paths = Path(out_dir), []
    maps = cam.heatmaps(pixels, class_ids)
    shown = pixels if originals is None else originals
    for i, (image, heat, name) in enumerate(zip(shown, maps, names, strict=True), start):
        size = shown_size(*np.shape(image)[:2])
        big = tf.image.resize(np.asarray(image, np.float32), size, method="bilinear").numpy()
        spread = tf.image.resize(heat[..., None], size, method="bilinear").numpy()[..., 0]
        path = out / f"{i:04d}-{Path(name).stem[:80]}.png"
        atomic.write_bytes(path, tf.io.encode_png(overlay(big, spread)).numpy())
        paths.append(path)
    return paths
