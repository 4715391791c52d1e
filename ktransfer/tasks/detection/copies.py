"""A detector's TFLite and ONNX copies: pixels in, the boxes after non-max suppression out,
in the four outputs and the order MediaPipe's ObjectDetector reads (`detection_boxes` [B, K, 4]
as ymin, xmin, ymax, xmax fractions; `detection_classes` [B, K] and `detection_scores` [B, K];
`num_detections` [B], all float32; K = --max_detections).

TFLite: TensorFlow Lite's own `TFLite_Detection_PostProcess` operation, which the converter
puts in place of a function that declares it implements it (as the TF Object Detection API
exports SSD models); it decodes the anchors' centre-size offsets and runs per-class
non-max suppression. ONNX: TensorFlow's combined non-max suppression, which tf2onnx converts.
Both keep every box down to the score evaluation counts (decode.SCORED), so that the copies
are scored as the Keras model is; apply --min_score (or MediaPipe's `score_threshold`) when
reading them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from ktransfer.tasks.copies import Copies
from ktransfer.tasks.detection.anchors import anchor_grid, input_size
from ktransfer.tasks.detection.decode import SCORED, detections
from ktransfer.tasks.detection.scoring import coco_scores

NAMES = ("detection_boxes", "detection_classes", "detection_scores", "num_detections")


def post_processing(classes: int, max_detections: int, iou: float) -> Any:
    """A function (box offsets [1, A, 4] as ty, tx, th, tw; scores [1, A, 1 + classes] with
    the background first; anchors [A, 4] as y, x centre, height, width) that the TFLite
    converter replaces by `TFLite_Detection_PostProcess` with these settings. Its body is
    never run by TFLite."""
    settings = {"max_detections": max_detections, "max_classes_per_detection": 1,
                "detections_per_class": max_detections, "use_regular_nms": True,
                "nms_score_threshold": SCORED, "nms_iou_threshold": iou,
                "num_classes": classes, "y_scale": 1.0, "x_scale": 1.0, "h_scale": 1.0,
                "w_scale": 1.0}
    implements = " ".join(['name: "TFLite_Detection_PostProcess"'] + [
        f'attr {{ key: "{key}" value {{ {_kind(value)}: {_text(value)} }} }}'
        for key, value in settings.items()])

    @tf.function(experimental_implements=implements)
    def post_process(offsets: Any, scores: Any, anchors: Any) -> tuple[Any, ...]:
        empty = tf.zeros([1, max_detections])
        return tf.zeros([1, max_detections, 4]), empty, empty, tf.zeros([1])

    return post_process


def _kind(value: Any) -> str:
    return "b" if isinstance(value, bool) else "i" if isinstance(value, int) else "f"


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def centre_anchors(size: int) -> np.ndarray:
    """float32 [A, 4]: the grid's anchors as y, x centre, height, width (fractions)."""
    grid = anchor_grid(size)
    height, width = grid[:, 2] - grid[:, 0], grid[:, 3] - grid[:, 1]
    return np.stack([grid[:, 0] + height / 2, grid[:, 1] + width / 2, height, width],
                    axis=-1).astype(np.float32)


class DetectionCopies(Copies):
    """The four outputs of MediaPipe's ObjectDetector (see the module docstring)."""

    def outputs(self, outputs: Any, classes: int, state: dict[str, Any], runtime: str
                ) -> dict[str, Any]:
        keep = {"max_detections": state.get("max_detections", 100),
                "iou": state.get("nms_iou", 0.5)}
        if runtime != "tflite":
            found = detections(outputs, classes, keep["max_detections"], SCORED, keep["iou"])
            return dict(zip(NAMES, (found["boxes"], tf.cast(found["classes"], tf.float32),
                                    found["scores"], tf.cast(found["count"], tf.float32)),
                            strict=True))
        offsets = tf.gather(outputs[..., :4], [1, 0, 3, 2], axis=-1)  # x first -> y first
        scores = tf.sigmoid(outputs[..., 4:4 + classes])
        # The op skips the first column (background): repeat a class there rather than a
        # constant zero, whose int8 range is empty (XNNPACK then fails to prepare the model).
        scores = tf.concat([scores[..., :1], scores], axis=-1)
        with tf.init_scope():  # eagerly, also while a copy's graph is traced
            anchors = tf.constant(centre_anchors(input_size(outputs)))
        found = post_processing(classes, keep["max_detections"], keep["iou"])(
            offsets, scores, anchors)
        return dict(zip(NAMES, found, strict=True))

    def quality(self, found: dict[str, np.ndarray], targets: np.ndarray,
                state: dict[str, Any], classes: int, size: int) -> float:
        """COCO mAP@[.50:.95] of the copy's boxes, scored at the model's input size as the
        Keras model's are."""
        scored = {"boxes": found["detection_boxes"], "scores": found["detection_scores"],
                  "classes": found["detection_classes"].astype(np.int32),
                  "count": found["num_detections"].astype(np.int32)}
        return coco_scores(targets, scored, size, classes)[0]["map"]


COPIES = DetectionCopies()
