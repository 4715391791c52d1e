"""Cluster pseudo-labels (SHOT's labelling) for class-conditional MMD."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from ktransfer import config
from ktransfer.errors import ConfigError
from ktransfer.pseudo_labels import TargetCentroids, _unit, cluster_centroids, nearest_centroid
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


def test_class_mmd_with_cluster_labels_trains_and_sets_the_centroids(tiny_config):
    cfg = tiny_config(epochs=1, fine_tune_epochs=1, steps_per_epoch=3, head_hidden=[16],
                      target_data="builtin:digits_m", mmd_alignment="class",
                      pseudo_labels="clusters", mmd_weight=1.0, mmd_rampup=False)
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
    TargetCentroids(probe, ds, variable).on_epoch_begin(0)
    probs = keras.ops.convert_to_numpy(probe(features.astype("float32"))[1])
    expected = cluster_centroids(features, probs, min_count=max(1, 300 // 60))
    assert np.allclose(keras.ops.convert_to_numpy(variable), expected, atol=1e-5)


def test_cluster_labels_are_for_class_alignment_only():
    with pytest.raises(ConfigError, match="--pseudo_labels"):
        config.build(data="builtin:digits", target_data="builtin:digits_m",
                     mmd_alignment="marginal", pseudo_labels="clusters")
