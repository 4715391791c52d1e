"""The probe of label sets: the multi-hot targets, one logistic regression per label scored by
mean average precision, confident learning for label sets (cleanlab's multi_label mode)."""

from __future__ import annotations

import numpy as np
from cleanlab.multilabel_classification.filter import find_label_issues
from sklearn.metrics import average_precision_score
from sklearn.model_selection import KFold
from sklearn.multiclass import OneVsRestClassifier

from ktransfer.tasks import linear
from ktransfer.tasks.multi_label import MULTI_LABEL
from ktransfer.tasks.probe import Flagged, TaskProbe


def _text(row: np.ndarray, names: tuple[str, ...]) -> str:
    """A label set as the task writes it (`a|b`), `(none)` for the empty set."""
    return MULTI_LABEL.target_text(row.astype(np.float32), names) or "(none)"


class MultiLabelProbe(TaskProbe):
    metric = "mAP"
    audits = ("confident learning for label sets (cleanlab's multi_label mode) on the "
              "out-of-fold probabilities")

    def targets(self, labels: np.ndarray, outputs: int) -> np.ndarray:
        return (labels > 0.5).astype(np.float64)

    def _model(self, seed: int) -> OneVsRestClassifier:
        return OneVsRestClassifier(linear.logistic(seed))

    def out_of_fold(self, x: np.ndarray, labels: np.ndarray, outputs: int, folds: int,
                    seed: int) -> np.ndarray:
        y = self.targets(labels, outputs).astype(int)
        found = np.zeros(y.shape)
        for fit, held in KFold(folds, shuffle=True, random_state=seed).split(x):
            seen = y[fit].min(0) != y[fit].max(0)  # labels with both states in the fold
            found[np.ix_(held, ~seen)] = y[fit][0, ~seen]
            if seen.any():
                model = self._model(seed).fit(x[fit], y[fit][:, seen])
                found[np.ix_(held, seen)] = model.predict_proba(x[held])
        return found

    def fit_score(self, x: np.ndarray, labels: np.ndarray, x_eval: np.ndarray,
                  eval_labels: np.ndarray, outputs: int, seed: int) -> float:
        y = self.targets(labels, outputs).astype(int)
        seen = y.min(0) != y.max(0)
        found = np.tile(y[0].astype(float), (len(x_eval), 1))
        if seen.any():
            found[:, seen] = self._model(seed).fit(x, y[:, seen]).predict_proba(x_eval)
        return self.score(found, eval_labels)

    def score(self, outputs: np.ndarray, labels: np.ndarray) -> float:
        y = self.targets(labels, outputs.shape[1])
        present = (y.sum(0) > 0) & (y.sum(0) < len(y))
        return float(average_precision_score(y[:, present], outputs[:, present],
                                             average="macro"))

    def audit(self, outputs: np.ndarray, labels: np.ndarray,
              names: tuple[str, ...]) -> list[Flagged]:
        y = self.targets(labels, len(names)).astype(int)
        sets = [list(np.flatnonzero(row)) for row in y]
        ranked = find_label_issues(sets, outputs, return_indices_ranked_by="self_confidence")
        agree = np.where(y == 1, outputs, 1 - outputs).mean(1)
        return [Flagged(int(i), _text(y[i], names), _text(outputs[i] >= 0.5, names),
                        float(agree[i])) for i in ranked]


PROBE = MultiLabelProbe()
