"""What evaluation, the report and the model card show of a detector: COCO's metrics, AP per
class with its number of boxes, and the weakest classes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ktransfer.runs.escape import md_code
from ktransfer.tasks.detection.core import evaluated
from ktransfer.tasks.detection.scoring import coco_scores
from ktransfer.tasks.presentation import Presentation
from ktransfer.tasks.task import table

SHOWN = ("map", "ap50", "ap75", "ap_small", "ap_medium", "ap_large", "ar100")


class DetectionPresentation(Presentation):
    """COCO's metrics and AP per class (see the module docstring)."""

    def summarize(self, outputs: np.ndarray, targets: np.ndarray, names: tuple[str, ...],
                  ids: list[str] | None, top_k: int, state: dict[str, Any]) -> dict[str, Any]:
        """The metrics of `scoring.coco_scores` and per class: its AP and its boxes."""
        found, classes, size = evaluated(outputs, state)
        metrics, per_class = coco_scores(targets, found, size, classes)
        ids_ = targets[..., 0][targets[..., 0] >= 0].astype(np.int64)
        boxes = np.bincount(ids_, minlength=classes)
        return {"num_examples": int(len(targets)), "class_names": list(names), **metrics,
                "per_class": [{"class": n, "ap": a, "boxes": int(b)}
                              for n, a, b in zip(names, per_class, boxes, strict=True)],
                "mistakes": []}

    def lines(self, summary: dict[str, Any], top_k: int) -> list[str]:
        shown = "  ".join(f"{k}: {summary[k]:.4f}" for k in SHOWN if k in summary)
        return [f"images: {summary['num_examples']}  {shown}", "  AP@[.50:.95] per class:",
                *(f"  {r['class']}: {r['ap']:.4f} ({r['boxes']} boxes)" if r["ap"] >= 0
                  else f"  {r['class']}: no box in this split" for r in summary["per_class"])]

    def sections(self, summary: dict[str, Any], out_dir: Path) -> str:
        head = ", ".join(f"{k} {summary[k]:.3f}" for k in SHOWN if k in summary)
        rows = [[r["class"], r["ap"] if r["ap"] >= 0 else "no box", r["boxes"]]
                for r in summary["per_class"]]
        return (f"<p>COCO metrics (pycocotools; boxes as the model's input sees them): "
                f"{head}</p><h3>AP@[.50:.95] per class</h3>"
                + table(["class", "AP", "boxes"], rows))

    def limits(self, summary: dict[str, Any]) -> list[str]:
        """The classes it finds worst."""
        scored = sorted((r for r in summary["per_class"] if r["ap"] >= 0),
                        key=lambda r: r["ap"])[:3]
        return [f"class {md_code(r['class'])}: AP@[.50:.95] {r['ap']:.3f} on {r['boxes']} "
                "boxes" for r in scored]
