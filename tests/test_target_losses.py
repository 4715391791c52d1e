"""Losses on unlabelled target predictions (--target_loss) and the collapse guard."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from ktransfer.domain.catalog import TARGET_LOSSES
from ktransfer.domain.selection import CollapseGuard
from ktransfer.domain.target_losses import TargetLoss


def _onehot(ids, c=3, confidence=0.96):
    p = np.full((len(ids), c), (1 - confidence) / (c - 1), "float32")
    p[np.arange(len(ids)), ids] = confidence
    return p


DIVERSE, COLLAPSED = _onehot(np.arange(60) % 3), _onehot(np.zeros(60, int))
UNSURE = np.full((60, 3), 1 / 3, "float32")


def _loss(name, p):
    return float(TARGET_LOSSES.get(name)(p))


def test_entropy_prefers_confident_predictions():
    assert _loss("entropy", DIVERSE) < _loss("entropy", UNSURE)


def test_im_prefers_confident_predictions_that_use_every_class():
    assert _loss("im", DIVERSE) < _loss("im", COLLAPSED) and _loss("im", DIVERSE) < _loss(
        "im", UNSURE)


def test_mcc_is_low_without_class_confusion():
    confused = np.tile(np.array([[0.5, 0.5, 0.0]], "float32"), (60, 1)) + 1e-3
    assert _loss("mcc", DIVERSE) < _loss("mcc", confused)
    sharp = _onehot(np.arange(60) % 3, confidence=0.999)
    assert _loss("mcc", sharp) < 0.5 * _loss("mcc", confused)


def test_target_loss_layer_adds_its_weighted_loss_in_training_only():
    layer = TargetLoss("im", 0.2)
    layer(DIVERSE, training=False)
    assert not layer.losses
    layer(DIVERSE, training=True)
    assert float(layer.losses[0]) == pytest.approx(0.2 * _loss("im", DIVERSE), rel=1e-5)
    assert TargetLoss.from_config(layer.get_config()).kind == "im"


def test_collapse_guard_puts_back_the_last_good_epoch_and_stops():
    """A classifier whose 'backbone' passes 3-d inputs through and whose head maps each input
    axis to its class: every class is used, until a bias sends every prediction to class 0."""
    inputs = keras.Input((3,))
    backbone = keras.Sequential([keras.Input((3,)), keras.layers.Identity()], name="backbone")
    logits = keras.layers.Dense(3, activation="softmax", name="logits")
    model = keras.Model(inputs, logits(backbone(inputs)))
    logits.set_weights([10 * np.eye(3, dtype="float32"), np.zeros(3, "float32")])
    x = np.eye(3, dtype="float32")[np.arange(60) % 3]
    batches = tf.data.Dataset.from_tensor_slices((x, x)).batch(20)
    guard = CollapseGuard(model, batches)
    guard.set_model(model)
    guard.on_train_begin()
    assert guard.used.tolist() == [True, True, True]
    good = model.get_weights()
    guard.on_epoch_end(0, {"val_accuracy": 0.8})  # nothing vanished: a good epoch
    assert not guard.tripped and not getattr(model, "stop_training", False)
    logits.set_weights([10 * np.eye(3, dtype="float32"), np.array([50.0, 0, 0], "float32")])
    guard.on_epoch_end(1, {"val_accuracy": 0.8})  # every prediction is class 0 now
    assert guard.tripped == "class(es) [1, 2] vanished from the target predictions"
    assert model.stop_training
    for a, b in zip(model.get_weights(), good, strict=True):
        np.testing.assert_array_equal(a, b)
    guard.on_epoch_end(2, {"val_accuracy": 0.6})  # the source accuracy falls by 20 points
    assert guard.tripped.startswith("source validation accuracy fell to 0.600")
