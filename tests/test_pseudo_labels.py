"""Target pseudo-labels for class-conditional MMD: clusters (SHOT's labelling) and balanced."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from ktransfer import config
from ktransfer.domain.pseudo_labels import (
    TargetLabeller,
    _unit,
    centroid_estimate,
    cluster_centroids,
    nearest_centroid,
    prior_estimate,
    prior_factors,
    rebalanced,
)
from ktransfer.errors import ConfigError
from ktransfer.training import train


def _clusters(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three tight clusters of 8-d features (labels [300]) and a classifier's probabilities
    that call 40 % of class 0 class 1, as a source model does on a shifted target."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), 100)
    centres = rng.normal(0, 1, (3, 8)) * 3
    features = centres[labels] + rng.normal(0, 0.5, (300, 8))
    wrong = (labels == 0) & (rng.random(300) < 0.4)
    predicted = np.where(wrong, 1, labels)
    probabilities = np.full((300, 3), 0.15)
    probabilities[np.arange(300), predicted] = 0.7
    return features, probabilities, labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cluster_labels_correct_a_classifier_the_clusters_disagree_with(seed):
    features, probabilities, labels = _clusters(seed)
    from_predictions = np.mean(probabilities.argmax(1) == labels)
    centroids = cluster_centroids(features, probabilities)
    from_clusters = np.mean((_unit(features) @ centroids.T).argmax(1) == labels)
    assert from_predictions < 0.9
    assert from_clusters > from_predictions + 0.1 and from_clusters > 0.97, from_clusters
    assert np.allclose(np.linalg.norm(centroids, axis=1), 1.0)


def test_nearest_centroid_in_the_graph_matches_numpy():
    features, probabilities, _ = _clusters(0)
    centroids = cluster_centroids(features, probabilities)
    one_hot = keras.ops.convert_to_numpy(nearest_centroid(features, centroids))
    assert one_hot.shape == (300, 3) and np.all(one_hot.sum(1) == 1)
    assert np.array_equal(one_hot.argmax(1), (_unit(features) @ centroids.T).argmax(1))


@pytest.mark.slow  # an adaptation run each: make test-slow
@pytest.mark.parametrize("labels", ["clusters", "balanced"])
def test_class_mmd_with_pseudo_labels_trains(tiny_config, labels):
    cfg = tiny_config(epochs=1, fine_tune_epochs=1, steps_per_epoch=3, head_hidden=[16],
                      target_data="builtin:digits_m", mmd_alignment="class",
                      pseudo_labels=labels, mmd_weight=1.0, mmd_rampup=False)
    result = train(cfg)
    assert np.isfinite(result.metrics["val"]["loss"])
    assert result.metrics["epochs"] == {"head": 1, "fine_tune": 1}


def test_target_centroids_cluster_the_probe_outputs_at_every_epoch_start():
    features, probabilities, _ = _clusters(1)
    inputs = keras.Input((8,))
    probe = keras.Model(inputs, [inputs, keras.layers.Softmax()(keras.layers.Dense(3)(inputs))])
    ds = tf.data.Dataset.from_tensor_slices((features.astype("float32"),
                                             np.zeros((300, 3), "float32"))).batch(64)
    variable = keras.Variable(np.zeros((3, 9), "float32"), trainable=False)
    TargetLabeller(probe, ds, variable, centroid_estimate).on_epoch_begin(0)
    probs = keras.ops.convert_to_numpy(probe(features.astype("float32"))[1])
    expected = cluster_centroids(features, probs, min_count=max(1, 300 // 60))
    assert np.allclose(keras.ops.convert_to_numpy(variable), expected, atol=1e-5)


def test_cluster_labels_are_for_class_alignment_only():
    with pytest.raises(ConfigError, match="--pseudo_labels"):
        config.build(data="builtin:digits", target_data="builtin:digits_m",
                     mmd_alignment="marginal", pseudo_labels="clusters")


def _sink(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities [400, 4] of a classifier that sends 40 % of every class to class 0, which
    wins those rows narrowly (the true class second), as on a shifted target; labels [400]."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(4), 100)
    logits = rng.normal(0, 0.3, (400, 4))
    logits[np.arange(400), labels] += 2.0
    sunk = rng.random(400) < 0.4
    logits[sunk, 0] = logits[sunk, labels[sunk]] + rng.uniform(0.1, 0.8, sunk.sum())
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return probabilities, labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_balanced_labels_drain_a_sink_class(seed):
    probabilities, labels = _sink(seed)
    factors = prior_factors(probabilities, np.full(4, 0.25))
    balanced = probabilities * factors
    balanced /= balanced.sum(1, keepdims=True)
    assert np.allclose(balanced.mean(0), 0.25, atol=1e-3)
    before = np.mean(probabilities.argmax(1) == labels)
    after = np.mean(balanced.argmax(1) == labels)
    assert before < 0.75 and after > before + 0.15, (before, after)
    assert factors[0] < 0.5 * factors[1:].min()  # the sink's probability is scaled down


def test_balanced_labels_leave_predictions_that_follow_the_prior_alone():
    probabilities, _ = _sink(0)
    prior = probabilities.mean(0)  # the sink's class already expected: nothing to rescale
    assert np.allclose(prior_factors(probabilities, prior), 1.0, atol=1e-6)


def test_rebalanced_in_the_graph_matches_numpy():
    probabilities, _ = _sink(1)
    factors = prior_factors(probabilities, np.full(4, 0.25))
    out = keras.ops.convert_to_numpy(rebalanced(probabilities, factors))
    expected = probabilities * factors / (probabilities * factors).sum(1, keepdims=True)
    assert np.allclose(out, expected, atol=1e-5)


def test_target_prior_sets_the_factors_at_every_epoch_start():
    probabilities, _ = _sink(2)
    inputs = keras.Input((4,))
    probe = keras.Model(inputs, [inputs, keras.layers.Identity()(inputs)])
    ds = tf.data.Dataset.from_tensor_slices((probabilities.astype("float32"),
                                             np.zeros((400, 4), "float32"))).batch(64)
    variable = keras.Variable(np.ones(4, "float32"), trainable=False)
    prior = np.array([1.0, 1.0, 1.0, 2.0])
    TargetLabeller(probe, ds, variable, prior_estimate(prior)).on_epoch_begin(0)
    factors = keras.ops.convert_to_numpy(variable)
    assert np.allclose(factors, prior_factors(probabilities, prior), atol=1e-5)
    q = probabilities * factors
    assert np.allclose((q / q.sum(1, keepdims=True)).mean(0), prior / prior.sum(), atol=1e-3)
