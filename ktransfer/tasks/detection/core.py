"""`detection`: boxes around the objects in each image, each with a class.

Targets: float32 [N, M, 5] per image, padded to the most boxes of any image: the class id
(-1 for padding) then ymin, xmin, ymax, xmax as fractions of the image (an image with no box is
a negative: all padding). They come from annotation files (`readers`: COCO JSON, a CSV / JSON
lines table of boxes). The network is RetinaNet's head on the backbone's feature maps
(`network`), trained with its focal and smooth-L1 loss (`losses`) on targets matched to the
anchors after augmentation (`geometry`); found boxes are decoded and thinned by non-max
suppression (`decode`) and scored with pycocotools (`scoring`): mAP@[.50:.95] is the quality.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ktransfer.config import RunConfig
from ktransfer.data.splits import stratified_split
from ktransfer.errors import ConfigError, DataError
from ktransfer.tasks.detection.anchors import STRIDES, input_size
from ktransfer.tasks.detection.decode import SCORED, detections, numpy_detections
from ktransfer.tasks.detection.losses import DetectionLoss
from ktransfer.tasks.detection.scoring import coco_scores
from ktransfer.tasks.task import Rows, Task, loss_value, relabelled

INTERVAL_RESAMPLES = 100  # bootstrap resamples of the quality's interval (each a COCO eval)
NOMINAL = 256  # px: the image side the baseline's boxes are scored at (it has no outputs)


def kept(state: dict[str, Any], options: Any = None) -> dict[str, Any]:
    """What decoding takes from the task group (at fit) or the saved state."""
    if options is not None:
        return {"min_score": options.min_score, "max_detections": options.max_detections,
                "nms_iou": options.nms_iou}
    return {"min_score": state.get("min_score", 0.3),
            "max_detections": state.get("max_detections", 100),
            "nms_iou": state.get("nms_iou", 0.5)}


def records(boxes: np.ndarray, classes: np.ndarray, names: list[str] | tuple[str, ...],
            scores: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Boxes [K, 4] (ymin, xmin, ymax, xmax fractions) with classes [K] (and scores [K]) as
    records: label, (score,) xmin, ymin, xmax, ymax, rounded to 6 digits."""
    return [{"label": names[int(c)],
             **({} if scores is None else {"score": round(float(scores[k]), 6)}),
             **{key: round(float(boxes[k][i]), 6)
                for key, i in (("xmin", 1), ("ymin", 0), ("xmax", 3), ("ymax", 2))}}
            for k, c in enumerate(classes)]


class Detection(Task):
    """Boxes with classes (see the module docstring)."""

    name = "detection"
    headline = "map"
    objective = "map"
    quality_name = "mAP@[.50:.95]"
    smooths = False
    answer_fields = ("boxes", "class", "score")
    answer_records = "detections"
    monitors = ("map", "ap50")  # --monitor=val_map: scored each epoch by pycocotools
    epoch_metrics = ("map", "ap50")
    output_key = "detections"
    output_rank = 3
    interval_method = "bootstrap"
    copies_entry = "ktransfer.tasks.detection.copies:COPIES"
    geometry_entry = "ktransfer.tasks.detection.geometry:GEOMETRY"
    map_head_entry = "ktransfer.tasks.detection.network:HEAD"
    annotations_entry = "ktransfer.tasks.detection.readers:READERS"
    presentation_entry = "ktransfer.tasks.detection.presentation:DetectionPresentation"

    def parse(self, values: list[Any], where: list[str], options: Any, flag: str,
              column: str = "label") -> tuple[tuple[str, ...], np.ndarray]:
        raise DataError(f"--{flag}: {where[0] if where else 'the table'}: a table of one label "
                        "per image cannot hold boxes; give a COCO JSON file or a table of "
                        "boxes (columns file, label, xmin, ymin, xmax, ymax)")

    def relabel(self, targets: np.ndarray, names: tuple[str, ...], wanted: tuple[str, ...],
                strict: bool) -> tuple[np.ndarray, np.ndarray]:
        """Class ids renumbered to `wanted` (a model's class order); a box of another class
        is an error, as for classes."""
        ids = targets[..., 0].astype(np.int64)
        present = ids >= 0
        mapped, _ = relabelled(ids[present], names, wanted, strict) if present.any() else (
            ids[present], None)
        out = targets.copy()
        out[..., 0][present] = mapped
        return out, np.arange(len(targets))

    def target_text(self, target: np.ndarray, names: tuple[str, ...]) -> str:
        return "; ".join(f"{names[int(r[0])]} " + " ".join(f"{v:.4f}" for v in r[1:])
                         for r in target if r[0] >= 0) or "(no boxes)"

    def split(self, targets: np.ndarray, fraction: float, seed: int
              ) -> tuple[np.ndarray, np.ndarray]:
        """Stratified by each image's rarest class (images without boxes as one more)."""
        return stratified_split(rarest_class(targets), fraction, seed)

    def check_splits(self, train: np.ndarray, val: np.ndarray, names: tuple[str, ...]) -> None:
        counts = np.bincount(train[..., 0][train[..., 0] >= 0].astype(np.int64),
                             minlength=len(names))
        if not len(counts) or counts.min() == 0:
            missing = names[int(np.argmin(counts))] if len(counts) else "any"
            raise DataError(f"--data: class {missing!r} has no box in the training split; "
                            "give it boxes, or leave it out of the annotations")

    def target_words(self, names: tuple[str, ...]) -> str:
        return f"boxes of {len(names)} {'class' if len(names) == 1 else 'classes'}"

    def counts(self, targets: np.ndarray, names: tuple[str, ...]) -> dict[str, int]:
        ids = targets[..., 0][targets[..., 0] >= 0].astype(np.int64)
        return {n: int(c) for n, c in zip(names, np.bincount(ids, minlength=len(names)),
                                          strict=True)}

    def check(self, cfg: RunConfig) -> None:
        """Refuses what needs one class per image; the rest as every task."""
        super().check(cfg)
        given = {"classes": bool(cfg.data.classes),
                 "train_per_class": bool(cfg.data.train_per_class),
                 "target_data": bool(cfg.adapt.target_data),
                 "label_smoothing": bool(cfg.model.label_smoothing)}
        for flag in (f for f, on in given.items() if on):
            raise ConfigError(flag, "is not for --task=detection (leave it out)")
        if cfg.data.modality != "image":
            raise ConfigError("modality", "detection finds boxes in images: use "
                              "--modality=image")
        size = cfg.group("image").image_size
        if size % max(STRIDES):
            raise ConfigError("image_size", f"detection reads feature maps at strides "
                              f"{'/'.join(map(str, STRIDES))}: give a multiple of "
                              f"{max(STRIDES)}, e.g. {max(32, size // 32 * 32)}")

    # The network ------------------------------------------------------------------------

    def output_width(self, names: tuple[str, ...]) -> int:
        return 4 + len(names) + 4

    def output(self, features: Any, outputs: int, cfg: Any) -> Any:
        raise ConfigError("task", "detection builds its head on feature maps (map_head)")

    def encode(self, targets: tf.Tensor, outputs: int) -> tf.Tensor:
        return tf.cast(targets, tf.float32)  # already matched to the anchors (geometry)

    def loss(self, cfg: RunConfig) -> Any:
        return DetectionLoss()

    def metrics(self, outputs: int) -> list[Any]:
        return []

    # Scores and answers ------------------------------------------------------------------

    def scores(self, outputs: np.ndarray, targets: np.ndarray, model: keras.Model,
               cfg: RunConfig, state: dict[str, Any]) -> dict[str, float]:
        """The loss, and COCO's mAP, AP50, AP75, AP by size and AR@100 (pycocotools)."""
        found, classes, size = evaluated(outputs, state)
        encoded = self.geometry.encoded(tf.constant(targets), size).numpy()  # type: ignore
        metrics, per_class = coco_scores(targets, found, size, classes)
        loss = loss_value(DetectionLoss(), encoded, outputs, model)
        return {"loss": loss, **metrics,
                **{f"ap_class_{i}": v for i, v in enumerate(per_class) if v >= 0}}

    def epoch_scores(self, outputs: np.ndarray, targets: np.ndarray, state: dict[str, Any]
                     ) -> dict[str, float]:
        """mAP@[.50:.95] and AP50 of one validation pass."""
        found, classes, size = evaluated(outputs, state)
        metrics = coco_scores(targets, found, size, classes)[0]
        return {name: metrics[name] for name in self.epoch_metrics}

    def quality(self, outputs: np.ndarray, targets: np.ndarray, state: dict[str, Any]) -> float:
        """mAP@[.50:.95]."""
        found, classes, size = evaluated(outputs, state)
        return coco_scores(targets, found, size, classes)[0]["map"]

    def quality_interval(self, outputs: np.ndarray, targets: np.ndarray,
                         state: dict[str, Any]) -> tuple[float, float] | None:
        """Percentiles of INTERVAL_RESAMPLES bootstrap resamples of the images, their boxes
        found once (pycocotools re-scores each resample)."""
        found, classes, size = evaluated(outputs, state)
        rng = np.random.default_rng(0)
        values = []
        for _ in range(INTERVAL_RESAMPLES):
            pick = rng.integers(0, len(targets), len(targets))
            values.append(coco_scores(targets[pick], {k: v[pick] for k, v in found.items()},
                                      size, classes)[0]["map"])
        low, high = np.percentile(values, [2.5, 97.5])
        return float(low), float(high)

    def baseline(self, train: np.ndarray, val: np.ndarray) -> tuple[float, str]:
        """Every class's mean training box, in every image, scored by how common it is."""
        classes = int(train[..., 0].max()) + 1 if (train[..., 0] >= 0).any() else 1
        boxes, scores = mean_boxes(train, classes)
        found = {"boxes": np.broadcast_to(boxes, (len(val), classes, 4)),
                 "scores": np.broadcast_to(scores, (len(val), classes)),
                 "classes": np.broadcast_to(np.arange(classes), (len(val), classes)),
                 "count": np.full(len(val), classes)}
        value = coco_scores(val, found, NOMINAL, classes)[0]["map"] if len(val) else 0.0
        return value, "each class's mean training box in every image"

    def fit(self, outputs: np.ndarray, targets: np.ndarray, options: Any) -> dict[str, Any]:
        return kept({}, options)

    def answers(self, outputs: np.ndarray, names: list[str], k: int, state: dict[str, Any]
                ) -> Rows:
        found = self._found(outputs, len(names), state)
        return [[(names[c], float(s)) for c, s in zip(found["classes"][i][:n],
                                                        found["scores"][i][:n], strict=True)]
                for i, n in enumerate(found["count"])]

    def answering(self, state: dict[str, Any], options: Any) -> dict[str, Any]:
        """--min_score as predict was given it (or the run's)."""
        return {**state, "min_score": float(options.min_score)}

    def extras(self, outputs: np.ndarray, names: list[str], state: dict[str, Any]
               ) -> list[dict[str, Any]]:
        """Each image's boxes, best first: label, score and xmin, ymin, xmax, ymax as fractions
        of the image (`geometry.placed` puts them in its pixels)."""
        found = self._found(outputs, len(names), state)
        return [{"detections": records(found["boxes"][i][:n], found["classes"][i][:n], names,
                                       found["scores"][i][:n])}
                for i, n in enumerate(found["count"])]

    def _found(self, outputs: np.ndarray, classes: int, state: dict[str, Any]
               ) -> dict[str, np.ndarray]:
        keep = kept(state)
        return numpy_detections(outputs, classes, keep["max_detections"], keep["min_score"],
                                keep["nms_iou"])

    def serving(self, outputs: tf.Tensor, names: list[str], k: int, state: dict[str, Any]
                ) -> dict[str, tf.Tensor]:
        """`boxes` [B, K, 4] (ymin, xmin, ymax, xmax as fractions), `scores` [B, K],
        `classes` int32 [B, K], `class_names` string [B, K] ("" past the count) and
        `num_detections` int32 [B]; K = --max_detections, non-max suppression in the graph."""
        keep = kept(state)
        found = detections(outputs, len(names), keep["max_detections"], keep["min_score"],
                           keep["nms_iou"])
        valid = tf.range(keep["max_detections"])[None, :] < found["count"][:, None]
        names_of = tf.gather(tf.constant(["", *names]), tf.where(valid, found["classes"] + 1, 0))
        return {"boxes": found["boxes"], "scores": found["scores"],
                "classes": found["classes"], "class_names": names_of,
                "num_detections": found["count"]}


def evaluated(outputs: np.ndarray, state: dict[str, Any]
              ) -> tuple[dict[str, np.ndarray], int, int]:
    """(the boxes evaluation scores: every one above SCORED, at most 100 per image; the
    classes; the input's side in pixels, which COCO's object sizes are measured in)."""
    classes = outputs.shape[-1] - 8
    found = numpy_detections(outputs, classes, 100, SCORED, kept(state)["nms_iou"])
    return found, classes, input_size(outputs)


def rarest_class(targets: np.ndarray) -> np.ndarray:
    """int [N]: each image's least common class over the set (its class count if none)."""
    ids = targets[..., 0].astype(np.int64)
    classes = int(ids.max()) + 1 if (ids >= 0).any() else 0
    counts = np.bincount(ids[ids >= 0], minlength=classes)
    ranked = np.where(ids >= 0, counts[np.maximum(ids, 0)], np.iinfo(np.int64).max)
    pick = np.argmin(ranked, axis=1)
    rarest = ids[np.arange(len(ids)), pick]
    return np.where(rarest >= 0, rarest, classes)


def mean_boxes(train: np.ndarray, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(each class's mean box [C, 4], its share of the boxes [C])."""
    rows = train.reshape(-1, 5)
    rows = rows[rows[:, 0] >= 0]
    boxes = np.array([rows[rows[:, 0] == c, 1:].mean(axis=0) if (rows[:, 0] == c).any()
                      else [0.0, 0.0, 1.0, 1.0] for c in range(classes)], np.float32)
    share = np.bincount(rows[:, 0].astype(np.int64), minlength=classes) / max(1, len(rows))
    return boxes, share.astype(np.float32)
