"""Losses on the unlabelled target predictions (`--target_loss`), added beside the MMD:

    entropy  mean entropy of each prediction: confident target predictions (as in DANN+E,
             CDAN+E)
    im       information maximisation (SHOT, Liang et al. 2020): mean entropy minus the entropy
             of the mean prediction, so predictions are confident *and* use every class, which
             guards against collapsing onto a few classes
    mcc      minimum class confusion (Jin et al., ECCV 2020): the off-diagonal mass of the
             class-correlation matrix of temperature-scaled (2.5) predictions, rows weighted by
             certainty

Each takes probabilities [m, C] and returns a float32 scalar to minimise.
"""

from __future__ import annotations

import keras
from keras import ops

from ktransfer.domain.catalog import TARGET_LOSSES

EPS = 1e-7
MCC_TEMPERATURE = 2.5


def _entropy(p, axis: int = -1):
    return -ops.sum(p * ops.log(p + EPS), axis=axis)


def entropy(p):
    return ops.mean(_entropy(ops.cast(p, "float32")))


def information_maximisation(p):
    p = ops.cast(p, "float32")
    return ops.mean(_entropy(p)) - _entropy(ops.mean(p, axis=0))


def minimum_class_confusion(p, temperature: float = MCC_TEMPERATURE):
    p = ops.power(ops.cast(p, "float32") + EPS, 1.0 / temperature)
    p = p / ops.sum(p, axis=1, keepdims=True)
    weights = 1.0 + ops.exp(-_entropy(p))
    n = ops.cast(ops.shape(p)[0], "float32")
    weights = ops.stop_gradient(n * weights / ops.sum(weights))
    confusion = ops.matmul(ops.transpose(p * weights[:, None]), p)  # [C, C]
    confusion = confusion / (ops.sum(confusion, axis=1, keepdims=True) + EPS)
    classes = ops.cast(ops.shape(p)[1], "float32")
    return (ops.sum(confusion) - ops.trace(confusion)) / classes




@keras.saving.register_keras_serializable(package="ktransfer")
class TargetLoss(keras.layers.Layer):
    """Adds `weight * TARGET_LOSSES[kind](target_probabilities)` to the model's losses during
    training and returns its input. `weight` is a non-trainable variable (ramped up with the
    MMD weight).

    Args:
        kind: a `TARGET_LOSSES` name.
        weight: the loss weight at full ramp.
    """

    def __init__(self, kind: str = "entropy", weight: float = 0.1, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.kind, self.initial_weight = kind, float(weight)
        self.loss_fn = TARGET_LOSSES.get(kind)
        self.weight = self.add_weight(shape=(), initializer=keras.initializers.Constant(weight),
                                      trainable=False, name="target_loss_weight",
                                      dtype="float32")
        self.built = True

    def call(self, probabilities, training=False):
        if training:
            self.add_loss(ops.cast(self.weight, "float32") * self.loss_fn(probabilities))
        return probabilities

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "weight": self.initial_weight}
