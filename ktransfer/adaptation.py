"""Domain adaptation with unlabelled target images, DAN-style (Long et al. 2015).

Each training step takes a labelled source batch and an unlabelled target batch through the same
network; the loss is the source cross-entropy plus `mmd_weight` x MMD^2 between source and target
features after the backbone (pooled) and after every hidden head layer. The weight can ramp up
as 2 / (1 + exp(-10 p)) - 1 over training progress p, as in DANN/DAN.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from ktransfer.config import AdaptConfig
from ktransfer.features import feature_layer_index
from ktransfer.mmd import MMDLoss, mmd


@keras.saving.register_keras_serializable(package="ktransfer")
class SplitBatch(keras.layers.Layer):
    """[joint [n+m, ...], source [n, ...]] -> (joint[:n], joint[n:])."""

    def call(self, inputs):
        joint, source = inputs
        n = keras.ops.shape(source)[0]
        return joint[:n], joint[n:]

    def compute_output_shape(self, input_shapes):
        return input_shapes[0], input_shapes[0]


def dan_model(model: keras.Model, cfg: AdaptConfig) -> tuple[keras.Model, list[MMDLoss]]:
    """A two-input training model {"source", "target"} -> source probabilities that shares all
    layers (and weights) with `model` and adds MMD losses between the two domains' features.

    Source and target go through the network as one joint batch, as in DAN: BatchNorm sees
    (and its moving statistics average) both domains, so training and inference agree.
    """
    cut = feature_layer_index(model)
    extractor = keras.Model(model.input, model.layers[cut].output, name="features")
    size = model.input_shape[1:]
    source = keras.Input(size, name="source")
    target = keras.Input(size, name="target")
    joint = extractor(keras.layers.Concatenate(axis=0, name="joint")([source, target]))
    losses = []

    def align(x, name):
        """Adds the MMD between the two halves of `x`; returns `x` (through the layer, so the
        loss stays in the graph)."""
        s, t = SplitBatch(name=f"split_{name}")([x, source])
        layer = MMDLoss(cfg.mmd_weight, cfg.mmd_estimator, name=name)
        losses.append(layer)
        return keras.layers.Concatenate(axis=0, name=f"rejoin_{name}")([layer([s, t]), t])

    x = align(joint, "mmd_features")
    for layer in model.layers[cut + 1:]:
        x = layer(x)
        if layer.name.startswith("head_dense"):
            x = align(x, f"mmd_{layer.name}")
    probabilities, _ = SplitBatch(name="split_output")([x, source])
    return keras.Model({"source": source, "target": target}, probabilities, name="dan"), losses


def paired(source_ds: tf.data.Dataset, target_ds: tf.data.Dataset) -> tf.data.Dataset:
    """((source images, target images), source labels) batches; the target set repeats."""
    target = target_ds.map(lambda x, y: x).repeat()

    def join(pair, t):
        (x, y) = pair
        batch = tf.minimum(tf.shape(x)[0], tf.shape(t)[0])
        return {"source": x, "target": t[:batch]}, y

    return tf.data.Dataset.zip((source_ds, target)).map(join)


class MMDRampUp(keras.callbacks.Callback):
    """Sets each MMD layer's weight to `weight * (2 / (1 + exp(-10 p)) - 1)`, p the fraction of
    the phase's steps done (or keeps `weight` when `ramp` is False)."""

    def __init__(self, layers: list[MMDLoss], weight: float, total_steps: int, ramp: bool,
                 steps_done: int = 0):
        super().__init__()
        self.layers, self.weight, self.ramp = layers, weight, ramp
        self.total_steps = max(1, total_steps)
        self.step = steps_done

    def on_train_batch_begin(self, batch, logs=None):
        p = min(1.0, self.step / self.total_steps)
        value = self.weight * (2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0) if self.ramp \
            else self.weight
        for layer in self.layers:
            layer.weight.assign(value)
        self.step += 1


def domain_mmd(model: keras.Model, source_ds: tf.data.Dataset, target_ds: tf.data.Dataset,
               max_images: int = 512) -> float:
    """Biased MMD^2 between up to `max_images` source and target feature vectors (after the
    backbone, pooled): how far apart the model sees the two domains."""
    extractor = keras.Model(model.input, model.layers[feature_layer_index(model)].output)

    def features(ds):
        out, n = [], 0
        for x, _ in ds:
            out.append(np.asarray(extractor(x, training=False)))
            n += len(out[-1])
            if n >= max_images:
                break
        return np.concatenate(out)[:max_images]

    return float(mmd(features(source_ds), features(target_ds), "biased"))
