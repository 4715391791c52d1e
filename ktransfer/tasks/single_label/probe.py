"""The probe of one class per example: one-hot targets, multinomial logistic regression scored
by accuracy, confident learning (cleanlab) for the label audit."""

from __future__ import annotations

import numpy as np
from cleanlab.filter import find_label_issues
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict

from ktransfer.tasks import linear
from ktransfer.tasks.probe import Flagged, TaskProbe


def _full(probabilities: np.ndarray, seen: np.ndarray, outputs: int) -> np.ndarray:
    """Probabilities [N, outputs] from a model that saw only the classes `seen`."""
    full = np.zeros((len(probabilities), outputs))
    full[:, seen] = probabilities
    return full


class SingleLabelProbe(TaskProbe):
    metric = "accuracy"
    audits = ("confident learning (cleanlab, Northcutt et al. 2021) on the out-of-fold "
              "probabilities")

    def targets(self, labels: np.ndarray, outputs: int) -> np.ndarray:
        return np.eye(outputs)[labels]

    def out_of_fold(self, x: np.ndarray, labels: np.ndarray, outputs: int, folds: int,
                    seed: int) -> np.ndarray:
        smallest = np.bincount(labels, minlength=outputs)
        smallest = smallest[smallest > 0].min()
        splitter = (StratifiedKFold(min(folds, smallest), shuffle=True, random_state=seed)
                    if smallest >= 2 else KFold(folds, shuffle=True, random_state=seed))
        found = cross_val_predict(linear.logistic(seed), x, labels, cv=splitter,
                                  method="predict_proba")
        return _full(found, np.unique(labels), outputs)

    def fit_score(self, x: np.ndarray, labels: np.ndarray, x_eval: np.ndarray,
                  eval_labels: np.ndarray, outputs: int, seed: int) -> float:
        if len(np.unique(labels)) < 2:
            return float(np.mean(eval_labels == labels[0]))
        model = linear.logistic(seed).fit(x, labels)
        return float(np.mean(model.predict(x_eval) == eval_labels))

    def score(self, outputs: np.ndarray, labels: np.ndarray) -> float:
        return float(np.mean(outputs.argmax(1) == labels))

    def audit(self, outputs: np.ndarray, labels: np.ndarray,
              names: tuple[str, ...]) -> list[Flagged]:
        if len(np.unique(labels)) < 2:
            return []
        ranked = find_label_issues(labels, outputs, return_indices_ranked_by="self_confidence")
        return [Flagged(int(i), names[labels[i]], names[int(outputs[i].argmax())],
                        float(outputs[i, labels[i]])) for i in ranked]

    def confused(self, outputs: np.ndarray, labels: np.ndarray,
                 names: tuple[str, ...]) -> list[dict]:
        predicted, pairs = outputs.argmax(1), []
        for a in np.unique(labels):
            share = np.bincount(predicted[labels == a], minlength=len(names)) / np.sum(labels == a)
            pairs += [{"class": names[a], "taken_for": names[b], "share": float(share[b])}
                      for b in np.flatnonzero(share) if b != a]
        return sorted(pairs, key=lambda p: -p["share"])[:10]


PROBE = SingleLabelProbe()
