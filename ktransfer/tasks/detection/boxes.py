"""What every box reader shares: the padded form of a set's boxes, and a box in pixels turned
into fractions of its image with the checks every format gets."""

from __future__ import annotations

import math

import numpy as np

from ktransfer.errors import DataError

SLACK = 1.0  # pixels a box may reach past its image (rounding in labelling tools); clipped
Box = tuple[int, float, float, float, float]  # class id, ymin, xmin, ymax, xmax (fractions)


def padded(boxes: list[list[Box]]) -> np.ndarray:
    """float32 [N, M, 5] of each image's boxes, padded with class -1 to the most boxes."""
    most = max(1, max((len(b) for b in boxes), default=0))
    out = np.full((len(boxes), most, 5), -1.0, np.float32)
    for i, rows in enumerate(boxes):
        if rows:
            out[i, :len(rows)] = rows
    return out


def fractions(box: tuple[float, ...], width: float, height: float, where: str,
              slack: float = SLACK) -> tuple[float, float, float, float]:
    """(ymin, xmin, ymax, xmax) as fractions of a box (xmin, ymin, xmax, ymax) in pixels of a
    `width` x `height` image; a box past the image by more than `slack`, or with no area, is a
    DataError at `where`."""
    xmin, ymin, xmax, ymax = box
    if not all(math.isfinite(v) for v in box):
        raise DataError(f"{where}: box {list(box)} is not four numbers")
    if xmin < -slack or ymin < -slack or xmax > width + slack or ymax > height + slack:
        raise DataError(f"{where}: box (xmin, ymin, xmax, ymax) {list(box)} lies outside its "
                        f"{width:g} x {height:g} image; fix the box or the image size")
    xmin, ymin = max(xmin, 0.0), max(ymin, 0.0)
    xmax, ymax = min(xmax, width), min(ymax, height)
    if xmax - xmin <= 0 or ymax - ymin <= 0:
        raise DataError(f"{where}: box (xmin, ymin, xmax, ymax) {list(box)} has no area "
                        "(xmax must exceed xmin and ymax ymin)")
    return ymin / height, xmin / width, ymax / height, xmax / width
