"""What evaluation, the report and the model card show of a multi_label run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_fscore_support

from ktransfer.runs import plotting
from ktransfer.runs.escape import md_code
from ktransfer.tasks.calibration import plot_reliability, reliability
from ktransfer.tasks.multi_label.core import DEFAULT_THRESHOLD, SIGMOID, MultiLabel, decisions
from ktransfer.tasks.plots import LABELLED_CLASSES, plot_per_class
from ktransfer.tasks.presentation import Presentation
from ktransfer.tasks.task import table


def _pr_curves(outputs: np.ndarray, truth: np.ndarray, names: tuple[str, ...],
               points: int = 50) -> list[dict[str, Any]]:
    """Precision-recall points of the labels of lowest AP (at most 12), for the plot."""
    found = []
    for j in range(truth.shape[1]):
        if not truth[:, j].any():
            continue
        order = np.argsort(-outputs[:, j], kind="stable")
        hits = np.cumsum(truth[order, j])
        precision = hits / np.arange(1, len(order) + 1)
        recall = hits / truth[:, j].sum()
        keep = np.unique(np.linspace(0, len(order) - 1, points).astype(int))
        found.append({"label": names[j], "precision": precision[keep].round(4).tolist(),
                      "recall": recall[keep].round(4).tolist(),
                      "ap": float(average_precision_score(truth[:, j], outputs[:, j]))})
    return sorted(found, key=lambda c: c["ap"])[:12]


def _plot_curves(curves: list[dict[str, Any]], path: Path) -> None:
    plt = plotting.pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for curve in curves:
        ax.plot(curve["recall"], curve["precision"],
                label=f"{curve['label']} (AP {curve['ap']:.2f})")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_ylim(0, 1.05)
    if len(curves) <= LABELLED_CLASSES:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7)
    ax.set_title("precision-recall, labels of lowest AP")
    fig.tight_layout()
    plotting.save(fig, path)


def _mistakes(outputs: np.ndarray, truth: np.ndarray, decided: np.ndarray,
              names: tuple[str, ...], ids: list[str] | None, count: int = 12
              ) -> list[dict[str, Any]]:
    """The examples with the most confident wrong decisions (a label given that is not
    there, or missed), each explained by its most confidently wrong label."""
    wrongness = np.where(decided != truth, np.abs(outputs - truth), 0.0)
    worst = np.argsort(-wrongness.max(axis=1), kind="stable")
    out = []
    for i in worst[:count]:
        if wrongness[i].max() <= 0:
            break
        label = int(np.argmax(wrongness[i]))
        out.append({"index": int(i), "file": None if ids is None else str(ids[i]),
                    "true": "|".join(n for n, t in zip(names, truth[i], strict=True) if t),
                    "predicted": "|".join(n for n, d in zip(names, decided[i], strict=True)
                                          if d),
                    "confidence": float(wrongness[i, label]),
                    "how": f"{names[label]} {'missed' if truth[i, label] else 'wrong'} "
                           f"{outputs[i, label]:.0%}",
                    "output": label})
    return out



class MultiLabelPresentation(Presentation):
    """Per-label F1, precision-recall curves, the worst examples, calibration."""

    task: MultiLabel

    def summarize(self, outputs: np.ndarray, targets: np.ndarray, names: tuple[str, ...],
                  ids: list[str] | None, top_k: int, state: dict[str, Any]) -> dict[str, Any]:
        truth, decided = targets > 0.5, decisions(outputs, state)
        precision, recall, f1, support = precision_recall_fscore_support(
            truth, decided, average=None, zero_division=0)
        thresholds = state.get("thresholds") or [DEFAULT_THRESHOLD] * len(names)
        rows = [{"label": name, "precision": float(p), "recall": float(r), "f1": float(f),
                 "ap": float(average_precision_score(truth[:, j], outputs[:, j]))
                 if truth[:, j].any() else 0.0, "support": int(n),
                 "threshold": float(thresholds[j])}
                for j, (name, p, r, f, n) in enumerate(zip(names, precision, recall, f1,
                                                           support, strict=True))]
        return {"num_examples": int(len(targets)), **self.task.metrics_of(outputs, targets, state),
                "per_label": rows,
                "class_names": list(names),
                "curves": _pr_curves(outputs, truth, names),
                **dict(zip(("ece", "reliability"),
                           reliability(*SIGMOID.confidence(outputs, targets)), strict=True)),
                "mistakes": _mistakes(outputs, truth, decided, names, ids)}

    def lines(self, summary: dict[str, Any], top_k: int) -> list[str]:
        return [f"examples: {summary['num_examples']}  macro F1: {summary['macro_f1']:.4f}  "
                f"micro F1: {summary['micro_f1']:.4f}  mAP: {summary['map']:.4f}  "
                f"subset accuracy: {summary['subset_accuracy']:.4f}",
                *(f"  {r['label']:<20} precision {r['precision']:.3f}  recall "
                  f"{r['recall']:.3f}  F1 {r['f1']:.3f}  AP {r['ap']:.3f}  threshold "
                  f"{r['threshold']:.2f}  ({r['support']} examples)"
                  for r in summary["per_label"])]

    def sections(self, summary: dict[str, Any], out_dir: Path) -> str:
        plot_per_class(summary["per_label"], out_dir / "per_label.png", key="label")
        _plot_curves(summary["curves"], out_dir / "pr_curves.png")
        plot_reliability(summary["reliability"], out_dir / "reliability.png",
                         f"reliability (ECE {summary['ece']:.3f})")
        rows = [[r["label"], r["precision"], r["recall"], r["f1"], r["ap"], r["threshold"],
                 r["support"]] for r in summary["per_label"]]
        return (f"<p>macro F1 {summary['macro_f1']:.3f}, micro F1 {summary['micro_f1']:.3f}, "
                f"mAP {summary['map']:.3f}, subset accuracy "
                f"{summary['subset_accuracy']:.3f} (F1 at each label's threshold, chosen on "
                "the validation split)</p><h3>Per label</h3>"
                + plotting.img_tag(out_dir / "per_label.png", "per-label metrics")
                + "<h3>Precision-recall curves</h3>"
                + plotting.img_tag(out_dir / "pr_curves.png", "precision-recall curves")
                + table(["label", "precision", "recall", "F1", "AP", "threshold", "examples"],
                        rows)
                + "<h3>Calibration</h3><p>Expected calibration error "
                f"{summary['ece']:.3f}: how far each label's probability is from how often "
                "the label is there (0 is perfect).</p>"
                + plotting.img_tag(out_dir / "reliability.png", "reliability diagram"))

    def limits(self, summary: dict[str, Any]) -> list[str]:
        """The labels of lowest average precision."""
        rows = [r for r in summary["per_label"] if r["support"]]
        return [f"label {md_code(r['label'])}: average precision {r['ap']:.3f}, recall "
                f"{r['recall']:.3f} at its threshold, {r['support']} examples"
                for r in sorted(rows, key=lambda r: r["ap"])[:3]]

    def exemplars(self, targets: np.ndarray) -> list[tuple[int, int]]:
        return [(int(np.flatnonzero(targets[:, c] > 0.5)[0]), c)
                for c in range(targets.shape[1]) if targets[:, c].any()]
