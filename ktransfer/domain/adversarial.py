"""Conditional adversarial domain adaptation (CDAN+E, Long et al., NeurIPS 2018).

A small discriminator learns to tell source from target by the multilinear map of each
example's features f [d] and predicted probabilities g [C] (their outer product, or a fixed
random projection of it to 1,024 dimensions when d x C is larger); a gradient-reversal layer
between the features and the discriminator makes the network learn the opposite: features and
predictions whose joint distribution the discriminator cannot tell apart. "+E" weights each
example by 1 + exp(-entropy of g), so confident predictions count more.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import ops

RANDOM_DIM = 1024  # the random multilinear map's size, when d x C exceeds MAX_OUTER
MAX_OUTER = 4096


@tf.custom_gradient
def reverse_gradient(x):
    """Identity forward; the gradient's sign flipped backward."""
    return tf.identity(x), lambda dy: -dy


@keras.saving.register_keras_serializable(package="ktransfer")
class ConditionalDomainLoss(keras.layers.Layer):
    """Takes [source_features [n, d], target_features [m, d], source_probabilities [n, C],
    target_probabilities [m, C]]; during training adds `weight` x the entropy-weighted binary
    cross-entropy of a discriminator on the (reversed) multilinear maps, and returns the source
    features. `weight` is a non-trainable variable (ramped like the MMD weight).

    Args:
        weight: the loss weight at full ramp.
        feature_dim, num_classes: d and C (the discriminator is built from them up front, so
            a resumed run can load its weights before any call).
        hidden: units of the discriminator's two hidden layers.
        seed: of the random multilinear map.
    """

    def __init__(self, weight: float = 1.0, feature_dim: int = 1, num_classes: int = 2,
                 hidden: int = 256, seed: int = 0, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.initial_weight, self.hidden, self.seed = float(weight), int(hidden), int(seed)
        self.feature_dim, self.num_classes = int(feature_dim), int(num_classes)
        self.random_map = self.feature_dim * self.num_classes > MAX_OUTER
        width = RANDOM_DIM if self.random_map else self.feature_dim * self.num_classes
        rng = np.random.default_rng(seed)
        self.map_f = (rng.normal(size=(self.feature_dim, RANDOM_DIM)).astype("float32")
                      if self.random_map else None)
        self.map_g = (rng.normal(size=(self.num_classes, RANDOM_DIM)).astype("float32")
                      if self.random_map else None)
        self.discriminator = [keras.layers.Dense(hidden, activation="relu", dtype="float32"),
                              keras.layers.Dense(hidden, activation="relu", dtype="float32"),
                              keras.layers.Dense(1, dtype="float32")]
        shape = (None, width)
        for layer in self.discriminator:
            layer.build(shape)
            shape = (None, layer.units)
        self.weight = self.add_weight(shape=(), initializer=keras.initializers.Constant(weight),
                                      trainable=False, name="cdan_weight", dtype="float32")
        self.built = True

    def _multilinear(self, f, g):
        if self.random_map:
            return (ops.matmul(f, self.map_f) * ops.matmul(g, self.map_g)) / np.sqrt(RANDOM_DIM)
        outer = ops.expand_dims(g, 2) * ops.expand_dims(f, 1)  # [n, C, d]
        return ops.reshape(outer, (-1, self.feature_dim * self.num_classes))

    def call(self, inputs, training=False):
        fs, ft, ps, pt = (ops.cast(x, "float32") for x in inputs)
        if not training:
            return fs
        f, g = ops.concatenate([fs, ft], 0), ops.concatenate([ps, pt], 0)
        h = reverse_gradient(self._multilinear(f, ops.stop_gradient(g)))
        for layer in self.discriminator:
            h = layer(h)
        n, m = ops.shape(fs)[0], ops.shape(ft)[0]
        is_source = ops.concatenate([ops.ones((n, 1)), ops.zeros((m, 1))], 0)
        entropy = -ops.sum(g * ops.log(g + 1e-7), axis=1, keepdims=True)
        w = ops.stop_gradient(1.0 + ops.exp(-entropy))
        w_s, w_t = w[:n] / ops.sum(w[:n]), w[n:] / ops.sum(w[n:])  # each domain sums to 1
        bce = keras.losses.binary_crossentropy(is_source, h, from_logits=True)
        loss = ops.sum(ops.concatenate([w_s, w_t], 0)[:, 0] * bce) / 2.0
        self.add_loss(ops.cast(self.weight, "float32") * loss)
        return fs

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "weight": self.initial_weight,
                "feature_dim": self.feature_dim, "num_classes": self.num_classes,
                "hidden": self.hidden, "seed": self.seed}
