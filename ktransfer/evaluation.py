"""Evaluating a classifier on labelled images: accuracy, top-k, per-class precision / recall / F1,
confusion matrix and the most confident mistakes; JSON plus PNG plots.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import keras
import numpy as np

from ktransfer import atomic
from ktransfer.data.pipeline import make_dataset
from ktransfer.data.sources import ImageSet
from ktransfer.errors import DataError


def align(images: ImageSet, class_names: list[str], flag: str = "data") -> ImageSet:
    """`images` relabelled to the model's class order; classes the model does not know are an
    error (the model cannot be right about them), classes absent from the data are fine."""
    unknown = [c for c in images.class_names if c not in class_names]
    if unknown:
        raise DataError(f"--{flag}: class {unknown[0]!r} is not a class of the model "
                        f"(labels.txt: {', '.join(class_names[:20])})")
    index = {name: i for i, name in enumerate(class_names)}
    mapping = np.array([index[c] for c in images.class_names], dtype=np.int32)
    return dataclasses.replace(images, class_names=tuple(class_names),
                               labels=mapping[images.labels])


def predict(model: keras.Model, images: ImageSet, batch_size: int = 64) -> np.ndarray:
    """Class probabilities [N, C] for `images`, in order (resized as in training)."""
    if len(images) == 0:
        raise DataError("--data: no images to evaluate")
    size = int(model.input_shape[1])
    ds = make_dataset(images, image_size=size, batch_size=batch_size, training=False,
                      cache="none")
    return np.asarray(model.predict(ds.map(lambda x, y: x), verbose=0), dtype=np.float64)


def summarize(probabilities: np.ndarray, labels: np.ndarray, class_names: list[str],
              files: np.ndarray | None = None, top_k: int = 5, mistakes: int = 12
              ) -> dict[str, Any]:
    """Metrics of predictions `probabilities` [N, C] against `labels` [N] (ints)."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    num_classes = len(class_names)
    predicted = probabilities.argmax(axis=1)
    ids = list(range(num_classes))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=ids, zero_division=0)
    order = np.argsort(-probabilities, axis=1)
    k = min(top_k, num_classes)
    top_k_hit = (order[:, :k] == labels[:, None]).any(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    confidence = probabilities[np.arange(len(labels)), predicted]
    worst = wrong[np.argsort(-confidence[wrong], kind="stable")][:mistakes]
    return {
        "num_images": int(len(labels)),
        "accuracy": float((predicted == labels).mean()),
        f"top{k}_accuracy": float(top_k_hit.mean()),
        "macro_f1": float(np.mean(f1[support > 0])) if (support > 0).any() else 0.0,
        "per_class": [
            {"class": name, "precision": float(p), "recall": float(r), "f1": float(f),
             "support": int(s)}
            for name, p, r, f, s in zip(class_names, precision, recall, f1, support, strict=True)
        ],
        "confusion_matrix": confusion_matrix(labels, predicted, labels=ids).tolist(),
        "class_names": list(class_names),
        "mistakes": [
            {"index": int(i), "file": None if files is None else str(files[i]),
             "true": class_names[labels[i]], "predicted": class_names[predicted[i]],
             "confidence": float(confidence[i])}
            for i in worst
        ],
    }


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(summary: dict[str, Any], path: str | os.PathLike) -> None:
    """The confusion matrix (rows: true class, columns: predicted), counts in the cells."""
    plt = pyplot()
    cm = np.array(summary["confusion_matrix"])
    names = summary["class_names"]
    n = len(names)
    fig, ax = plt.subplots(figsize=(2 + 0.45 * n, 1.6 + 0.45 * n), dpi=100)
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(n), names, rotation=90 if n > 8 else 0)
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_title(f"confusion matrix (accuracy {summary['accuracy']:.1%})")
    fig.tight_layout()
    atomic.save_with(path, lambda p: fig.savefig(p, format="png"))
    plt.close(fig)


def plot_per_class(summary: dict[str, Any], path: str | os.PathLike) -> None:
    """Precision, recall and F1 per class as grouped bars."""
    plt = pyplot()
    rows = summary["per_class"]
    n = len(rows)
    x = np.arange(n)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * n + 2), 3), dpi=100)
    for offset, key in ((-0.27, "precision"), (0.0, "recall"), (0.27, "f1")):
        ax.bar(x + offset, [r[key] for r in rows], width=0.27, label=key)
    ax.set_xticks(x, [r["class"] for r in rows], rotation=90 if n > 8 else 0)
    ax.set_ylim(0, 1.05)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("per class")
    fig.tight_layout()
    atomic.save_with(path, lambda p: fig.savefig(p, format="png"))
    plt.close(fig)


def plot_mistakes(images: ImageSet, summary: dict[str, Any], path: str | os.PathLike) -> bool:
    """A grid of the most confident mistakes with true / predicted labels; False if none."""
    mistakes = summary["mistakes"]
    if not mistakes:
        return False
    plt = pyplot()
    wanted = {m["index"]: m for m in mistakes}
    pixels: dict[int, np.ndarray] = {}
    for i, (image, _) in enumerate(images.dataset().as_numpy_iterator()):
        if i in wanted:
            pixels[i] = image
            if len(pixels) == len(wanted):
                break
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
    atomic.save_with(path, lambda p: fig.savefig(p, format="png"))
    plt.close(fig)
    return True


def evaluate(model: keras.Model, class_names: list[str], images: ImageSet,
             out_dir: str | os.PathLike, batch_size: int = 64, top_k: int = 5
             ) -> dict[str, Any]:
    """Evaluates and writes `out_dir/evaluation.json`, `confusion.png`, `per_class.png` and
    `mistakes.png`; returns the summary."""
    images = align(images, class_names)
    probabilities = predict(model, images, batch_size)
    summary = summarize(probabilities, images.labels, class_names, images.files, top_k)
    out = Path(out_dir)
    plot_confusion(summary, out / "confusion.png")
    plot_per_class(summary, out / "per_class.png")
    plot_mistakes(images, summary, out / "mistakes.png")
    atomic.write_json(out / "evaluation.json", summary)
    return summary
