"""How a detector's boxes follow the pixels: kept as fractions through the resize, handed to
Keras' geometric layers in pixels (x first), dropped when a move leaves less than a sliver of
them in the image, and matched to the anchors after augmentation; found boxes put back in the
pixels of the image as given, and drawn on it."""

from __future__ import annotations

import functools
import zlib
from typing import Any

import tensorflow as tf
from PIL import Image, ImageDraw

from ktransfer.tasks.detection.anchors import encode_boxes, encoder
from ktransfer.tasks.geometry import Geometry

SLIVER = 1e-3  # a box thinner than this (fraction of the image) after a move is dropped
# Box colours, one per class name, the same in every image (Tableau 10): distinct on
# photographs and for most forms of colour blindness.
COLOURS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
           "#ff9da7", "#9c755f", "#bab0ac")


class BoxGeometry(Geometry):
    """Padded boxes [M, 5] per image (class id, -1 for padding; ymin, xmin, ymax, xmax)."""

    has_boxes = True

    def resized(self, target: tf.Tensor, size: int) -> tf.Tensor:
        return target  # fractions stay where they are when the image is squashed

    def to_keras(self, targets: tf.Tensor, size: int) -> dict[str, Any]:
        xyxy = tf.gather(targets, [2, 1, 4, 3], axis=-1) * size
        return {"bounding_boxes": {"boxes": xyxy, "labels": tf.cast(targets[..., 0],
                                                                    tf.int32)}}

    def from_keras(self, data: dict[str, Any], size: int) -> tf.Tensor:
        found = data["bounding_boxes"]
        boxes = tf.gather(tf.clip_by_value(tf.cast(found["boxes"], tf.float32) / size, 0.0,
                                           1.0), [1, 0, 3, 2], axis=-1)
        labels = tf.cast(found["labels"], tf.float32)
        kept = ((boxes[..., 2] - boxes[..., 0] > SLIVER)
                & (boxes[..., 3] - boxes[..., 1] > SLIVER) & (labels >= 0))
        return tf.concat([tf.where(kept, labels, -1.0)[..., None],
                          tf.where(kept[..., None], boxes, -1.0)], axis=-1)

    def cropped(self, target: tf.Tensor, window: tf.Tensor) -> tf.Tensor:
        """Boxes in the crop's fractions, clipped to it; a box whose centre falls outside the
        window is dropped (as SSD's crops do), and so is one left thinner than a sliver."""
        top, left, height, width = window[0], window[1], window[2], window[3]
        origin = tf.stack([top, left, top, left])
        scale = tf.stack([height, width, height, width])
        boxes = tf.clip_by_value((target[:, 1:] - origin) / scale, 0.0, 1.0)
        centre_y = (target[:, 1] + target[:, 3]) / 2
        centre_x = (target[:, 2] + target[:, 4]) / 2
        kept = ((target[:, 0] >= 0) & (centre_y >= top) & (centre_y < top + height)
                & (centre_x >= left) & (centre_x < left + width)
                & (boxes[:, 2] - boxes[:, 0] > SLIVER) & (boxes[:, 3] - boxes[:, 1] > SLIVER))
        return tf.concat([tf.where(kept, target[:, 0], -1.0)[:, None],
                          tf.where(kept[:, None], boxes, -1.0)], axis=-1)

    def encoded(self, targets: tf.Tensor, size: int) -> tf.Tensor:
        return encode_boxes(targets, size, self._encoder)

    @functools.cached_property
    def _encoder(self) -> Any:
        return encoder()

    def placed(self, extra: dict[str, Any], width: int, height: int) -> dict[str, Any]:
        """Boxes in pixels of the `width` x `height` image (the model saw it squashed to a
        square, so x scales by the width and y by the height), to 0.01 px."""
        scale = {"xmin": width, "xmax": width, "ymin": height, "ymax": height}
        return {**extra, **{key: [
            {k: round(v * scale[k], 2) if k in scale else v for k, v in found.items()}
            for found in extra[key]] for key in ("detections", "truth") if key in extra}}

    def draw(self, image: Image.Image, extra: dict[str, Any]) -> Image.Image:
        """Each box outlined in its class's colour, with its label and score above it; true
        boxes (`truth`, in the report) outlined in white beneath them."""
        drawn = image.convert("RGB")
        pen = ImageDraw.Draw(drawn)
        width = max(1, round(min(drawn.size) / 160))
        for true in extra.get("truth", []):
            pen.rectangle([true["xmin"], true["ymin"], true["xmax"], true["ymax"]],
                          outline="white", width=width)
        for found in extra["detections"]:
            colour = COLOURS[zlib.crc32(found["label"].encode()) % len(COLOURS)]
            box = [found["xmin"], found["ymin"], found["xmax"], found["ymax"]]
            pen.rectangle(box, outline=colour, width=width)
            text = f"{found['label']} {found['score']:.2f}"
            wide = pen.textlength(text)
            left = max(0.0, min(box[0], drawn.width - wide))  # the label stays in the image
            top = max(0.0, box[1] - 11 - width)
            pen.rectangle(pen.textbbox((left, top), text), fill=colour)
            pen.text((left, top), text, fill="white")
        return drawn


GEOMETRY = BoxGeometry()
