"""Losses the tasks add to Keras': the asymmetric loss for multi-label training.

Asymmetric loss (Ridnik et al., ICCV 2021): with many labels absent from each example, the
easy negatives swamp binary cross-entropy. ASL focuses positives and negatives differently and
shifts the negatives' probability down by a margin, discarding the easiest ones:

    L+ = -(1 - p)^gamma_pos * log(p)
    L- = -p_m^gamma_neg * log(1 - p_m),  p_m = max(p - clip, 0)

averaged over labels and examples (the paper sums over labels; the mean keeps learning rates
comparable with binary cross-entropy). The paper's defaults: gamma_neg 4, gamma_pos 0, clip
0.05.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

EPSILON = 1e-7  # probabilities are clipped to [EPSILON, 1 - EPSILON] before a logarithm


@keras.saving.register_keras_serializable(package="ktransfer")
class AsymmetricLoss(keras.losses.Loss):
    """The asymmetric loss of targets [B, C] in {0, 1} and sigmoid probabilities [B, C]."""

    def __init__(self, gamma_neg: float = 4.0, gamma_pos: float = 0.0, clip: float = 0.05,
                 name: str = "asymmetric_loss", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.gamma_neg, self.gamma_pos, self.clip = gamma_neg, gamma_pos, clip

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y = ops.cast(y_true, y_pred.dtype)
        p = ops.clip(y_pred, EPSILON, 1.0 - EPSILON)
        shifted = ops.maximum(p - self.clip, 0.0)
        positive = y * ops.power(1.0 - p, self.gamma_pos) * ops.log(p)
        negative = (1.0 - y) * ops.power(shifted, self.gamma_neg) * ops.log(
            ops.clip(1.0 - shifted, EPSILON, 1.0))
        return -ops.mean(positive + negative, axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "gamma_neg": self.gamma_neg,
                "gamma_pos": self.gamma_pos, "clip": self.clip}
