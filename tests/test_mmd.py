"""The MMD loss: estimators, behaviour under shift, gradients, serialization, float16."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from ktransfer.mmd import ESTIMATORS, MMDLoss, mmd


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
