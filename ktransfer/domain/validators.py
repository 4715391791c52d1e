"""Choosing a domain-adapted model without target labels (`--da_select`).

A real user of domain adaptation has no labelled target data, so "the epoch with the best
target accuracy" is not available to them. Each validator here scores an epoch from what they
do have (higher is better), and the run keeps the best-scoring epoch:

    source_val  accuracy on the source validation split (a strong baseline in the literature)
    im          information maximisation: H(mean prediction) - mean H(prediction) on target
                (confident and class-diverse predictions; Shi & Sha 2012, SHOT)
    snd         soft neighbourhood density (Saito et al., ICCV 2021): the entropy of each
                target prediction's softmax similarity to the others (temperature 0.05)
    bnm         batch nuclear norm (Cui et al., CVPR 2020): ||P||_* / N of the target
                predictions P [N, C] (confident and diverse)
    dev         deep embedded validation (You et al., ICML 2019): the source validation loss
                importance-weighted toward the target by a domain classifier on the features,
                with its control variate; the score is minus that risk

Which one to trust is an empirical question: `benchmarks/` should report their rank correlation
with true target accuracy before anyone relies on one.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

EPS = 1e-12


@dataclass(frozen=True)
class EpochOutputs:
    """What one epoch's validators look at.

    Args:
        target_probabilities: [N, C] predictions on unlabelled target examples.
        target_features: [N, D] their feature vectors (after the backbone, pooled).
        source_probabilities: [M, C] predictions on the source validation split.
        source_features: [M, D] its feature vectors.
        source_labels: [M] its labels.
    """

    target_probabilities: np.ndarray
    target_features: np.ndarray
    source_probabilities: np.ndarray
    source_features: np.ndarray
    source_labels: np.ndarray


def _entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    return -np.sum(p * np.log(p + EPS), axis=axis)


def source_val(out: EpochOutputs) -> float:
    return float(np.mean(out.source_probabilities.argmax(1) == out.source_labels))


def information_maximisation(out: EpochOutputs) -> float:
    p = out.target_probabilities
    return float(_entropy(p.mean(0)) - _entropy(p).mean())


def soft_neighbourhood_density(out: EpochOutputs, temperature: float = 0.05) -> float:
    p = out.target_probabilities
    p = p / (np.linalg.norm(p, axis=1, keepdims=True) + EPS)
    similarity = p @ p.T / temperature
    np.fill_diagonal(similarity, -np.inf)
    similarity -= similarity.max(axis=1, keepdims=True)
    weights = np.exp(similarity)
    weights /= weights.sum(axis=1, keepdims=True)
    return float(_entropy(weights).mean())


def batch_nuclear_norm(out: EpochOutputs) -> float:
    p = out.target_probabilities
    return float(np.linalg.svd(p, compute_uv=False).sum() / len(p))


def deep_embedded_validation(out: EpochOutputs) -> float:
    """Minus DEV's risk estimate (You et al. 2019, eq. 5-6)."""
    features = np.concatenate([out.source_features, out.target_features])
    domain = np.r_[np.zeros(len(out.source_features)), np.ones(len(out.target_features))]
    scale = features.std(0) + EPS
    with warnings.catch_warnings():  # an unconverged fit still ranks the domains usefully
        warnings.simplefilter("ignore", ConvergenceWarning)
        classifier = LogisticRegression(max_iter=1000).fit(features / scale, domain)
    p_target = classifier.predict_proba(out.source_features / scale)[:, 1]
    n_s, n_t = len(out.source_features), len(out.target_features)
    weights = p_target / (1 - p_target + EPS) * n_s / n_t
    rows = np.arange(n_s)
    losses = -np.log(out.source_probabilities[rows, out.source_labels] + EPS)
    weighted = weights * losses
    variance = np.var(weights)
    eta = -np.cov(weighted, weights)[0, 1] / variance if variance > EPS else 0.0
    return -float(np.mean(weighted) + eta * np.mean(weights) - eta)


