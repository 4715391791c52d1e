"""What the probe does that depends on the task, behind one seam: the targets LogME scores, the
cross-validated linear probe, its score, and the label audit. A task's probe is one of its
parts (`Task.probe`, in `ktransfer/tasks/NAME/probe.py`); shared probe code never names a task.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Flagged:
    """One example the audit doubts: its position in the split, its label as given, what the
    out-of-fold prediction suggests, and how sure (the model's probability of the given label,
    or a residual in units of the spread)."""

    index: int
    given: str
    suggested: str
    score: float


class TaskProbe(abc.ABC):
    """The probe's task-dependent part."""

    metric: str = ""  # what `score` computes (higher is better), for tables
    audits: str = ""  # what the label audit does for this task, for the page

    @abc.abstractmethod
    def targets(self, labels: np.ndarray, outputs: int) -> np.ndarray:
        """What LogME scores: [N, K] float targets."""

    @abc.abstractmethod
    def out_of_fold(self, x: np.ndarray, labels: np.ndarray, outputs: int, folds: int,
                    seed: int) -> np.ndarray:
        """Each example's linear-probe output [N, K] from a model that did not see it."""

    @abc.abstractmethod
    def fit_score(self, x: np.ndarray, labels: np.ndarray, x_eval: np.ndarray,
                  eval_labels: np.ndarray, outputs: int, seed: int) -> float:
        """The linear probe trained on (x, labels), scored on the evaluation examples."""

    @abc.abstractmethod
    def score(self, outputs: np.ndarray, labels: np.ndarray) -> float:
        """The probe's metric of outputs [N, K] against the labels."""

    @abc.abstractmethod
    def audit(self, outputs: np.ndarray, labels: np.ndarray,
              names: tuple[str, ...]) -> list[Flagged]:
        """Examples whose label the out-of-fold outputs doubt, most doubtful first."""

    def confused(self, outputs: np.ndarray, labels: np.ndarray,
                 names: tuple[str, ...]) -> list[dict]:
        """Pairs of classes the probe mixes up, worst first; none where that does not apply."""
        return []
