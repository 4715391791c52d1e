"""Target pseudo-labels: which class each unlabelled target example belongs to, for class MMD.

Class-conditional MMD weighs every target row by a class. The classifier's probabilities are
the obvious weights (DSAN), but where the source classifier is often wrong on the target,
alignment pulls target rows toward the wrong class and locks its mistakes in. SHOT (Liang et
al. 2020, "Do we really need to access the source data?") labels the target by clusters
instead: class centroids of the target features weighted by the predictions, then by the
nearest-centroid labels again, and each row takes its nearest centroid's class (cosine), so
mistakes of the classifier that the feature clusters do not share can be corrected. Measured
on the digits -> digits-M benchmark it did not help (docs/guides/adaptation.md).

`TargetLabeller` re-estimates the centroids at the start of every epoch into a variable;
`nearest_centroid` turns a batch of target features into one-hot class weights in the graph.

A source classifier on a shifted target often pours many examples of every class into one
"sink" class. `balanced` keeps the predictions but rescales each class's probability so that
the predicted classes of the whole target follow the source's class frequencies (one factor
per class, found like Sinkhorn's balancing and re-estimated every epoch by `TargetLabeller`): rows
that the sink class wins only narrowly move to their next class. It assumes the target's
classes are about as frequent as the source's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from ktransfer.domain.selection import probe_outputs


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.concatenate([x, np.ones((len(x), 1))], axis=1)  # SHOT's bias column
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def cluster_centroids(features: np.ndarray, probabilities: np.ndarray, rounds: int = 1,
                      min_count: int = 0) -> np.ndarray:
    """Unit-length class centroids [C, D + 1] of target `features` [N, D] (SHOT's labelling).

    The first centroids are the prediction-weighted means (`probabilities` [N, C]); then
    `rounds` times each row takes its nearest centroid's class and the centroids become the
    means of their rows. A class with `min_count` rows or fewer keeps its earlier centroid.

    Example:
        >>> f = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
        >>> p = np.array([[0.6, 0.4], [0.4, 0.6], [0.3, 0.7], [0.2, 0.8]])
        >>> nearest = _unit(f) @ cluster_centroids(f, p).T
        >>> nearest.argmax(1).tolist()
        [0, 0, 1, 1]
    """
    x = _unit(np.asarray(features, np.float64))
    p = np.asarray(probabilities, np.float64)
    centroids = p.T @ x / np.maximum(p.sum(0)[:, None], 1e-12)
    for _ in range(rounds):
        labels = (x @ _normalised(centroids).T).argmax(1)
        one_hot = np.eye(p.shape[1])[labels]
        counts = one_hot.sum(0)
        means = one_hot.T @ x / np.maximum(counts[:, None], 1.0)
        centroids = np.where((counts > min_count)[:, None], means, centroids)
    return _normalised(centroids)


def _normalised(c: np.ndarray) -> np.ndarray:
    return c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)


def nearest_centroid(features, centroids):
    """One-hot [B, C] of each row of `features` [B, D]'s nearest centroid ([C, D + 1], from
    `cluster_centroids`) by cosine similarity, as float32 constants for the MMD weights."""
    x = ops.cast(features, "float32")
    x = ops.concatenate([x, ops.ones_like(x[:, :1])], axis=1)
    similarity = ops.matmul(x, ops.transpose(ops.cast(centroids, "float32")))
    return ops.stop_gradient(ops.one_hot(ops.argmax(similarity, axis=1), ops.shape(centroids)[0]))


def prior_factors(probabilities: np.ndarray, prior: np.ndarray, rounds: int = 50) -> np.ndarray:
    """Per-class factors [C] such that the rows of `probabilities` [N, C] multiplied by them and
    renormalised average to `prior` [C] (the classes' expected frequencies); each factor is
    kept within [1e-3, 1e3].

    Example:
        >>> p = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.7, 0.3]])
        >>> w = prior_factors(p, np.array([0.5, 0.5]))
        >>> q = p * w / (p * w).sum(1, keepdims=True)
        >>> q.mean(0).round(3).tolist(), q.argmax(1).tolist()
        ([0.5, 0.5], [0, 1, 1, 0])
    """
    p = np.asarray(probabilities, np.float64)
    target = np.asarray(prior, np.float64) / np.sum(prior)
    factors = np.ones(p.shape[1])
    for _ in range(rounds):
        q = p * factors
        q /= np.maximum(q.sum(1, keepdims=True), 1e-12)
        factors = np.clip(factors * target / np.maximum(q.mean(0), 1e-12), 1e-3, 1e3)
        factors /= factors.max()
    return factors


def rebalanced(probabilities, factors):
    """`probabilities` [B, C] times the class `factors` [C], rows renormalised; constants for
    the MMD weights (no gradient)."""
    q = ops.cast(probabilities, "float32") * ops.cast(factors, "float32")[None, :]
    return ops.stop_gradient(q / ops.maximum(ops.sum(q, axis=1, keepdims=True), 1e-12))


def centroid_estimate(probabilities: np.ndarray, features: np.ndarray) -> np.ndarray:
    """`cluster_centroids` [C, D + 1] of a target sample, a class with under 5 % of its fair
    share of rows keeping its earlier centroid (--pseudo_labels=clusters)."""
    min_count = max(1, len(features) // (20 * probabilities.shape[1]))
    return cluster_centroids(features, probabilities, min_count=min_count)


def prior_estimate(prior: np.ndarray) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """`prior_factors` [C] towards the class frequencies `prior` [C] (--pseudo_labels=balanced);
    the features are not used."""
    return lambda probabilities, features: prior_factors(probabilities, prior)


class TargetLabeller(keras.callbacks.Callback):
    """Before every epoch, sets `variable` to `estimate(probabilities [N, C], features [N, D])`
    of up to `limit` target examples: the class centroids (`centroid_estimate`) or the class
    factors (`prior_estimate`) the alignment reads.

    Args:
        probe: a `feature_probe`: inputs -> (features [B, D], probabilities [B, C]).
        target: batches of (target inputs, one-hot labels), not augmented.
        variable: what the alignment reads.
        estimate: (probabilities, features) -> the variable's new value.
        limit: target examples to look at.
        statistics: a context in which the probe normalises as training does (with AdaBN,
            BatchNorm by the target's own statistics); none by default.
    """

    def __init__(self, probe: Callable[[Any], Any], target: tf.data.Dataset,
                 variable: keras.Variable,
                 estimate: Callable[[np.ndarray, np.ndarray], np.ndarray], limit: int = 4096,
                 statistics: Callable[[], AbstractContextManager] = contextlib.nullcontext):
        super().__init__()
        self.probe, self.target, self.variable, self.limit = probe, target, variable, limit
        self.estimate, self.statistics = estimate, statistics

    def on_epoch_begin(self, epoch, logs=None):
        with self.statistics():
            probabilities, features, _ = probe_outputs(self.probe, self.target, self.limit)
        self.variable.assign(self.estimate(probabilities, features).astype("float32"))
