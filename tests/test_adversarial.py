"""CDAN+E's conditional domain loss and its gradient reversal."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from ktransfer.domain import adversarial
from ktransfer.domain.adversarial import ConditionalDomainLoss, reverse_gradient


def test_gradient_reversal_is_identity_forward_and_flips_the_gradient():
    x = tf.Variable([1.0, -2.0, 3.0])
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(reverse_gradient(x) * tf.constant([2.0, 3.0, 4.0]))
    assert float(y) == pytest.approx(2 - 6 + 12)
    np.testing.assert_allclose(tape.gradient(y, x).numpy(), [-2.0, -3.0, -4.0])


def _inputs(seed: int = 0, d: int = 8, c: int = 3):
    rng = np.random.default_rng(seed)
    fs, ft = rng.normal(size=(16, d)), rng.normal(1.0, 1.0, size=(12, d))
    ps, pt = (rng.dirichlet(np.ones(c), size=n) for n in (16, 12))
    return [tf.constant(v, tf.float32) for v in (fs, ft, ps, pt)]


@pytest.mark.parametrize("d, c, random_map", [(8, 3, False), (4096, 3, True)])
def test_features_get_the_opposite_of_the_discriminators_gradient(monkeypatch, d, c,
                                                                  random_map):
    """The loss trains the discriminator as usual, while the features receive exactly the
    reversed gradient: they learn to make the domains indistinguishable."""
    fs, ft, ps, pt = _inputs(d=d, c=c)
    layer = ConditionalDomainLoss(0.5, d, c)
    assert layer.random_map is random_map

    def gradients():
        source = tf.Variable(fs)
        with tf.GradientTape() as tape:
            layer([source, ft, ps, pt], training=True)
            loss = layer.losses[-1]
        grads = tape.gradient(loss, [source, *layer.trainable_weights])
        return float(loss), grads[0].numpy(), [g.numpy() for g in grads[1:]]

    loss, reversed_grad, disc_grads = gradients()
    monkeypatch.setattr(adversarial, "reverse_gradient", tf.identity)
    same_loss, plain_grad, plain_disc = gradients()
    assert loss == pytest.approx(same_loss) and loss > 0
    np.testing.assert_allclose(reversed_grad, -plain_grad, rtol=1e-5, atol=1e-8)
    for a, b in zip(disc_grads, plain_disc, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)
    assert np.abs(reversed_grad).sum() > 0


def test_no_loss_outside_training_and_config_round_trip():
    fs, ft, ps, pt = _inputs()
    layer = ConditionalDomainLoss(0.5, 8, 3)
    out = layer([fs, ft, ps, pt], training=False)
    assert not layer.losses and out.shape == fs.shape
    again = ConditionalDomainLoss.from_config(layer.get_config())
    assert (again.feature_dim, again.num_classes, again.initial_weight) == (8, 3, 0.5)
