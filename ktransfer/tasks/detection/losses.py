"""RetinaNet's loss on encoded targets: focal loss over every class of every anchor that is
not ignored, smooth L1 (Huber, delta 1) on the offsets of the anchors matched to a box, each
summed and divided by the number of matched anchors (as keras-hub's `compute_loss` does)."""

from __future__ import annotations

from typing import Any

import keras


@keras.saving.register_keras_serializable("ktransfer")
class DetectionLoss(keras.losses.Loss):
    """y_true [B, A, 5] (offsets, class: -1 background, -2 ignored), y_pred [B, A, 4 + C + 4]
    (offsets, logits, anchors) -> loss [B]."""

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, name: str = "detection_loss",
                 **kwargs: Any):
        super().__init__(name=name, **kwargs)
        self.alpha, self.gamma = float(alpha), float(gamma)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        ops = keras.ops
        classes = y_pred.shape[-1] - 8
        offsets, labels = y_true[..., :4], y_true[..., 4]
        matched = ops.cast(labels > -1, "float32")
        counted = ops.cast(labels > -2, "float32")
        per_image = ops.maximum(ops.sum(matched, axis=1), 1.0)
        onehot = ops.one_hot(ops.cast(ops.maximum(labels, 0), "int32"), classes)
        onehot = onehot * matched[..., None]
        logits = y_pred[..., 4:4 + classes]
        focal = keras.losses.binary_focal_crossentropy(
            onehot[..., None], logits[..., None], apply_class_balancing=True,
            alpha=self.alpha, gamma=self.gamma, from_logits=True)
        wrong = ops.sum(ops.sum(focal, axis=-1) * counted, axis=1)
        box = keras.losses.huber(offsets[..., None], y_pred[..., :4, None], delta=1.0)
        boxes = ops.sum(ops.sum(box, axis=-1) * matched, axis=1)
        return (wrong + boxes) / per_image

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "alpha": self.alpha, "gamma": self.gamma}
