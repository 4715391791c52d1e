"""Learning curves from frozen features: the linear probe trained on growing fractions of the
training split and scored on the validation split, fitted with an inverse power law
score(n) = a - b * n^(-c) (Hestness et al. 2017) and extrapolated to 2x and 4x the labels, with
a bootstrap over the repeated draws for the uncertainty."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import curve_fit

REPEATS = 3  # draws per fraction below 1
CEILING = 1.0  # every probe metric (accuracy, mAP, R^2) is at most 1
BOOTSTRAP = 200


@dataclass(frozen=True)
class Curve:
    """Measured points (labels, mean score, each draw's) and the fitted extrapolation
    ({"2x": (mean, std), "4x": ...}; empty when the fit failed)."""

    sizes: list[int]
    scores: list[list[float]]
    predicted: dict[str, tuple[float, float]]


def _law(n: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    return a - b * np.power(n, -c)


def _fit(sizes: np.ndarray, scores: np.ndarray) -> np.ndarray | None:
    try:
        params, _ = curve_fit(_law, sizes, scores, p0=(min(scores.max(), CEILING), 1.0, 0.5),
                              bounds=([-np.inf, 0.0, 0.01], [CEILING, np.inf, 3.0]),
                              maxfev=5000)
    except (RuntimeError, ValueError):
        return None
    return params


def extrapolate(sizes: list[int], scores: list[list[float]], seed: int = 0
                ) -> dict[str, tuple[float, float]]:
    """{"2x": (mean, std), "4x": ...} of the fitted law at 2 and 4 times the largest size; the
    spread bootstraps one draw per size. Empty when the law cannot be fitted."""
    n = np.array(sizes, np.float64)
    rng, found = np.random.default_rng(seed), []
    for _ in range(BOOTSTRAP):
        picked = np.array([rng.choice(s) for s in scores])
        params = _fit(n, picked)
        if params is not None:
            found.append(_law(np.array([2 * n[-1], 4 * n[-1]]), *params))
    if len(found) < BOOTSTRAP // 2:
        return {}
    found_arr = np.array(found)
    return {f"{k}x": (float(found_arr[:, i].mean()), float(found_arr[:, i].std()))
            for i, k in enumerate((2, 4))}


def learning_curve(points: int, total: int, draw: Callable[[float, int], np.ndarray],
                   score: Callable[[np.ndarray, int], float], seed: int = 0) -> Curve:
    """`points` fractions 1/2^(points-1) .. 1 of `total` examples: `draw(fraction, seed)`
    gives positions, `score(positions, seed)` the probe's validation score on them."""
    sizes, scores = [], []
    for k in range(points - 1, -1, -1):
        fraction = 0.5 ** k
        draws = [score(draw(fraction, seed + r), seed + r)
                 for r in range(REPEATS if fraction < 1 else 1)]
        sizes.append(max(1, round(fraction * total)))
        scores.append(draws)
    return Curve(sizes, scores, extrapolate(sizes, scores, seed))
