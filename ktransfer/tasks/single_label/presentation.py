"""What evaluation, the report and the model card show of a single_label run."""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import numpy as np

from ktransfer.runs import plotting
from ktransfer.runs.escape import md_code
from ktransfer.tasks.calibration import plot_reliability, reliability
from ktransfer.tasks.plots import LABELLED_CLASSES, plot_per_class
from ktransfer.tasks.presentation import Presentation
from ktransfer.tasks.single_label.core import (
    SOFTMAX,
    per_class_rows,
    top_k_hits,
    uncertainty_scores,
)
from ktransfer.tasks.task import table


def summarize(probabilities: np.ndarray, labels: np.ndarray, class_names: list[str],
              names: list[str] | None = None, top_k: int = 5, mistakes: int = 12
              ) -> dict[str, Any]:
    """Metrics of predictions `probabilities` [N, C] against `labels` [N] (ints)."""
    predicted = probabilities.argmax(axis=1)
    k = min(top_k, len(class_names))
    per_class, macro_f1, confusion = per_class_rows(class_names, labels, predicted)
    wrong = np.flatnonzero(predicted != labels)
    confidence = probabilities[np.arange(len(labels)), predicted]
    worst = wrong[np.argsort(-confidence[wrong], kind="stable")][:mistakes]
    return {
        "num_examples": int(len(labels)),
        "accuracy": float((predicted == labels).mean()),
        f"top{k}_accuracy": float(top_k_hits(probabilities, labels, k).mean()),
        "macro_f1": macro_f1,
        "per_class": per_class,
        "confusion_matrix": confusion,
        "class_names": list(class_names),
        "mistakes": [
            {"index": int(i), "file": None if names is None else str(names[i]),
             "true": class_names[labels[i]], "predicted": class_names[predicted[i]],
             "confidence": float(confidence[i]), "how": f"{confidence[i]:.0%}",
             "output": int(predicted[i])}
            for i in worst
        ],
    }


def plot_confusion(summary: dict[str, Any], path: str | os.PathLike) -> None:
    """The confusion matrix (rows: true class, columns: predicted) twice: counts, and each row
    divided by its total (the share of a class's examples given each answer, so a rare class
    reads as clearly as a common one). Values in the cells up to 30 classes, class names up
    to 40; at most 16 inches high whatever the class count."""
    plt = plotting.pyplot()
    cm = np.array(summary["confusion_matrix"])
    rows = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    n = len(summary["class_names"])
    side = min(2 + 0.45 * n, 16.0)
    fig, axes = plt.subplots(1, 2, figsize=(2 * side, side - 0.4), dpi=100)
    _confusion_panel(axes[0], cm, summary["class_names"], [str(v) for v in cm.ravel()],
                     "counts")
    _confusion_panel(axes[1], rows, summary["class_names"],
                     [f"{v:.0%}" for v in rows.ravel()], "share of each true class")
    fig.suptitle(f"confusion matrix (accuracy {summary['accuracy']:.1%})")
    fig.tight_layout()
    plotting.save(fig, path)


def _confusion_panel(ax: Any, values: np.ndarray, names: list[str], cells: list[str],
                     title: str) -> None:
    n = len(names)
    ax.imshow(values, cmap="Blues")
    if n <= LABELLED_CLASSES:
        ax.set_xticks(range(n), names, rotation=90 if n > 8 else 0)
        ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted" if n <= LABELLED_CLASSES else "predicted (classes in label order)")
    ax.set_ylabel("true")
    if n <= 30:
        light = values > values.max() / 2
        for k, text in enumerate(cells):
            i, j = divmod(k, n)
            ax.text(j, i, text, ha="center", va="center", fontsize=7 if n > 12 else 8,
                    color="white" if light[i, j] else "black")
    ax.set_title(title, fontsize=10)


def _uncertainty_lines(summary: dict[str, Any]) -> list[str]:
    found = []
    if "set_coverage" in summary:
        found.append(f"conformal sets: coverage {summary['set_coverage']:.4f} (asked "
                     f"{summary['coverage_asked']:.2f}), mean size "
                     f"{summary['mean_set_size']:.2f} classes")
    if "abstained" in summary:
        found.append(f"abstained on {summary['abstained']:.1%} (asked "
                     f"{summary['abstain_rate_asked']:.1%} of validation); accuracy of the "
                     f"answers given {summary['accuracy_answered']:.4f}")
    return found



class SingleLabelPresentation(Presentation):
    """The confusion matrix, per-class metrics, calibration, conformal sets."""

    def summarize(self, outputs: np.ndarray, targets: np.ndarray, names: tuple[str, ...],
                  ids: list[str] | None, top_k: int, state: dict[str, Any]) -> dict[str, Any]:
        summary = summarize(outputs, targets, list(names), ids, top_k)
        ece, bins = reliability(*SOFTMAX.confidence(outputs, targets))
        return {**summary, "ece": ece, "reliability": bins,
                **uncertainty_scores(outputs, targets, state)}

    def lines(self, summary: dict[str, Any], top_k: int) -> list[str]:
        key = f"top{top_k}_accuracy"  # top-k of k classes is always 1: not printed
        top = (f"top-{top_k}: {summary[key]:.4f}  "
               if top_k < len(summary["class_names"]) and key in summary else "")
        return [f"examples: {summary['num_examples']}  accuracy: {summary['accuracy']:.4f}  "
                f"{top}macro F1: {summary['macro_f1']:.4f}",
                *_uncertainty_lines(summary),
                *(f"  {r['class']:<20} precision {r['precision']:.3f}  recall "
                  f"{r['recall']:.3f}  F1 {r['f1']:.3f}  ({r['support']} examples)"
                  for r in summary["per_class"])]

    def sections(self, summary: dict[str, Any], out_dir: Path) -> str:
        plot_confusion(summary, out_dir / "confusion.png")
        plot_per_class(summary["per_class"], out_dir / "per_class.png")
        rows = [[r["class"], r["precision"], r["recall"], r["f1"], r["support"]]
                for r in summary["per_class"]]
        plot_reliability(summary["reliability"], out_dir / "reliability.png",
                         f"reliability (ECE {summary['ece']:.3f})")
        return ("<h3>Confusion matrix</h3>"
                + plotting.img_tag(out_dir / "confusion.png", "confusion matrix")
                + "<h3>Per class</h3>"
                + plotting.img_tag(out_dir / "per_class.png", "per-class metrics")
                + table(["class", "precision", "recall", "F1", "examples"], rows)
                + "<h3>Calibration</h3><p>Expected calibration error "
                f"{summary['ece']:.3f}: how far the top class's probability is from how often "
                "it is right (0 is perfect).</p>"
                + plotting.img_tag(out_dir / "reliability.png", "reliability diagram")
                + "".join(f"<p>{html.escape(line)}</p>" for line in _uncertainty_lines(summary)))

    def limits(self, summary: dict[str, Any]) -> list[str]:
        """The classes of lowest recall and what they are taken for most often."""
        rows = [r for r in summary["per_class"] if r["support"]]
        names, confusion = summary["class_names"], np.array(summary["confusion_matrix"])
        found = []
        for r in sorted(rows, key=lambda r: r["recall"])[:3]:
            i = names.index(r["class"])
            wrong = confusion[i].copy()
            wrong[i] = 0
            taken = (f", most often taken for {md_code(names[int(wrong.argmax())])}"
                     if wrong.any() else "")
            found.append(f"class {md_code(r['class'])}: recall {r['recall']:.3f} of {r['support']} "
                         f"examples{taken}")
        return found

    def exemplars(self, targets: np.ndarray) -> list[tuple[int, int]]:
        firsts = {int(c): i for i, c in reversed(list(enumerate(targets)))}
        return [(firsts[c], c) for c in sorted(firsts)]
