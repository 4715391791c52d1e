"""A detector's output -> the boxes it finds: decoded from the anchors, scored by a sigmoid per
class, and thinned by TensorFlow's batched non-max suppression (one graph for `predict`,
evaluation and the SavedModel, so the three agree)."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from ktransfer.tasks.detection.anchors import decode_boxes

SCORED = 0.05  # evaluation scores every box above this (COCO's usual floor)


def detections(outputs: Any, classes: int, max_detections: int, min_score: float,
               iou: float) -> dict[str, tf.Tensor]:
    """{boxes float32 [B, K, 4] (ymin, xmin, ymax, xmax as fractions), scores [B, K], classes
    int32 [B, K], count int32 [B]} of outputs [B, A, 4 + classes + 4]; K = `max_detections`,
    the rows past `count` are padding (score 0)."""
    outputs = tf.convert_to_tensor(outputs, tf.float32)
    boxes = tf.clip_by_value(decode_boxes(outputs[..., :4], outputs[..., 4 + classes:]), 0, 1)
    scores = tf.sigmoid(outputs[..., 4:4 + classes])
    found = tf.image.combined_non_max_suppression(
        boxes[:, :, None, :], scores, max_output_size_per_class=max_detections,
        max_total_size=max_detections, iou_threshold=iou, score_threshold=min_score,
        clip_boxes=False)
    return {"boxes": found.nmsed_boxes, "scores": found.nmsed_scores,
            "classes": tf.cast(found.nmsed_classes, tf.int32),
            "count": tf.cast(found.valid_detections, tf.int32)}


def numpy_detections(outputs: Any, classes: int, max_detections: int, min_score: float,
                     iou: float, batch: int = 64) -> dict[str, Any]:
    """`detections` of many outputs [N, A, ...], a batch at a time, as numpy arrays."""
    parts = [detections(outputs[i:i + batch], classes, max_detections, min_score, iou)
             for i in range(0, len(outputs), batch)]
    return {key: tf.concat([p[key] for p in parts], axis=0).numpy() for key in parts[0]}
