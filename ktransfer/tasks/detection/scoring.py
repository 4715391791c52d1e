"""COCO's detection metrics, computed by pycocotools on a split: mAP@[.50:.95], AP50, AP75, AP
by object size, average recall at 100 boxes, and AP per class.

Boxes are scored in the pixels of the model's input (`size`), so "small" (< 32^2 px),
"medium" and "large" (> 96^2 px) are the sizes of the objects as the model sees them.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np

# COCOeval.stats positions -> metric names (sizes with no object are left out: -1)
STATS = {0: "map", 1: "ap50", 2: "ap75", 3: "ap_small", 4: "ap_medium", 5: "ap_large",
         8: "ar100"}


def coco_records(targets: np.ndarray, found: dict[str, np.ndarray], size: int,
                 classes: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(ground truth as a COCO dataset, detections as COCO results) in `size` pixels."""
    truth: dict[str, Any] = {"images": [], "annotations": [],
                             "categories": [{"id": c + 1} for c in range(classes)]}
    results = []
    for i, boxes in enumerate(targets):
        truth["images"].append({"id": i + 1, "width": size, "height": size})
        for row in boxes[boxes[:, 0] >= 0]:
            y1, x1, y2, x2 = (float(v) * size for v in row[1:])
            truth["annotations"].append({
                "id": len(truth["annotations"]) + 1, "image_id": i + 1,
                "category_id": int(row[0]) + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
        for k in range(int(found["count"][i])):
            y1, x1, y2, x2 = (float(v) * size for v in found["boxes"][i, k])
            results.append({"image_id": i + 1, "category_id": int(found["classes"][i, k]) + 1,
                            "bbox": [x1, y1, x2 - x1, y2 - y1],
                            "score": float(found["scores"][i, k])})
    return truth, results


def _evaluated(targets: np.ndarray, found: dict[str, np.ndarray], size: int,
               classes: int) -> Any:
    """pycocotools' COCOeval of the boxes, accumulated and summarised (None: no true box)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    truth, results = coco_records(targets, found, size, classes)
    if not truth["annotations"]:
        return None
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints as it goes
        coco = COCO()
        coco.dataset = truth
        coco.createIndex()
        evaluation = COCOeval(coco, coco.loadRes(results) if results else COCO(), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation


def coco_scores(targets: np.ndarray, found: dict[str, np.ndarray], size: int,
                classes: int) -> tuple[dict[str, float], list[float]]:
    """({metric: value} of STATS, AP@[.50:.95] per class (-1 for a class with no box))."""
    return _scores(_evaluated(targets, found, size, classes), classes)


def scores_and_curves(targets: np.ndarray, found: dict[str, np.ndarray], size: int,
                      classes: int) -> tuple[dict[str, float], list[float], dict[str, Any]]:
    """`coco_scores` and COCO's precision at 101 recall levels (0, 0.01, ... 1) at IoU 0.5
    per class, {"recall": [101], "precision": [classes][101] (-1 where the class has no box
    or never reaches that recall)}, from one evaluation."""
    evaluation = _evaluated(targets, found, size, classes)
    recall = [round(r, 2) for r in np.linspace(0, 1, 101)]
    if evaluation is None:
        curves = [[-1.0] * 101 for _ in range(classes)]
    else:
        at_50 = evaluation.eval["precision"][0, :, :, 0, -1]  # [recall, class] at IoU 0.5
        curves = [[round(float(v), 4) for v in at_50[:, c]] for c in range(classes)]
    return (*_scores(evaluation, classes), {"recall": recall, "precision": curves})


def _scores(evaluation: Any, classes: int) -> tuple[dict[str, float], list[float]]:
    """The metrics and per-class AP of an evaluation (None: no true box)."""
    if evaluation is None:
        return {"map": 0.0, "ap50": 0.0, "ap75": 0.0, "ar100": 0.0}, [-1.0] * classes
    stats = {name: float(evaluation.stats[i]) for i, name in STATS.items()
             if evaluation.stats[i] >= 0}
    precision = evaluation.eval["precision"][:, :, :, 0, -1]  # [IoU, recall, class]
    per_class = [float(np.mean(p[p > -1])) if (p > -1).any() else -1.0
                 for p in np.moveaxis(precision, -1, 0)]
    return {key: max(value, 0.0) for key, value in stats.items()}, per_class


def iou(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """[N, M] IoU of boxes [N, 4] and [M, 4] (ymin, xmin, ymax, xmax)."""
    top = np.maximum(boxes[:, None, :2], others[None, :, :2])
    bottom = np.minimum(boxes[:, None, 2:], others[None, :, 2:])
    inter = np.prod(np.clip(bottom - top, 0, None), axis=-1)
    area = np.prod(boxes[:, 2:] - boxes[:, :2], axis=-1)
    other = np.prod(others[:, 2:] - others[:, :2], axis=-1)
    return inter / np.maximum(area[:, None] + other[None, :] - inter, 1e-12)


def image_errors(target: np.ndarray, boxes: np.ndarray, classes: np.ndarray,
                 threshold: float = 0.5) -> tuple[int, int]:
    """(true boxes missed, found boxes false) of one image: found boxes [K, 4] with classes
    [K] (best first) matched greedily to unmatched true boxes of their class at IoU >=
    `threshold`, as COCO matches them."""
    truth = target[target[:, 0] >= 0]
    free = np.ones(len(truth), bool)
    false = 0
    overlaps = iou(boxes, truth[:, 1:]) if len(truth) and len(boxes) else None
    for k in range(len(boxes)):
        fits = np.flatnonzero(free & (truth[:, 0] == classes[k]))
        best = fits[np.argmax(overlaps[k, fits])] if overlaps is not None and len(fits) else -1
        if best >= 0 and overlaps is not None and overlaps[k, best] >= threshold:
            free[best] = False
        else:
            false += 1
    return int(free.sum()), false
