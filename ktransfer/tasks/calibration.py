"""Probabilities that can be trusted: temperature scaling and the expected calibration error.

Temperature scaling (Guo et al., 2017) divides a classifier's logits by one number T, fitted
on the validation split by the negative log-likelihood; the classes' order (and so accuracy) is
unchanged. T is folded into the model (the `logits` layer's kernel and bias divided by T), so
the saved model, its export and every copy of it give calibrated probabilities with no extra
layer. The expected calibration error (ECE) is the gap between confidence and accuracy,
averaged over 15 equal-width confidence bins weighted by their examples.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import optimize

from ktransfer.runs import plotting

if TYPE_CHECKING:  # annotations only
    import keras

    from ktransfer.tasks.task import Probabilities

BINS = 15
LOGITS_LAYER = "logits"  # the classification tasks' last Dense layer (before the activation)
LOG_T_RANGE = (-3.0, 3.0)  # T searched in [0.05, 20]


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = BINS
                ) -> tuple[float, list[dict[str, float]]]:
    """(ECE, rows per non-empty bin: its range, mean confidence, accuracy, count) of
    confidences [N] in [0, 1] and whether each was right [N]."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    ece, rows = 0.0, []
    for b in range(bins):
        inside = which == b
        if not inside.any():
            continue
        mean_conf, accuracy = float(confidence[inside].mean()), float(correct[inside].mean())
        ece += inside.mean() * abs(mean_conf - accuracy)
        rows.append({"low": float(edges[b]), "high": float(edges[b + 1]),
                     "confidence": mean_conf, "accuracy": accuracy, "count": int(inside.sum())})
    return float(ece), rows


def fit_temperature(probs: Probabilities, outputs: np.ndarray, targets: np.ndarray) -> float:
    """The T that minimises the negative log-likelihood of `outputs` with logits / T."""
    def nll(log_t: float) -> float:
        return probs.nll(probs.rescale(outputs, float(np.exp(-log_t))), targets)

    found = optimize.minimize_scalar(nll, bounds=LOG_T_RANGE, method="bounded",
                                     options={"xatol": 1e-4})
    return float(np.exp(found.x))


def scale_logits(model: keras.Model, factor: float) -> None:
    """Multiplies the `logits` layer's output by `factor` (its kernel and bias)."""
    layer = model.get_layer(LOGITS_LAYER)
    layer.set_weights([w * np.asarray(factor, w.dtype) for w in layer.get_weights()])


def calibrate(model: keras.Model, probs: Probabilities, val: np.ndarray, targets: np.ndarray
              ) -> tuple[np.ndarray, dict[str, Any]]:
    """Fits T on the validation outputs, folds it into `model`; returns the validation
    outputs as the calibrated model gives them and what calibration did (T; ECE and NLL
    before and after)."""
    temperature = fit_temperature(probs, val, targets)
    scale_logits(model, 1.0 / temperature)
    after = probs.rescale(val, 1.0 / temperature)
    return after, {"method": "temperature", "temperature": temperature,
                   "val": compare(probs, val, after, targets)}


def compare(probs: Probabilities, before: np.ndarray, after: np.ndarray, targets: np.ndarray
            ) -> dict[str, float]:
    """ECE and NLL of the same examples before and after calibration."""
    return {"ece_before": reliability(*probs.confidence(before, targets))[0],
            "ece_after": reliability(*probs.confidence(after, targets))[0],
            "nll_before": probs.nll(before, targets), "nll_after": probs.nll(after, targets)}


def plot_reliability(rows: list[dict[str, float]], path: Any, title: str) -> None:
    """The reliability diagram: accuracy against confidence per bin, the diagonal perfect."""
    plt = plotting.pyplot()
    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    centres = [(r["low"] + r["high"]) / 2 for r in rows]
    ax.bar(centres, [r["accuracy"] for r in rows], width=1.0 / BINS, edgecolor="black",
           alpha=0.7, label="accuracy")
    ax.plot([0, 1], [0, 1], color="grey", linewidth=1, label="perfect")
    ax.plot([r["confidence"] for r in rows], [r["accuracy"] for r in rows], "o", color="C1",
            markersize=3, label="mean confidence")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=7)
    ax.set_title(title)
    fig.tight_layout()
    plotting.save(fig, path)
