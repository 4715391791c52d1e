"""The MMD loss: estimators, behaviour under shift, gradients, serialization, float16."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from ktransfer.domain.catalog import ESTIMATORS
from ktransfer.domain.mmd import MMDLoss, class_mmd, joint_mmd, mmd


def _gauss(n, shift, d=8, seed=0):
    return np.random.default_rng(seed).normal(shift, 1.0, (n, d)).astype("float32")


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_a_batch_against_itself_is_about_zero(estimator):
    x = _gauss(64, 0.0)
    value = float(mmd(x, x, estimator))
    assert abs(value) < 1e-5


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_grows_with_the_shift_between_two_gaussians(estimator):
    values = [float(mmd(_gauss(128, 0.0, seed=1), _gauss(128, shift, seed=2), estimator))
              for shift in (0.0, 0.5, 1.0, 2.0)]
    assert values[0] < 0.1
    if estimator == "linear":  # noisy: only the clear steps
        assert values[3] > values[1] > values[0] - 0.05
    else:
        assert values == sorted(values) and values[3] > values[0] + 0.5


def test_unequal_batch_sizes_and_feature_maps():
    value = float(mmd(_gauss(40, 0.0), _gauss(17, 1.0), "unbiased"))
    assert np.isfinite(value) and value > 0.1
    maps = np.random.default_rng(0).normal(size=(6, 2, 2, 3)).astype("float32")
    assert np.isfinite(float(mmd(maps, maps[:4] + 1.0, "biased")))
    assert np.isfinite(float(mmd(_gauss(7, 0.0), _gauss(3, 1.0), "linear")))
    for estimator in ESTIMATORS:  # one row per side (a replica's share of a last batch)
        assert np.isfinite(float(mmd(_gauss(1, 0.0), _gauss(1, 1.0), estimator)))


def test_gradients_flow_to_both_inputs():
    x = tf.Variable(_gauss(32, 0.0, seed=3))
    y = tf.Variable(_gauss(32, 1.0, seed=4))
    with tf.GradientTape() as tape:
        value = mmd(x, y)
    gx, gy = tape.gradient(value, [x, y])
    assert np.abs(gx.numpy()).sum() > 0 and np.abs(gy.numpy()).sum() > 0
    # A gradient step on the target features lowers the MMD.
    y.assign_sub(10.0 * gy)
    assert float(mmd(x, y)) < float(value)


def test_float16_inputs_give_a_finite_float32_result():
    x = _gauss(32, 0.0).astype("float16")
    y = _gauss(32, 3.0).astype("float16")
    value = mmd(x, y)
    assert value.dtype == tf.float32 and np.isfinite(float(value)) and float(value) > 0.1
    layer = MMDLoss(dtype="mixed_float16")
    out = layer([tf.constant(x), tf.constant(y)], training=True)
    assert out.shape == (32, 8)
    assert all(loss.dtype == tf.float32 and np.isfinite(float(loss)) for loss in layer.losses)


def test_layer_adds_weighted_loss_in_training_only_and_round_trips(tmp_path):
    layer = MMDLoss(weight=0.5, estimator="biased")
    x, y = _gauss(16, 0.0), _gauss(16, 2.0)
    layer([x, y], training=False)
    assert layer.losses == []
    layer([x, y], training=True)
    np.testing.assert_allclose(float(layer.losses[0]), 0.5 * float(mmd(x, y, "biased")),
                               rtol=1e-5)
    restored = MMDLoss.from_config(layer.get_config())
    assert (restored.estimator, restored.initial_weight) == ("biased", 0.5)
    s = keras.Input((8,))
    t = keras.Input((8,))
    model = keras.Model([s, t], keras.layers.Dense(2)(MMDLoss(weight=2.0)([s, t])))
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(again.layers[2], MMDLoss) and again.layers[2].initial_weight == 2.0


def _two_class_domains(seed=0):
    """Source and target of two classes each, class 0 shifted by +3 in both domains, target
    moved by +0.5 overall: (source, source one-hot, target, target one-hot)."""
    rng = np.random.default_rng(seed)
    ys = np.eye(2, dtype="float32")[rng.integers(0, 2, 64)]
    yt = np.eye(2, dtype="float32")[rng.integers(0, 2, 64)]
    s = _gauss(64, 0.0, seed=seed + 1) + 3.0 * ys[:, :1]
    t = _gauss(64, 0.5, seed=seed + 2) + 3.0 * yt[:, :1]
    return s, ys, t, yt


def test_class_mmd_is_small_when_classes_match_and_large_when_they_are_swapped():
    s, ys, t, yt = _two_class_domains()
    matched = float(class_mmd(s, t, ys, yt))
    swapped = float(class_mmd(s, t, ys, yt[:, ::-1]))
    assert 0.0 <= matched < 0.5 < 2.0 < swapped
    assert abs(float(class_mmd(s, s, ys, ys))) < 1e-5
    # Soft target probabilities count like labels; a class no target row predicts is left out
    # (0 if none is shared), never NaN.
    soft = 0.8 * yt + 0.1
    assert abs(float(class_mmd(s, t, ys, soft)) - matched) < 0.3
    only_class_1 = np.tile(np.array([[0.0, 1.0]], "float32"), (64, 1))
    assert np.isfinite(float(class_mmd(s, t, ys, only_class_1)))
    assert float(class_mmd(s[:8], t[:8], np.tile([[1.0, 0.0]], (8, 1)), only_class_1[:8])) == 0.0


def test_class_mmd_gradients_reach_the_features_not_the_probabilities():
    s, ys, t, yt = _two_class_domains(seed=5)
    t = tf.Variable(t)
    p = tf.Variable(0.6 * yt + 0.2)
    with tf.GradientTape() as tape:
        value = class_mmd(s, t, ys, p)
    gt, gp = tape.gradient(value, [t, p])
    assert np.abs(gt.numpy()).sum() > 0 and gp is None  # the predictions are constants
    t.assign_sub(10.0 * gt)
    assert float(class_mmd(s, t, ys, p)) < float(value)


def test_layer_with_labels_and_probabilities_adds_the_class_conditional_loss():
    s, ys, t, yt = _two_class_domains(seed=2)
    layer = MMDLoss(weight=2.0, dtype="mixed_float16")
    out = layer([tf.constant(s, "float16"), tf.constant(t, "float16"), ys, yt], training=True)
    assert out.shape == (64, 8) and layer.losses[0].dtype == tf.float32
    np.testing.assert_allclose(float(layer.losses[0]), 2.0 * float(class_mmd(s, t, ys, yt)),
                               rtol=2e-2)


@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
def test_joint_mmd_sees_a_shift_in_predictions_that_feature_mmd_cannot(estimator):
    """Same features in both domains and about half of each predicted class, but the
    predictions depend on the features the other way round: the features' MMD is 0, JAN's
    joint MMD of (features, predictions) is not."""
    rng = np.random.default_rng(3)
    features = rng.normal(size=(64, 2)).astype("float32")
    ps = np.eye(2, dtype="float32")[(features[:, 0] > 0).astype(int)]
    pt = ps[:, ::-1].copy()  # the same features, every prediction flipped
    assert abs(float(mmd(features, features, estimator))) < 1e-4
    assert abs(float(joint_mmd(features, features, ps, ps, estimator))) < 1e-4
    assert float(joint_mmd(features, features, ps, pt, estimator)) > 0.1
    layer = MMDLoss(0.5, estimator, joint=True)
    layer([features, features, ps, pt], training=True)
    assert float(layer.losses[0]) == pytest.approx(
        0.5 * float(joint_mmd(features, features, ps, pt, estimator)), rel=1e-5)
    assert MMDLoss.from_config(layer.get_config()).joint
