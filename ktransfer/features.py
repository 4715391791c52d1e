"""Feature caching for the frozen phase: run the frozen backbone once, train heads on vectors.

While the backbone is frozen (BatchNorm in inference mode) and augmentation is off, every epoch
feeds the head the same pooled feature vector per image, so computing them once and training the
head on them gives the same model, much faster. `train --cache_features` and `tune` use this.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import keras
import numpy as np

from ktransfer import atomic
from ktransfer.classifier import BACKBONE_NAME
from ktransfer.data.pipeline import make_dataset
from ktransfer.data.sources import ImageSet

log = logging.getLogger(__name__)
POOL_LAYER = "head_pool"


def why_not_cacheable(augment_enabled: bool) -> str | None:
    """None when features can be cached; otherwise the reason, for the log."""
    if augment_enabled:
        return ("augmentation is on: cached features would freeze one view of each image, so "
                "the backbone runs every epoch (turn augmentation off to cache)")
    return None


def feature_layer_index(model: keras.Model) -> int:
    """Index in `model.layers` of the layer whose output is the feature vector the head starts
    from: the head's pooling layer, or the backbone itself when it already outputs vectors."""
    names = [layer.name for layer in model.layers]
    return names.index(POOL_LAYER) if POOL_LAYER in names else names.index(BACKBONE_NAME)


def split_classifier(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """(extractor, head) sharing `model`'s layers: extractor maps pixels [B, S, S, 3] to
    feature vectors [B, D] (backbone + pooling), head maps [B, D] to probabilities.

    Training `head` trains `model`'s head, since the layers (and weights) are the same objects.
    """
    cut = feature_layer_index(model)
    features = model.layers[cut].output
    extractor = keras.Model(model.input, features, name="feature_extractor")
    inputs = keras.Input(features.shape[1:], name="features")
    x = inputs
    for layer in model.layers[cut + 1:]:
        x = layer(x)
    head = keras.Model(inputs, x, name="head")
    return extractor, head


def _key(parts: list[str]) -> str:
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:16]


def compute(extractor: keras.Model, images: ImageSet, batch_size: int = 64) -> np.ndarray:
    """Feature vectors [N, D] float32 of `images`, in order."""
    size = int(extractor.input_shape[1])
    ds = make_dataset(images, image_size=size, batch_size=batch_size, training=False,
                      cache="none").map(lambda x, y: x)
    return np.asarray(extractor.predict(ds, verbose=0), dtype=np.float32)


def cached(extractor: keras.Model, images: ImageSet, cache_dir: str | os.PathLike | None,
           key_parts: list[str], batch_size: int = 64) -> np.ndarray:
    """`compute`, kept in `cache_dir/features-KEY.npy` (written atomically) so a resumed or
    repeated job with the same data, backbone and size reuses it. `key_parts` must name
    everything the features depend on (flags of data and backbone)."""
    if cache_dir is None:
        return compute(extractor, images, batch_size)
    path = Path(cache_dir) / f"features-{_key([*key_parts, str(len(images))])}.npy"
    if path.is_file():
        features = np.load(path)
        if features.shape[0] == len(images):
            log.info("features: reusing %s", path)
            return features
    features = compute(extractor, images, batch_size)
    atomic.save_with(path, lambda p: np.save(open(p, "wb"), features))
    return features
