"""Near-duplicates from frozen features: pairs of examples whose centred, unit-length feature
vectors have a cosine similarity at or above a threshold, within the training split and across
splits (a training example that is also in the test split inflates its score)."""

from __future__ import annotations

import numpy as np

LIMIT = 200  # pairs reported per kind, most similar first
CHUNK = 1024


def unit(features: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Rows centred by `centre` and scaled to length 1 (float32)."""
    x = np.asarray(features, np.float32) - centre
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)


def pairs(a: np.ndarray, b: np.ndarray, threshold: float, same: bool
          ) -> list[tuple[int, int, float]]:
    """(i, j, similarity) of rows of unit vectors a [N, D] and b [M, D] at or above
    `threshold`, most similar first; with `same` (a is b) each pair once and no i == j."""
    found: list[tuple[int, int, float]] = []
    for start in range(0, len(a), CHUNK):
        sims = a[start:start + CHUNK] @ b.T
        rows, cols = np.nonzero(sims >= threshold)
        for r, c in zip(rows, cols, strict=True):
            i = start + int(r)
            if not same or i < int(c):
                found.append((i, int(c), float(sims[r, c])))
    return sorted(found, key=lambda p: -p[2])[:LIMIT]
