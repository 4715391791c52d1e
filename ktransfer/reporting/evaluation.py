"""Evaluating a classifier on labelled examples of any kind: accuracy, top-k, per-class
precision / recall / F1, confusion matrix and the most confident mistakes; JSON plus PNG plots
and the modality's view of the mistakes (an image grid, a table of sentences).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import keras
import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from ktransfer import preflight
from ktransfer.config import (
    EvaluateConfig,
    RunConfig,
    build,
    given_run_fields,
    replace_run_fields,
)
from ktransfer.data import manifest
from ktransfer.data.examples import Examples
from ktransfer.data.splits import pick
from ktransfer.deploy import prediction
from ktransfer.deploy.saving import Classifier, open_classifier
from ktransfer.deploy.serving import check_classifier
from ktransfer.errors import DataError
from ktransfer.modality import Feed, Modality
from ktransfer.reporting import plotting
from ktransfer.runs import atomic

MISTAKES_HTML = "mistakes.html"


def top_k_hits(probabilities: np.ndarray, labels: np.ndarray, k: int,
               chunk: int = 4096) -> np.ndarray:
    """bool [N]: the true class is among the `k` most probable, a tie at the boundary not
    counted as a hit (fewer than `k` other classes have at least its probability). Memory is
    linear in examples and classes (worked through `chunk` rows at a time)."""
    hits = np.empty(len(labels), dtype=bool)
    for start in range(0, len(labels), chunk):
        p, y = probabilities[start:start + chunk], labels[start:start + chunk]
        true = p[np.arange(len(p)), y][:, None]
        hits[start:start + chunk] = (p >= true).sum(axis=1) - 1 < k
    return hits


def scores(probabilities: np.ndarray, labels: np.ndarray, model: keras.Model,
           label_smoothing: float = 0.0) -> dict[str, float]:
    """What `model.evaluate` reports (loss: cross-entropy with label smoothing plus the
    model's regularisation losses; accuracy; top-5 with more than 5 classes), from
    probabilities [N, C] already predicted, so the test set is predicted once."""
    num_classes = probabilities.shape[1]
    target = np.eye(num_classes)[labels] * (1 - label_smoothing) + label_smoothing / num_classes
    clipped = np.clip(probabilities, 1e-7, 1 - 1e-7)
    regularization = float(sum(float(keras.ops.convert_to_numpy(x)) for x in model.losses))
    out = {"loss": float(np.mean(-np.sum(target * np.log(clipped), axis=1))) + regularization,
           "accuracy": float(np.mean(probabilities.argmax(axis=1) == labels))}
    if num_classes > 5:
        out["top5_accuracy"] = float(top_k_hits(probabilities, labels, 5).mean())
    return out


def _per_class(class_names: list[str], labels: np.ndarray, predicted: np.ndarray
               ) -> tuple[list[dict[str, Any]], float, list[list[int]]]:
    """(rows of precision / recall / F1 / support, macro F1 over present classes, confusion)."""
    ids = list(range(len(class_names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=ids, zero_division=0)
    rows = [{"class": name, "precision": float(p), "recall": float(r), "f1": float(f),
             "support": int(n)}
            for name, p, r, f, n in zip(class_names, precision, recall, f1, support, strict=True)]
    macro = float(np.mean(f1[support > 0])) if (support > 0).any() else 0.0
    return rows, macro, confusion_matrix(labels, predicted, labels=ids).tolist()


def summarize(probabilities: np.ndarray, labels: np.ndarray, class_names: list[str],
              names: list[str] | None = None, top_k: int = 5, mistakes: int = 12
              ) -> dict[str, Any]:
    """Metrics of predictions `probabilities` [N, C] against `labels` [N] (ints)."""
    predicted = probabilities.argmax(axis=1)
    k = min(top_k, len(class_names))
    per_class, macro_f1, confusion = _per_class(class_names, labels, predicted)
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
             "confidence": float(confidence[i])}
            for i in worst
        ],
    }


LABELLED_CLASSES = 40  # beyond this, plots drop per-class labels (and the bars, the best)


def plot_confusion(summary: dict[str, Any], path: str | os.PathLike) -> None:
    """The confusion matrix (rows: true class, columns: predicted), counts in the cells up to
    30 classes, class names up to 40; at most 16 inches a side whatever the class count."""
    plt = plotting.pyplot()
    cm = np.array(summary["confusion_matrix"])
    names = summary["class_names"]
    n = len(names)
    side = min(2 + 0.45 * n, 16.0)
    fig, ax = plt.subplots(figsize=(side, side - 0.4), dpi=100)
    ax.imshow(cm, cmap="Blues")
    if n <= LABELLED_CLASSES:
        ax.set_xticks(range(n), names, rotation=90 if n > 8 else 0)
        ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted" if n <= LABELLED_CLASSES else "predicted (classes in label order)")
    ax.set_ylabel("true")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_title(f"confusion matrix (accuracy {summary['accuracy']:.1%})")
    fig.tight_layout()
    plotting.save(fig, path)


def plot_per_class(summary: dict[str, Any], path: str | os.PathLike) -> None:
    """Precision, recall and F1 per class as grouped bars (with more than 40 classes, the 40
    of lowest F1)."""
    plt = plotting.pyplot()
    rows = summary["per_class"]
    title = "per class"
    if len(rows) > LABELLED_CLASSES:
        title = f"the {LABELLED_CLASSES} classes of lowest F1 (of {len(rows)})"
        rows = sorted(rows, key=lambda r: r["f1"])[:LABELLED_CLASSES]
    n = len(rows)
    x = np.arange(n)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * n + 2), 3), dpi=100)
    for offset, key in ((-0.27, "precision"), (0.0, "recall"), (0.27, "f1")):
        ax.bar(x + offset, [r[key] for r in rows], width=0.27, label=key)
    ax.set_xticks(x, [r["class"] for r in rows], rotation=90 if n > 8 else 0)
    ax.set_ylim(0, 1.05)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)  # outside the bars
    ax.set_title(title)
    fig.tight_layout()
    plotting.save(fig, path)


def evaluate(model: keras.Model, modality: Modality, feed: Feed, class_names: list[str],
             examples: Examples, out_dir: str | os.PathLike, batch_size: int = 64,
             top_k: int = 5, probabilities: np.ndarray | None = None) -> dict[str, Any]:
    """Evaluates and writes `out_dir/evaluation.json`, `confusion.png`, `per_class.png` and
    the mistakes (`mistakes.html`, with what the modality adds); returns the summary.

    `probabilities` [N, C] of `examples` when already predicted (saves a second pass).
    """
    examples = examples.align(class_names)
    if len(examples) == 0:
        raise DataError("--data: no examples to evaluate")
    if probabilities is None:
        probabilities = prediction.probabilities(model, feed, examples, batch_size)
    summary = summarize(probabilities, examples.labels, class_names, examples.names(), top_k)
    out = Path(out_dir)
    plot_confusion(summary, out / "confusion.png")
    plot_per_class(summary, out / "per_class.png")
    gallery = modality.presentation.gallery(model, feed, examples, summary["mistakes"], out)
    atomic.write_text(out / MISTAKES_HTML, gallery)
    atomic.write_json(out / "evaluation.json", summary)
    return summary


def saved_split(cfg: EvaluateConfig, clf: Classifier) -> Examples:
    """The labelled examples `evaluate` scores: `--split` of `--data`, or, without `--data`, the
    split of the classifier's run as `train` made it (same flags, same seed)."""
    if not cfg.data:
        if clf.run_dir is None:
            raise DataError("--data: is required when --model is not a run directory")
        if cfg.split == "all":
            raise DataError("--split: all needs --data (a run's examples are split)")
        run = _run_config(cfg, clf)
        splits = clf.modality.load_splits(run)
        manifest.check_unchanged(Path(clf.run_dir),
                                 manifest.describe(splits, manifest.sources(run.data)))
        chosen = {"train": splits.train, "val": splits.val, "test": splits.test}[cfg.split]
        if chosen is None:
            raise DataError(f"--split: the run has no {cfg.split} split; pass --data")
        return chosen
    return pick(clf.modality.open_source(cfg.data, _run_config(cfg, clf), "data"), cfg.split,
                cfg.data)


def _run_config(cfg: EvaluateConfig, clf: Classifier) -> RunConfig:
    """The reading options of the classifier's run (or the defaults for a bare .keras file),
    with this command's --data and the reading options it gives (`from_run` fields)."""
    run = clf.run_config() or build(data=cfg.data, modality=clf.modality.name)
    return replace_run_fields(run, {"data": cfg.data or run.data.data,
                                    **given_run_fields(cfg)})


def evaluate_saved(cfg: EvaluateConfig) -> tuple[dict[str, Any], Path]:
    """`ktransfer.evaluate`: evaluates a saved classifier; returns (summary, output folder).
    Checks the flags first (pre-flight), as every public entry does."""
    preflight.check_evaluate(cfg)
    clf = open_classifier(cfg.model, unsafe=cfg.unsafe_load)
    check_classifier(clf.model, clf.class_names)
    views = len(clf.feed.views(cfg.tta))
    examples = saved_split(cfg, clf).align(clf.class_names)
    base = clf.run_dir or os.path.dirname(os.path.abspath(cfg.model))
    out = Path(cfg.output_dir or os.path.join(base, f"evaluation-{cfg.split}"))
    probs = (prediction.probabilities(clf.model, clf.feed, examples, cfg.batch_size, cfg.tta)
             if len(examples) else None)
    summary = evaluate(clf.model, clf.modality, clf.feed, clf.class_names, examples, out,
                       cfg.batch_size, cfg.top_k, probs)
    if cfg.tta != "none":  # beside the plain accuracy, from one more pass
        plain = prediction.probabilities(clf.model, clf.feed, examples, cfg.batch_size)
        summary["tta"] = {"views": cfg.tta, "passes": views, "accuracy": summary["accuracy"],
                          "accuracy_without": float(np.mean(plain.argmax(1) ==
                                                            examples.labels))}
        atomic.write_json(out / "evaluation.json", summary)
    return summary, out
