"""The report's view of images: a grid of the most confident mistakes with their labels."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ktransfer import plotting
from ktransfer.image.imageset import ImageSet

MISTAKES_PNG = "mistakes.png"


def _pixels(images: ImageSet, wanted: set[int]) -> dict[int, np.ndarray]:
    """{position: uint8 [H, W, 3]} of the images at `wanted` positions."""
    found: dict[int, np.ndarray] = {}
    for i, (image, _) in enumerate(images.dataset().as_numpy_iterator()):
        if i in wanted:
            found[i] = image
            if len(found) == len(wanted):
                break
    return found


def plot_mistakes(images: ImageSet, mistakes: list[dict[str, Any]],
                  path: str | os.PathLike) -> bool:
    """A grid of `mistakes` (rows with index, true, predicted, confidence); False if none."""
    if not mistakes:
        return False
    plt = plotting.pyplot()
    pixels = _pixels(images, {m["index"] for m in mistakes})
    cols = min(6, len(mistakes))
    rows = (len(mistakes) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(1.8 * cols, 2.1 * rows), dpi=100,
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, m in zip(axes.flat, mistakes, strict=False):
        ax.imshow(pixels[m["index"]])
        ax.set_title(f"{m['true']} -> {m['predicted']}\n{m['confidence']:.0%}", fontsize=8)
    fig.tight_layout()
    plotting.save(fig, path)
    return True


def gallery(images: ImageSet, mistakes: list[dict[str, Any]], out_dir: str | os.PathLike) -> str:
    """Writes OUT_DIR/mistakes.png and returns the HTML that shows it ('' without mistakes)."""
    path = Path(out_dir) / MISTAKES_PNG
    if not plot_mistakes(images, mistakes, path):
        return ""
    return plotting.img_tag(path, "most confident mistakes")
