"""LogME (You et al., ICML 2021): the log marginal evidence of a Bayesian linear model from
frozen features to the targets, maximised over its two precisions; higher means the features
explain the targets better, with no training and no hyperparameters.

A transcription of the authors' algorithm (github.com/thuml/LogME, `LogME.fit` with the
fixed-point iteration), vectorised over one eigen-decomposition of F^T F; targets with several
columns (one-hot classes, label sets, several values) score the mean of their columns.
"""

from __future__ import annotations

import numpy as np


def _evidence(y: np.ndarray, projected: np.ndarray, s: np.ndarray, n: int, d: int) -> float:
    """Per-example evidence of one target column y [N], given the features' eigenvalues s [D]
    and projected = V^T F^T y [D] (V the eigenvectors of F^T F)."""
    alpha, beta = 1.0, 1.0
    y_norm = float(y @ y)
    for _ in range(11):  # the reference's cap; it converges in 2-3 steps
        gamma = float(np.sum(beta * s / (alpha + beta * s)))
        m_coef = beta / (alpha + beta * s)  # m = V diag(m_coef) projected
        m_norm = float(np.sum((m_coef * projected) ** 2))
        # ||y - F m||^2 = y.y - 2 m.F^T y + m F^T F m, all in the eigenbasis
        residual = y_norm - 2 * float(np.sum(m_coef * projected ** 2)) + float(
            np.sum(s * (m_coef * projected) ** 2))
        new_alpha = gamma / (m_norm + 1e-5)
        new_beta = (n - gamma) / (max(residual, 0.0) + 1e-5)
        converged = abs(new_alpha / new_beta - alpha / beta) / (alpha / beta) < 0.01
        alpha, beta = new_alpha, new_beta
        if converged:
            break
    return (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - 0.5 * np.sum(np.log(alpha + beta * s))
            - beta / 2 * (max(residual, 0.0) + 1e-5) - alpha / 2 * (m_norm + 1e-5)
            - n / 2 * np.log(2 * np.pi)) / n


def logme(features: np.ndarray, targets: np.ndarray) -> float:
    """LogME of features [N, D] for targets [N] or [N, K] (each column scored, then averaged).
    Typical values lie in about -1..3 for one-hot targets; only comparisons on the same
    targets mean something."""
    f = np.asarray(features, np.float64)
    y = np.asarray(targets, np.float64).reshape(len(f), -1)
    n, d = f.shape
    s, v = np.linalg.eigh(f.T @ f)
    s = np.clip(s, 0.0, None)
    projected = v.T @ (f.T @ y)  # [D, K]
    return float(np.mean([_evidence(y[:, k], projected[:, k], s, n, d)
                          for k in range(y.shape[1])]))
