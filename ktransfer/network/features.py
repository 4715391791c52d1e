"""Feature caching for the frozen phase: run the frozen backbone once, train heads on vectors.

While the backbone is frozen (BatchNorm in inference mode) and augmentation is off, every epoch
feeds the head the same pooled feature vector per example, so computing them once and training
the head on them gives the same model, much faster. `train --cache_features`, `tune` and
`find_lr` use it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ktransfer.config import RunConfig, declared_groups, to_flagfile
from ktransfer.data import manifest
from ktransfer.data.examples import Examples, Splits
from ktransfer.data.options import without_autotune
from ktransfer.errors import first_line
from ktransfer.modality import Feed
from ktransfer.network.classifier import BACKBONE_NAME
from ktransfer.network.heads import POOL_LAYER
from ktransfer.runs import atomic
from ktransfer.runs.progress import PassProgress
from ktransfer.tasks import task_of

log = logging.getLogger(__name__)


def why_not_cacheable(cfg: RunConfig, feed: Feed, model: keras.Model) -> str | None:
    """None when the head phase can train on cached features; otherwise the reason, for the
    log."""
    if isinstance(feature_tensor(model), list):
        return "the head reads feature maps at several strides (a detector's pyramid)"
    if not head_is_chain(model):
        return ("the head takes more than one feature vector per example (chunks of a long "
                "text are pooled after it)")
    if not cfg.train.cache_features:
        return "--cache_features is off"
    if feed.augments:
        return ("augmentation is on: cached features would freeze one view of each example, "
                "so the backbone runs every epoch (turn augmentation off to cache)")
    return None


def feature_layer_index(model: keras.Model) -> int:
    """Index in `model.layers` of the layer whose output is the feature vector the head starts
    from: the head's pooling layer, or the backbone itself when it already outputs vectors."""
    names = [layer.name for layer in model.layers]
    return names.index(POOL_LAYER) if POOL_LAYER in names else names.index(BACKBONE_NAME)


def feature_tensor(model: keras.Model) -> Any:
    """The feature vectors [B, D] in `model`'s own graph: the input of the layer after the cut
    (a nested backbone's `.output` belongs to its inner graph, not to the classifier's); a
    list of its outputs where the cut layer has several (the feature maps a detector reads)."""
    cut = model.layers[feature_layer_index(model)]
    given = cut._inbound_nodes[-1].output_tensors if cut._inbound_nodes else []
    if len(given) > 1:
        return list(given)
    return model.layers[feature_layer_index(model) + 1].input


def head_is_chain(model: keras.Model) -> bool:
    """Whether the head runs on the feature vectors alone: every layer after them reads only
    them or other head layers' outputs (a chain, or branches joined again, as a head with
    several outputs has), not another input (the chunk mask of a long text)."""
    cut = feature_layer_index(model)
    inside = {id(layer) for layer in model.layers[cut:]}
    return all(id(t._keras_history.operation) in inside
               for layer in model.layers[cut + 1:] for t in keras.tree.flatten(layer.input))


def split_classifier(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """(extractor, head) sharing `model`'s layers: extractor maps the model's inputs to
    feature vectors [B, D] (backbone + pooling), head maps [B, D] to probabilities.

    Training `head` trains `model`'s head, since the layers (and weights) are the same objects.
    """
    cut = feature_layer_index(model)
    features = feature_tensor(model)
    extractor = keras.Model(model.inputs, features, name="feature_extractor")
    if head_is_chain(model):  # the head's own graph, branches and all
        return extractor, keras.Model(features, model.outputs[0], name="head")
    inputs = keras.Input(features.shape[1:], name="features")
    x, more = inputs, []  # `more`: model inputs a head layer reads besides (a mask)
    for layer in model.layers[cut + 1:]:
        given = layer.input
        extra = ([keras.Input(t.shape[1:], dtype=t.dtype, name=f"{layer.name}_{i}")
                  for i, t in enumerate(given[1:], start=1)]
                 if isinstance(given, list | tuple) else [])
        x = layer(x, *extra)
        more += extra
    head = keras.Model([inputs, *more] if more else inputs, x, name="head")
    return extractor, head


def feature_key(cfg: RunConfig, input_info: str, data_fingerprint: str) -> list[str]:
    """What cached backbone features depend on: the data flags and the data themselves
    (`data_fingerprint`, of the split manifest), the backbone, its weights file (size and
    time), its input (`input_info`, e.g. the image size) and the modality's own flags (the
    pixel preprocessing, the tokenisation)."""
    m = cfg.model
    weights = os.stat(m.weights) if os.path.isfile(m.weights) else None
    stamp = f"{weights.st_size}:{weights.st_mtime_ns}" if weights else ""
    own = (to_flagfile(cfg.group(cfg.data.modality))
           if cfg.data.modality in declared_groups() else "")
    return [to_flagfile(cfg.data), data_fingerprint, m.backbone, m.weights, stamp,
            m.backbone_layer, m.hub_output_key, m.pooling, input_info, own]


def splits_key(cfg: RunConfig, input_info: str, splits: Splits) -> list[str]:
    """`feature_key` of `splits`, fingerprinting them here (for jobs without a split manifest
    at hand: tune, find_lr)."""
    data = manifest.describe(splits, manifest.sources(cfg.data), task_of(cfg))
    return feature_key(cfg, input_info, data["fingerprint"])


def _key(parts: list[str]) -> str:
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:16]


def compute(extractor: keras.Model, feed: Feed, examples: Examples,
            batch_size: int = 64) -> np.ndarray:
    """Feature vectors [N, D] float32 of `examples`, in order (a progress line every 15 s
    of a long pass)."""
    batches = -(-len(examples) // batch_size)
    progress = PassProgress(f"backbone features of {len(examples)} examples", batches)
    return np.asarray(extractor.predict(feed.inputs(examples, batch_size), verbose=0,
                                        callbacks=[progress]), dtype=np.float32)


def cached(extractor: keras.Model, feed: Feed, examples: Examples,
           cache_dir: str | os.PathLike | None, key_parts: list[str],
           batch_size: int = 64) -> np.ndarray:
    """`compute`, kept in `cache_dir/features-KEY.npy` (written atomically) so a resumed or
    repeated job with the same data, backbone and input reuses it. `key_parts` must name
    everything the features depend on (flags of data and backbone)."""
    if cache_dir is None:
        return compute(extractor, feed, examples, batch_size)
    path = Path(cache_dir) / f"features-{_key([*key_parts, str(len(examples))])}.npy"
    if path.is_file():
        try:
            features = np.load(path)
        except (ValueError, OSError, EOFError) as exc:  # a cache: computed again
            log.warning("features: %s is unreadable (%s); computing the features again", path,
                        first_line(exc))
            features = np.zeros((0, 0), np.float32)
        if features.shape[0] == len(examples):
            log.info("features: reusing %s", path)
            return features
    features = compute(extractor, feed, examples, batch_size)
    atomic.save_with(path, lambda p: np.save(p, features))
    return features


def feature_dataset(x: np.ndarray, labels: np.ndarray, encode: Callable[[Any], Any],
                    batch_size: int, training: bool = False, seed: int = 0,
                    repeat: bool = False) -> tf.data.Dataset:
    """Batches (feature vectors [B, D], targets as `encode` makes them from `labels`, e.g.
    one-hot [B, C]); `training` shuffles."""
    ds = tf.data.Dataset.from_tensor_slices((x, encode(tf.constant(labels))))
    if training:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        if repeat:
            ds = ds.repeat()
    return without_autotune(ds.batch(batch_size).prefetch(tf.data.AUTOTUNE))


def cached_datasets(cfg: RunConfig, extractor: keras.Model, feed: Feed, splits: Splits,
                    cache_dir: str | os.PathLike, key: list[str], repeat: bool = False
                    ) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """(training, validation) batches of (feature vectors [B, D], targets [B, outputs]) from
    the backbone features of the training and validation splits, computed once and kept in
    `cache_dir` under `key` (see `feature_key`); training batches are shuffled and, with
    `repeat`, endless."""
    started, batch = time.time(), cfg.data.batch_size
    train_x = cached(extractor, feed, splits.train, cache_dir, [*key, "train"], batch)
    val_x = cached(extractor, feed, splits.val, cache_dir, [*key, "val"], batch)
    log.info("--cache_features: backbone features of %d + %d examples computed once in %.1f s; "
             "the head trains on %d-d vectors", len(train_x), len(val_x), time.time() - started,
             train_x.shape[1])
    encode = feed.encoder(splits.train)
    train_ds = feature_dataset(train_x, splits.train.labels, encode, batch, training=True,
                               seed=cfg.train.seed, repeat=repeat)
    return train_ds, feature_dataset(val_x, splits.val.labels, encode, batch)
