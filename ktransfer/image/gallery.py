"""The report's view of images: the most confident mistakes with their labels and one example
per class, each beside its Grad-CAM heat map (when the backbone has a spatial feature map)."""

from __future__ import annotations

import html
import logging
import os
from pathlib import Path
from typing import Any

import keras
import numpy as np
from PIL import Image

from ktransfer.errors import ConfigError
from ktransfer.image.gradcam import GradCAM, overlay_on
from ktransfer.image.imageset import ImageSet
from ktransfer.image.pipeline import resize
from ktransfer.runs import plotting
from ktransfer.tasks.geometry import Geometry

log = logging.getLogger(__name__)
MISTAKES_PNG = "mistakes.png"
CLASSES_PNG = "gradcam.png"
MAX_CLASSES = 20  # in the per-class sample


def _pixels(images: ImageSet, wanted: set[int]) -> dict[int, np.ndarray]:
    """{position: uint8 [H, W, 3]} of the images at `wanted` positions (only those are read)."""
    order = sorted(wanted)
    chosen = images.subset(np.array(order, dtype=np.int64)).dataset().as_numpy_iterator()
    return {i: image for i, (image, _) in zip(order, chosen, strict=True)}


def _tiles(images: ImageSet, items: list[tuple[int, int, str]], cam: GradCAM | None,
           drawn: dict[int, dict[str, Any]] | None = None, geometry: Geometry | None = None
           ) -> list[list[tuple[np.ndarray, str]]]:
    """Per (position, class id, title) item, its tiles: the image as read (not as the model
    sees it; with answers `drawn` at a position, the task's `geometry` draws them on it), and
    (with `cam`) the heat map of that class over it. One pass over the images and one
    Grad-CAM batch for all."""
    pixels = _pixels(images, {i for i, _, _ in items})
    if geometry is not None and drawn:
        pixels = {i: _drawn(p, drawn[i], geometry) if i in drawn else p
                  for i, p in pixels.items()}
    if cam is None or not items:
        return [[(pixels[i], title)] for i, _, title in items]
    shown = {i: resize(p, cam.size).numpy() for i, p in pixels.items()}
    heat = cam.heatmaps(np.stack([shown[i] for i, _, _ in items]), [c for _, c, _ in items])
    return [[(pixels[i], title), (overlay_on(pixels[i], heat[k]), "Grad-CAM")]
            for k, (i, _, title) in enumerate(items)]


def _drawn(pixels: np.ndarray, answers: dict[str, Any], geometry: Geometry) -> np.ndarray:
    """uint8 [H, W, 3]: the image with `answers` (fractions) drawn in its pixels."""
    height, width = pixels.shape[:2]
    shown = geometry.draw(Image.fromarray(pixels), geometry.placed(answers, width, height))
    return np.asarray(shown)


def _gradcam(model: keras.Model | None) -> tuple[GradCAM | None, str]:
    """(Grad-CAM of `model`, '') or (None, why there is none)."""
    if model is None:
        return None, "no model"
    try:
        return GradCAM(model), ""
    except (ConfigError, ValueError, KeyError) as exc:
        log.info("report: no Grad-CAM heat maps (%s)", exc)
        return None, str(exc).removeprefix("--explain_layer: ")


def _sheets(images: ImageSet, mistakes: list[dict[str, Any]], cam: GradCAM | None,
            exemplars: list[tuple[int, int]]) -> dict[str, list[tuple[int, int, str]]]:
    """{PNG name: (position, output, title) items}: the mistakes, each with the output (class)
    it is explained by, and (with `cam`) the `exemplars` (an example of each class)."""
    sheets = {}
    if mistakes:
        sheets[MISTAKES_PNG] = [(m["index"], m["output"], f"{m['true']} -> {m['predicted']}"
                                 f"\n{m['how']}") for m in mistakes]
    if cam is not None and exemplars:
        sheets[CLASSES_PNG] = [(i, c, images.class_names[c]) for i, c in exemplars[:MAX_CLASSES]]
    return sheets


def gallery(images: ImageSet, mistakes: list[dict[str, Any]], out_dir: str | os.PathLike,
            model: keras.Model | None = None,
            exemplars: list[tuple[int, int]] | None = None,
            geometry: Geometry | None = None) -> str:
    """Writes OUT_DIR/mistakes.png (the mistakes, each with the heat map of the output it is
    explained by: the class it was taken for; for a task with a `geometry`, each with the
    answers its mistake row says to draw, and no heat map) and OUT_DIR/gradcam.png (the
    `exemplars`, an example of each class as (position, class), with the heat map of its
    class); returns the HTML sections that show them."""
    cam, why = _gradcam(model) if geometry is None else (None, "")
    out, parts = Path(out_dir), []
    sheets = _sheets(images, mistakes, cam, exemplars or [])
    drawn = {m["index"]: m["drawn"] for m in mistakes if "drawn" in m}
    tiles = iter(_tiles(images, [item for items in sheets.values() for item in items], cam,
                        drawn, geometry))
    for name, items in sheets.items():
        plotting.contact_sheet([t for _ in items for t in next(tiles)], out / name)
    if mistakes and drawn:
        parts += ["<h2>The images with the most missed and false boxes</h2><p>White: the "
                  "true boxes; in colour: the boxes found, with their scores.</p>",
                  plotting.img_tag(out / MISTAKES_PNG, "most missed and false boxes")]
    elif mistakes:
        note = " (beside each: where the model looked for the class it chose)" if cam else ""
        parts += [f"<h2>Most confident mistakes{note}</h2>",
                  plotting.img_tag(out / MISTAKES_PNG, "most confident mistakes")]
    if cam is not None:
        parts += [f"<h2>Where the model looks: Grad-CAM, one example per class</h2><p>Heat map "
                  f"of each example's own class over layer <code>{html.escape(cam.layer)}"
                  "</code> (red: most support).</p>",
                  plotting.img_tag(out / CLASSES_PNG, "Grad-CAM per class")]
    elif why:
        parts.append(f"<p>No Grad-CAM heat maps: {html.escape(why)}</p>")
    return "".join(parts)
