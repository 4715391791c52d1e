"""RetinaNet's head on the backbone's feature maps at strides 8, 16 and 32, from keras-hub's
parts (`FeaturePyramid`, `PredictionHead`), initialised as the RetinaNet paper does.

keras-hub 0.32's `RetinaNetObjectDetector` initialises its head convolutions with std 0.05 and
gives the focal prior to the box head, not the classification head: the first loss is in the
thousands and a small set overfits before it learns (issue 45 measured val AP50 0.24 after 30
epochs against 1.00 after 4 with the paper's initialisation). Here every head convolution is
normal with std 0.01 and bias 0, and the classification output's bias is -log((1 - 0.01) /
0.01), so that every anchor starts at probability 0.01 of each class.

Output: float32 [B, A, 4 + C + 4]: per anchor its box offsets, its class logits, and the
anchor itself (fractions; `anchors.AnchorBoxes`), so the saved model alone decodes its boxes.
"""

from __future__ import annotations

from typing import Any

import keras
from keras_hub.src.models.retinanet.feature_pyramid import FeaturePyramid
from keras_hub.src.models.retinanet.prediction_head import PredictionHead

from ktransfer.tasks.detection.anchors import LEVELS, PER_CELL, STRIDES, AnchorBoxes
from ktransfer.tasks.detection.losses import DetectionLoss  # noqa: F401 (registers it)
from ktransfer.tasks.maps import MapHead

PRIOR = 0.01  # every class's probability at every anchor before training


@keras.saving.register_keras_serializable("ktransfer")
class RetinaPredictionHead(PredictionHead):
    """keras-hub's `PredictionHead`, also built from a list shape: a model read back from a
    .keras file hands `build` lists, to which keras-hub 0.32 adds a tuple (a TypeError)."""

    def build(self, input_shape: Any) -> None:
        super().build(tuple(input_shape))


class RetinaHead(MapHead):
    """The feature pyramid and the box and class heads (see the module docstring)."""

    strides = STRIDES

    def build(self, maps: dict[int, Any], image_size: int, outputs: int, options: Any) -> Any:
        classes, filters, depth = outputs, options.detector_filters, options.detector_depth
        levels = {f"P{level}": maps[2 ** level] for level in LEVELS}
        pyramid = FeaturePyramid(min_level=LEVELS[0], max_level=LEVELS[-1], use_p5=False,
                                 num_filters=filters, name="pyramid")(levels)
        normal = keras.initializers.RandomNormal(stddev=0.01)
        box_head = RetinaPredictionHead(PER_CELL * 4, filters, depth, kernel_initializer=normal,
                                  name="box_head")
        class_head = RetinaPredictionHead(PER_CELL * classes, filters, depth,
                                    kernel_initializer=normal, use_prior_probability=True,
                                    prior_probability=PRIOR, name="class_head")
        offsets = keras.layers.Concatenate(axis=1, name="box_offsets")(
            [keras.layers.Reshape((-1, 4))(box_head(pyramid[f"P{lv}"])) for lv in LEVELS])
        logits = keras.layers.Concatenate(axis=1, name="class_logits")(
            [keras.layers.Reshape((-1, classes))(class_head(pyramid[f"P{lv}"]))
             for lv in LEVELS])
        anchors = AnchorBoxes(image_size, dtype="float32", name="anchors")(offsets)
        return keras.layers.Concatenate(axis=-1, dtype="float32", name="detections")(
            [offsets, logits, anchors])


HEAD = RetinaHead()
