"""Plots the classification tasks share: per-class (per-label) precision, recall and F1."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ktransfer.runs import plotting

LABELLED_CLASSES = 40  # beyond this, plots drop per-class labels (and the bars, the best)


def plot_per_class(rows: list[dict[str, Any]], path: str | os.PathLike,
                   key: str = "class") -> None:
    """Precision, recall and F1 per class as grouped bars (with more than 40 classes, the 40
    of lowest F1); `rows` as in evaluation.json's per_class."""
    plt = plotting.pyplot()
    title = "per class" if key == "class" else "per label"
    if len(rows) > LABELLED_CLASSES:
        title = f"the {LABELLED_CLASSES} {key}es of lowest F1 (of {len(rows)})".replace(
            "labeles", "labels")
        rows = sorted(rows, key=lambda r: r["f1"])[:LABELLED_CLASSES]
    n = len(rows)
    x = np.arange(n)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * n + 2), 3), dpi=100)
    for offset, name in ((-0.27, "precision"), (0.0, "recall"), (0.27, "f1")):
        ax.bar(x + offset, [r[name] for r in rows], width=0.27, label=name)
    ax.set_xticks(x, [r[key] for r in rows], rotation=90 if n > 8 else 0)
    ax.set_ylim(0, 1.05)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)  # outside the bars
    ax.set_title(title)
    fig.tight_layout()
    plotting.save(fig, path)
