"""A toy task with targets in the image plane: one box per image, with its class.

It is added as docs/extending.md says a task is, touching no file of the package: this module
(its core and its `Geometry`) plus one `register_task` call in `register()` (made by the tests
that use it and taken back after, so that the contracts over every task see the shipped ones).
It proves that the seam carries a target that is not a vector of scores: read from a table,
split, resized and augmented with the pixels (Keras' layers move the box), encoded after
augmentation, trained, scored, answered and served.

Targets: float32 [N, 5] per image, the class id then ymin, xmin, ymax, xmax as fractions of
the image. A table's label column holds "NAME ymin xmin ymax xmax". The model's output is
[B, 4 + C]: the box (a sigmoid per coordinate, fractions) then class probabilities.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw

from ktransfer.data.splits import stratified_split
from ktransfer.errors import DataError
from ktransfer.tasks import TASKS, register_task
from ktransfer.tasks.geometry import Geometry
from ktransfer.tasks.task import Rows, Task, head_dense, loss_value, relabelled


def iou(a: Any, b: Any) -> Any:
    """Intersection over union of boxes [..., 4] (ymin, xmin, ymax, xmax), numpy or tensors."""
    ops = keras.ops
    top, left = ops.maximum(a[..., 0], b[..., 0]), ops.maximum(a[..., 1], b[..., 1])
    bottom, right = ops.minimum(a[..., 2], b[..., 2]), ops.minimum(a[..., 3], b[..., 3])
    inter = ops.maximum(bottom - top, 0.0) * ops.maximum(right - left, 0.0)
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
    return inter / ops.maximum(area(a) + area(b) - inter, 1e-9)


def box_loss(y_true: Any, y_pred: Any) -> Any:
    """L1 of the box (fractions) plus the class's cross-entropy, per example."""
    ops = keras.ops
    box = ops.mean(ops.abs(y_true[:, 1:] - y_pred[:, :4]), axis=-1)
    ids = ops.cast(y_true[:, 0], "int32")
    return box + keras.losses.sparse_categorical_crossentropy(ids, y_pred[:, 4:])


class BoxLoss(keras.losses.Loss):
    """`box_loss`, averaged over the batch."""

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return box_loss(y_true, y_pred)


def box_iou(y_true: Any, y_pred: Any) -> Any:
    return iou(y_true[:, 1:], y_pred[:, :4])


def class_accuracy(y_true: Any, y_pred: Any) -> Any:
    ids = keras.ops.cast(y_true[:, 0], "int32")
    return keras.ops.cast(keras.ops.argmax(y_pred[:, 4:], axis=-1) == ids, "float32")


class OneBoxGeometry(Geometry):
    """The box follows the pixels: kept as fractions through the resize; in pixels of the
    batch's images, x first, for Keras' geometric layers."""

    has_boxes = True

    def resized(self, target: tf.Tensor, size: int) -> tf.Tensor:
        return target  # fractions of the image stay where they are when it is squashed

    def to_keras(self, targets: tf.Tensor, size: int) -> dict[str, Any]:
        xyxy = tf.gather(targets, [2, 1, 4, 3], axis=-1)
        return {"bounding_boxes": {"boxes": xyxy[:, None] * size,
                                   "labels": tf.cast(targets[:, None, 0], tf.int32)}}

    def from_keras(self, data: dict[str, Any], size: int) -> tf.Tensor:
        xyxy = tf.clip_by_value(data["bounding_boxes"]["boxes"][:, 0] / size, 0.0, 1.0)
        boxes = tf.gather(xyxy, [1, 0, 3, 2], axis=-1)
        labels = tf.cast(data["bounding_boxes"]["labels"][:, 0:1], tf.float32)
        return tf.concat([labels, tf.cast(boxes, tf.float32)], axis=-1)

    def cropped(self, target: tf.Tensor, window: tf.Tensor) -> tf.Tensor:
        """The box in the crop's fractions, clipped to it (it stays: one box per image)."""
        origin = tf.stack([window[0], window[1], window[0], window[1]])
        scale = tf.stack([window[2], window[3], window[2], window[3]])
        box = tf.clip_by_value((target[1:] - origin) / scale, 0.0, 1.0)
        return tf.concat([target[:1], box], axis=0)

    def draw(self, image: Image.Image, extra: dict[str, Any]) -> Image.Image:
        """The box (fractions ymin, xmin, ymax, xmax) outlined in red."""
        drawn = image.convert("RGB")
        ymin, xmin, ymax, xmax = extra["box"]
        ImageDraw.Draw(drawn).rectangle([xmin * drawn.width, ymin * drawn.height,
                                         xmax * drawn.width, ymax * drawn.height],
                                        outline="red")
        return drawn


GEOMETRY = OneBoxGeometry()


class OneBox(Task):
    """One box per image, with its class (see the module docstring)."""

    name = "one_box"
    headline = "iou"
    objective = "iou"
    quality_name = "mean IoU"
    monitors = ("iou", "class_accuracy")
    smooths = False
    answer_fields = ("top_k", "class", "probability")
    output_key = "box"
    geometry_entry = "plugins.one_box:GEOMETRY"

    def parse(self, values: list[Any], where: list[str], options: Any, flag: str,
              column: str = "label") -> tuple[tuple[str, ...], np.ndarray]:
        rows = [self._row(str(v), place, flag, column) for v, place in zip(values, where,
                                                                           strict=True)]
        names = tuple(sorted({name for name, _ in rows}))
        index = {name: i for i, name in enumerate(names)}
        return names, np.array([[index[n], *box] for n, box in rows], np.float32)

    @staticmethod
    def _row(value: str, place: str, flag: str, column: str) -> tuple[str, list[float]]:
        parts = value.split()
        try:
            box = [float(p) for p in parts[1:]]
        except ValueError:
            box = []
        if len(box) != 4 or not (0 <= box[0] < box[2] <= 1 and 0 <= box[1] < box[3] <= 1):
            raise DataError(f"--{flag}: {place}: {column} {value!r} is not NAME ymin xmin "
                            "ymax xmax (fractions, ymin < ymax, xmin < xmax)")
        return parts[0], box

    def relabel(self, targets: np.ndarray, names: tuple[str, ...], wanted: tuple[str, ...],
                strict: bool) -> tuple[np.ndarray, np.ndarray]:
        ids, keep = relabelled(targets[:, 0].astype(np.int64), names, wanted, strict)
        out = targets[keep].copy()
        out[:, 0] = ids
        return out, keep

    def target_text(self, target: np.ndarray, names: tuple[str, ...]) -> str:
        return " ".join([names[int(target[0])], *(f"{v:.4f}" for v in target[1:])])

    def split(self, targets: np.ndarray, fraction: float, seed: int
              ) -> tuple[np.ndarray, np.ndarray]:
        return stratified_split(targets[:, 0].astype(np.int64), fraction, seed)

    def check_splits(self, train: np.ndarray, val: np.ndarray, names: tuple[str, ...]) -> None:
        if len(np.unique(train[:, 0])) < 2:
            raise DataError("--data: one_box needs two classes or more in training")

    def outputs(self, names: tuple[str, ...]) -> int:
        return 4 + len(names)

    def output(self, features: Any, outputs: int, cfg: Any) -> Any:
        box = keras.layers.Activation("sigmoid", dtype="float32", name="box")(
            head_dense(features, 4, cfg, "box_logits"))
        classes = keras.layers.Activation("softmax", dtype="float32", name="class")(
            head_dense(features, outputs - 4, cfg, "logits"))
        return keras.layers.Concatenate(dtype="float32", name="box_and_class")([box, classes])

    def encode(self, targets: tf.Tensor, outputs: int) -> tf.Tensor:
        return tf.cast(targets, tf.float32)

    def loss(self, cfg: Any) -> Any:
        return BoxLoss()

    def metrics(self, outputs: int) -> list[Any]:
        return [keras.metrics.MeanMetricWrapper(box_iou, name="iou"),
                keras.metrics.MeanMetricWrapper(class_accuracy, name="class_accuracy")]

    def scores(self, outputs: np.ndarray, targets: np.ndarray, model: keras.Model,
               cfg: Any, state: dict[str, Any]) -> dict[str, float]:
        if not len(targets):
            return {"loss": 0.0, "iou": 0.0, "class_accuracy": 0.0}
        right = np.argmax(outputs[:, 4:], axis=-1) == targets[:, 0]
        return {"loss": loss_value(self.loss(cfg), targets, outputs, model),
                "iou": self.quality(outputs, targets, state),
                "class_accuracy": float(np.mean(right))}

    def quality(self, outputs: np.ndarray, targets: np.ndarray, state: dict[str, Any]) -> float:
        """The mean IoU of the predicted and true boxes."""
        return float(np.mean(iou(outputs[:, :4], targets[:, 1:]))) if len(targets) else 0.0

    def baseline(self, train: np.ndarray, val: np.ndarray) -> tuple[float, str]:
        mean = np.mean(train[:, 1:], axis=0)
        return (float(np.mean(iou(np.broadcast_to(mean, val[:, 1:].shape), val[:, 1:])))
                if len(val) else 0.0, "always the training set's mean box")

    def answers(self, outputs: np.ndarray, names: list[str], k: int, state: dict[str, Any]
                ) -> Rows:
        probs = outputs[:, 4:]
        order = np.argsort(-probs, axis=-1)[:, :k]
        return [[(names[j], float(p[j])) for j in row] for p, row in zip(probs, order,
                                                                         strict=True)]

    def extras(self, outputs: np.ndarray, names: list[str], state: dict[str, Any]
               ) -> list[dict[str, Any]]:
        return [{"box": [round(float(v), 6) for v in row[:4]]} for row in outputs]

    def serving(self, outputs: tf.Tensor, names: list[str], k: int, state: dict[str, Any]
                ) -> dict[str, tf.Tensor]:
        """`box` [B, 4] (fractions), `class` [B] (its name), `score` [B] (its probability)."""
        probs = outputs[:, 4:]
        best = tf.argmax(probs, axis=-1)
        return {"box": outputs[:, :4], "class": tf.gather(tf.constant(names), best),
                "score": tf.reduce_max(probs, axis=-1)}


ONE_BOX = OneBox()


def register() -> None:
    """The one registration (tests/test_geometry.py makes it, and takes it back after)."""
    if "one_box" not in TASKS:
        register_task("one_box", "plugins.one_box:ONE_BOX", "one box per image, with its class")


def unregister() -> None:
    TASKS.unregister("one_box")


def write_box_table(root: Path, n: int = 120, size: int = 32, seed: int = 0) -> Path:
    """ROOT/boxes.csv over ROOT/<i>.png: a real scikit-learn digit (0, 1 or 2, scaled to 10-16
    px) pasted at a random place on a dark noisy background; the box is exact. Columns: file,
    label ("DIGIT ymin xmin ymax xmax", fractions)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        digit = i % 3
        pick = rng.choice(np.flatnonzero(digits.target == digit))
        side = int(rng.integers(10, 17))
        ink = digits.images[pick]
        rows_on, cols_on = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
        ink = ink[rows_on[0]:rows_on[-1] + 1, cols_on[0]:cols_on[-1] + 1]  # the box is the ink's
        glyph = Image.fromarray((ink * 16).clip(0, 255).astype(np.uint8))
        glyph = np.asarray(glyph.resize((side, side), Image.BILINEAR))
        canvas = rng.normal(30, 12, (size, size)).clip(0, 255)
        top, left = (int(v) for v in rng.integers(0, size - side + 1, 2))
        canvas[top:top + side, left:left + side] = np.maximum(
            canvas[top:top + side, left:left + side], glyph)
        Image.fromarray(canvas.astype(np.uint8)).convert("RGB").save(root / f"{i:03d}.png")
        box = [top / size, left / size, (top + side) / size, (left + side) / size]
        rows.append([f"{i:03d}.png", " ".join([str(digit), *(f"{v:.5f}" for v in box)])])
    with (root / "boxes.csv").open("w", newline="") as f:
        csv.writer(f).writerows([["file", "label"], *rows])
    return root / "boxes.csv"

