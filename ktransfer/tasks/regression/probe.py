"""The probe of one number per example: the standardised values, ridge regression scored by
R^2, and, for the audit, the examples whose out-of-fold residual is an outlier (confident
learning is for classes; cleanlab's regression mode needs a model it trains itself)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import r2_score
from sklearn.model_selection import KFold, cross_val_predict

from ktransfer.tasks import linear
from ktransfer.tasks.probe import Flagged, TaskProbe

OUTLIER = 3.5  # residuals beyond this many robust standard deviations (1.4826 x MAD)


class RegressionProbe(TaskProbe):
    metric = "R^2"
    audits = (f"out-of-fold residuals beyond {OUTLIER} robust standard deviations (1.4826 x "
              "median absolute deviation)")

    def targets(self, labels: np.ndarray, outputs: int) -> np.ndarray:
        values = np.asarray(labels, np.float64).reshape(len(labels), -1)
        return (values - values.mean(0)) / (values.std(0) + 1e-12)

    def out_of_fold(self, x: np.ndarray, labels: np.ndarray, outputs: int, folds: int,
                    seed: int) -> np.ndarray:
        splitter = KFold(folds, shuffle=True, random_state=seed)
        found = cross_val_predict(linear.ridge(), x, np.asarray(labels, np.float64), cv=splitter)
        return np.asarray(found, np.float64).reshape(len(x), -1)

    def fit_score(self, x: np.ndarray, labels: np.ndarray, x_eval: np.ndarray,
                  eval_labels: np.ndarray, outputs: int, seed: int) -> float:
        model = linear.ridge().fit(x, np.asarray(labels, np.float64))
        return self.score(np.asarray(model.predict(x_eval)).reshape(len(x_eval), -1),
                          eval_labels)

    def score(self, outputs: np.ndarray, labels: np.ndarray) -> float:
        return float(r2_score(np.asarray(labels, np.float64).reshape(outputs.shape), outputs))

    def audit(self, outputs: np.ndarray, labels: np.ndarray,
              names: tuple[str, ...]) -> list[Flagged]:
        values = np.asarray(labels, np.float64).reshape(outputs.shape)[:, 0]
        residual = values - outputs[:, 0]
        spread = 1.4826 * np.median(np.abs(residual - np.median(residual))) + 1e-12
        z = np.abs(residual - np.median(residual)) / spread
        return [Flagged(int(i), f"{values[i]:.4g}", f"{outputs[i, 0]:.4g}", float(z[i]))
                for i in np.argsort(-z) if z[i] > OUTLIER]


PROBE = RegressionProbe()
