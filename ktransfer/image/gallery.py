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

from ktransfer import plotting
from ktransfer.errors import ConfigError
from ktransfer.image.gradcam import GradCAM, overlay
from ktransfer.image.imageset import ImageSet
from ktransfer.image.pipeline import resize

log = logging.getLogger(__name__)
MISTAKES_PNG = "mistakes.png"
CLASSES_PNG = "gradcam.png"
MAX_CLASSES = 20  # in the per-class sample


def _pixels(images: ImageSet, wanted: set[int]) -> dict[int, np.ndarray]:
    """{position: uint8 [H, W, 3]} of the images at `wanted` positions."""
    found: dict[int, np.ndarray] = {}
    for i, (image, _) in enumerate(images.dataset().as_numpy_iterator()):
        if i in wanted:
            found[i] = image
            if len(found) == len(wanted):
                break
    return found


def _panels(images: ImageSet, items: list[tuple[int, int, str]], cam: GradCAM | None,
            path: str | os.PathLike) -> None:
    """A grid of (position, class id, title) items: each image, and beside it (with `cam`) the
    heat map of that class over it."""
    plt = plotting.pyplot()
    pixels = _pixels(images, {i for i, _, _ in items})
    per_item = 2 if cam is not None else 1
    cols = min(6, per_item * len(items))
    rows = (per_item * len(items) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(1.8 * cols, 2.1 * rows), dpi=100,
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    shown = {i: pixels[i] for i, _, _ in items}
    heat = None
    if cam is not None:
        shown = {i: resize(p, cam.size).numpy() for i, p in shown.items()}
        heat = cam.heatmaps(np.stack([shown[i] for i, _, _ in items]), [c for _, c, _ in items])
    for k, (i, _, title) in enumerate(items):
        ax = axes.flat[per_item * k]
        ax.imshow(np.asarray(shown[i]).astype(np.uint8))
        ax.set_title(title, fontsize=8)
        if heat is not None:
            axes.flat[per_item * k + 1].imshow(overlay(shown[i], heat[k]))
    fig.tight_layout()
    plotting.save(fig, path)


def _gradcam(model: keras.Model | None) -> tuple[GradCAM | None, str]:
    """(Grad-CAM of `model`, '') or (None, why there is none)."""
    if model is None:
        return None, "no model"
    try:
        return GradCAM(model), ""
    except (ConfigError, ValueError, KeyError) as exc:
        log.info("report: no Grad-CAM heat maps (%s)", exc)
        return None, str(exc).removeprefix("--explain_layer: ")


def gallery(images: ImageSet, mistakes: list[dict[str, Any]], out_dir: str | os.PathLike,
            model: keras.Model | None = None) -> str:
    """Writes OUT_DIR/mistakes.png (the mistakes, each with the heat map of the class it was
    taken for) and OUT_DIR/gradcam.png (the first example of each class, with the heat map of
    its class); returns the HTML sections that show them."""
    cam, why = _gradcam(model)
    out, parts = Path(out_dir), []
    if mistakes:
        ids = {name: k for k, name in enumerate(images.class_names)}
        _panels(images, [(m["index"], ids[m["predicted"]], f"{m['true']} -> {m['predicted']}\n"
                          f"{m['confidence']:.0%}") for m in mistakes], cam, out / MISTAKES_PNG)
        note = " (beside each: where the model looked for the class it chose)" if cam else ""
        parts += [f"<h2>Most confident mistakes{note}</h2>",
                  plotting.img_tag(out / MISTAKES_PNG, "most confident mistakes")]
    if cam is not None:
        firsts = {int(c): i for i, c in reversed(list(enumerate(images.labels)))}
        items = [(firsts[c], c, images.class_names[c]) for c in sorted(firsts)[:MAX_CLASSES]]
        _panels(images, items, cam, out / CLASSES_PNG)
        parts += [f"<h2>Where the model looks: Grad-CAM, one example per class</h2><p>Heat map "
                  f"of each example's own class over layer <code>{html.escape(cam.layer)}"
                  "</code> (red: most support).</p>",
                  plotting.img_tag(out / CLASSES_PNG, "Grad-CAM per class")]
    elif why:
        parts.append(f"<p>No Grad-CAM heat maps: {html.escape(why)}</p>")
    return "".join(parts)
