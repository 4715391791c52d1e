"""Predicting classes of image files: decode and resize as in training, top-k per image.

Unreadable files (corrupt, truncated, empty, not an image) are named, never a traceback:
`on_bad_image="fail"` stops at the first one, "skip" leaves them out with one warning line.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from ktransfer.data.pipeline import resize
from ktransfer.data.sources import image_problem
from ktransfer.errors import DataError

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


@dataclass(frozen=True)
class Prediction:
    """Top-k classes of one image, best first; `probabilities` over all classes."""

    file: str
    top_k: list[tuple[str, float]]
    probabilities: np.ndarray


def collect_files(paths: list[str]) -> list[str]:
    """Image files from files and folders (searched recursively), sorted within each folder."""
    if not paths:
        raise DataError("no images given: pass image files or folders after the flags")
    files: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(str(p) for p in Path(path).rglob("*")
                           if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DataError(f"{path}: the folder has no images ({', '.join(IMAGE_SUFFIXES)})")
            files.extend(found)
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise DataError(f"{path}: no such file or folder")
    return files


def load_pixels(path: str, size: int) -> np.ndarray:
    """float32 [size, size, 3] in [0, 255]; DataError naming the file if it is not an image."""
    problem = image_problem(path)
    if problem:
        raise DataError(f"{path}: not a readable image ({problem})")
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    return resize(image, size).numpy()


def predict_files(model: keras.Model, class_names: list[str], files: list[str], top_k: int = 3,
                  batch_size: int = 64, on_bad_image: str = "fail") -> list[Prediction]:
    """Predictions for `files`, in order (bad files dropped when `on_bad_image` is 'skip')."""
    size = int(model.input_shape[1])
    k = max(1, min(top_k, len(class_names)))
    good, pixels, bad = [], [], []
    for path in files:
        try:
            pixels.append(load_pixels(path, size))
            good.append(path)
        except DataError as exc:
            if on_bad_image == "fail":
                raise DataError(f"{exc} (--on_bad_image=skip leaves such files out)") from None
            bad.append(path)
    if bad:
        log.warning("skipped %d unreadable file(s): %s", len(bad), ", ".join(bad[:10]) +
                    (" ..." if len(bad) > 10 else ""))
    if not good:
        raise DataError("none of the given files is a readable image")
    probabilities = np.asarray(model.predict(np.stack(pixels), batch_size=batch_size,
                                             verbose=0), dtype=np.float64)
    results = []
    for path, probs in zip(good, probabilities, strict=True):
        order = np.argsort(-probs)[:k]
        results.append(Prediction(path, [(class_names[i], float(probs[i])) for i in order],
                                  probs))
    return results
