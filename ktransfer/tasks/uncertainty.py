"""Answers that say how sure they are: conformal prediction sets and an abstain threshold.

Split conformal prediction (Vovk et al. 2005; Angelopoulos & Bates 2021) on the validation
split: with the nonconformity score s = 1 - p(true class), the threshold q is the
ceil((n + 1) * coverage) / n quantile of the n validation scores, and an example's set holds
every class with p >= 1 - q. If validation and new examples are exchangeable, the set holds the
true class with probability at least `coverage` (the least-ambiguous-set construction of Sadinle
et al. 2019, which gives the smallest sets on average). Regression's analogue is an interval
prediction +- q of the absolute residuals.

The unknown-input score is 1 - the top class's probability (Hendrycks & Gimpel 2017, after
any temperature scaling): an input unlike the training examples spreads its probability. The
abstain threshold is set so that `abstain_rate` of the validation examples would be abstained
on; `predict` and the SavedModel flag every input above it.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def conformal_quantile(scores: np.ndarray, coverage: float) -> float:
    """The split-conformal threshold of nonconformity `scores` [n] (validation) for
    `coverage` in (0, 1): their ceil((n + 1) * coverage)-th smallest; +inf when n is too
    small for the coverage (every answer then holds everything)."""
    n = len(scores)
    rank = math.ceil((n + 1) * coverage)
    if n == 0 or rank > n:
        log.warning("conformal: %d validation examples cannot give %.0f%% coverage (it needs "
                    "at least %d); every set holds every class", n, 100 * coverage,
                    math.ceil(coverage / (1 - coverage)))
        return math.inf
    return float(np.sort(scores)[rank - 1])


def fit_sets(probabilities: np.ndarray, labels: np.ndarray, coverage: float) -> dict[str, float]:
    """State of conformal sets: the probability a class needs to enter a set, from the
    validation probabilities [n, C] and labels [n]."""
    true = probabilities[np.arange(len(labels)), labels]
    q = conformal_quantile(1.0 - true, coverage)
    return {"coverage": coverage, "threshold": float(max(0.0, 1.0 - q))}


def fit_abstain(probabilities: np.ndarray, rate: float) -> dict[str, float]:
    """State of the abstain rule: the unknown-input score above which an input is abstained
    on, so that about `rate` of the validation examples [n, C] would be."""
    score = unknown_score(probabilities)
    return {"rate": rate, "threshold": float(np.quantile(score, 1.0 - rate))}


def unknown_score(probabilities: np.ndarray) -> np.ndarray:
    """[N] in [0, 1): 1 - the top class's probability; higher is less like training data."""
    return 1.0 - probabilities.max(axis=1)


def sets_of(probabilities: np.ndarray, state: dict[str, Any]) -> np.ndarray:
    """bool [N, C]: the classes in each example's conformal set."""
    return probabilities >= state["threshold"]


def set_scores(probabilities: np.ndarray, labels: np.ndarray, state: dict[str, Any]
               ) -> dict[str, float]:
    """How the sets did on labelled examples: the coverage reached (the share of sets holding
    the true class) against the one asked for, and the mean set size (classes)."""
    inside = sets_of(probabilities, state)
    n = len(labels)
    return {"coverage_asked": float(state["coverage"]),
            "set_coverage": float(inside[np.arange(n), labels].mean()) if n else 0.0,
            "mean_set_size": float(inside.sum(axis=1).mean()) if n else 0.0}


def abstain_scores(probabilities: np.ndarray, labels: np.ndarray, state: dict[str, Any]
                   ) -> dict[str, float]:
    """How the abstain rule did on labelled examples: the share abstained on and the accuracy
    of the answers kept."""
    abstained = unknown_score(probabilities) > state["threshold"]
    kept = ~abstained
    right = probabilities.argmax(axis=1) == labels
    return {"abstain_rate_asked": float(state["rate"]),
            "abstained": float(abstained.mean()) if len(labels) else 0.0,
            "accuracy_answered": float(right[kept].mean()) if kept.any() else 0.0}


def fit_interval(predicted: np.ndarray, targets: np.ndarray, coverage: float
                 ) -> dict[str, float]:
    """State of conformal intervals (regression): prediction +- `half_width`, the conformal
    quantile of the validation's absolute residuals [n] (target units)."""
    half = conformal_quantile(np.abs(predicted - targets), coverage)
    return {"coverage": coverage, "half_width": half if math.isfinite(half) else 1e30}


def interval_scores(predicted: np.ndarray, targets: np.ndarray, state: dict[str, Any]
                    ) -> dict[str, float]:
    """The coverage conformal intervals reached on labelled examples, and their width."""
    inside = np.abs(predicted - targets) <= state["half_width"]
    return {"coverage_asked": float(state["coverage"]),
            "interval_coverage": float(inside.mean()) if len(targets) else 0.0,
            "interval_width": 2.0 * float(state["half_width"])}
