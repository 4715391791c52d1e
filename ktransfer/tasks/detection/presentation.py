"""What evaluation, the report and the model card show of a detector: COCO's metrics, AP per
class with its number of boxes, the precision-recall curve of each class at IoU 0.5, the
images with the most missed and false boxes (drawn by the image gallery), and the weakest
classes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ktransfer.runs import plotting
from ktransfer.runs.escape import md_code
from ktransfer.tasks.detection.core import evaluated, kept, records
from ktransfer.tasks.detection.scoring import image_errors, scores_and_curves
from ktransfer.tasks.presentation import Presentation
from ktransfer.tasks.task import table

SHOWN = ("map", "ap50", "ap75", "ap_small", "ap_medium", "ap_large", "ar100")
WORST = 8  # images shown with their missed and false boxes
PR_PNG = "precision_recall.png"


class DetectionPresentation(Presentation):
    """COCO's metrics, AP per class and the worst images (see the module docstring)."""

    def summarize(self, outputs: np.ndarray, targets: np.ndarray, names: tuple[str, ...],
                  ids: list[str] | None, top_k: int, state: dict[str, Any]) -> dict[str, Any]:
        """The metrics of `scoring.coco_scores`; per class its AP and its boxes; the
        precision-recall curves at IoU 0.5; and as `mistakes` the images with the most boxes
        missed or false at the run's --min_score, each with its boxes to draw."""
        found, classes, size = evaluated(outputs, state)
        metrics, per_class, curves = scores_and_curves(targets, found, size, classes)
        ids_ = targets[..., 0][targets[..., 0] >= 0].astype(np.int64)
        boxes = np.bincount(ids_, minlength=classes)
        return {"num_examples": int(len(targets)), "class_names": list(names), **metrics,
                "per_class": [{"class": n, "ap": a, "boxes": int(b)}
                              for n, a, b in zip(names, per_class, boxes, strict=True)],
                "precision_recall": curves,
                "mistakes": worst_images(targets, found, names, kept(state)["min_score"])}

    def lines(self, summary: dict[str, Any], top_k: int) -> list[str]:
        shown = "  ".join(f"{k}: {summary[k]:.4f}" for k in SHOWN if k in summary)
        return [f"images: {summary['num_examples']}  {shown}", "  AP@[.50:.95] per class:",
                *(f"  {r['class']}: {r['ap']:.4f} ({r['boxes']} boxes)" if r["ap"] >= 0
                  else f"  {r['class']}: no box in this split" for r in summary["per_class"])]

    def sections(self, summary: dict[str, Any], out_dir: Path) -> str:
        head = ", ".join(f"{k} {summary[k]:.3f}" for k in SHOWN if k in summary)
        rows = [[r["class"], r["ap"] if r["ap"] >= 0 else "no box", r["boxes"]]
                for r in summary["per_class"]]
        plot_precision_recall(summary["precision_recall"], summary["class_names"],
                              out_dir / PR_PNG)
        return (f"<p>COCO metrics (pycocotools; boxes as the model's input sees them): "
                f"{head}</p><h3>AP@[.50:.95] per class</h3>"
                + table(["class", "AP", "boxes"], rows)
                + "<h3>Precision and recall at IoU 0.5, per class</h3>"
                + plotting.img_tag(out_dir / PR_PNG, "precision-recall curves"))

    def limits(self, summary: dict[str, Any]) -> list[str]:
        """The classes it finds worst."""
        scored = sorted((r for r in summary["per_class"] if r["ap"] >= 0),
                        key=lambda r: r["ap"])[:3]
        return [f"class {md_code(r['class'])}: AP@[.50:.95] {r['ap']:.3f} on {r['boxes']} "
                "boxes" for r in scored]


def worst_images(targets: np.ndarray, found: dict[str, np.ndarray],
                 names: tuple[str, ...], min_score: float) -> list[dict[str, Any]]:
    """The WORST images with the most true boxes missed plus found boxes false (IoU 0.5, boxes
    scored at least `min_score`), worst first, as the report's mistakes: position, what was
    true and found, and `drawn` (the found boxes as `detections` records, the true ones as
    `truth`, fractions of the image) for the gallery."""
    rows = []
    for i, target in enumerate(targets):
        keep = found["scores"][i][:int(found["count"][i])] >= min_score
        boxes, classes = found["boxes"][i][:len(keep)][keep], found["classes"][i][:len(keep)][keep]
        missed, false = image_errors(target, boxes, classes)
        if missed + false:
            truth = target[target[:, 0] >= 0]
            rows.append((missed + false, i, {
                "index": i, "output": 0, "true": f"{len(truth)} true",
                "predicted": f"{len(boxes)} found", "how": f"{missed} missed, {false} false",
                "drawn": {"detections": records(boxes, classes, names,
                                                found["scores"][i][:len(keep)][keep]),
                          "truth": records(truth[:, 1:], truth[:, 0], names)}}))
    return [row for _, _, row in sorted(rows, key=lambda r: (-r[0], r[1]))[:WORST]]


def plot_precision_recall(curves: dict[str, Any], names: list[str], path: Path) -> None:
    """Each class's precision against recall at IoU 0.5 (COCO's interpolated curve)."""
    plt = plotting.pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=100)
    recall = np.asarray(curves["recall"])
    for name, precision in zip(names, curves["precision"], strict=True):
        precision = np.asarray(precision)
        if (precision >= 0).any():
            ax.plot(recall[precision >= 0], precision[precision >= 0], label=name)
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.05))
    if len(names) <= 20:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.tight_layout()
    plotting.save(fig, path)
