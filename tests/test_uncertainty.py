"""Conformal sets and intervals reach the coverage asked for on exchangeable data; the
abstain threshold takes the share of validation examples asked for."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ktransfer.tasks.uncertainty import (
    abstain_scores,
    conformal_quantile,
    fit_abstain,
    fit_interval,
    fit_sets,
    interval_scores,
    set_scores,
)


def _calibrated(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities [n, 6] and labels drawn from them (so they are calibrated)."""
    p = rng.dirichlet(np.full(6, 0.4), size=n)
    labels = (rng.random((n, 1)) > p.cumsum(axis=1)).sum(axis=1)
    return p, np.minimum(labels, 5)


@pytest.mark.parametrize("coverage", [0.8, 0.9, 0.95])
def test_sets_cover_new_examples_as_asked(coverage):
    rng = np.random.default_rng(0)
    state = fit_sets(*_calibrated(1000, rng), coverage)
    found = set_scores(*_calibrated(20000, rng), state)
    assert abs(found["set_coverage"] - coverage) < 0.02  # the goal: within 2 points
    assert found["mean_set_size"] < 6 * coverage  # narrower than chance sets


def test_intervals_cover_new_examples_as_asked():
    rng = np.random.default_rng(1)
    x, noise = rng.normal(size=21000), rng.standard_t(4, size=21000)
    state = fit_interval(2 * x[:1000], 2 * x[:1000] + noise[:1000], 0.9)
    found = interval_scores(2 * x[1000:], 2 * x[1000:] + noise[1000:], state)
    assert abs(found["interval_coverage"] - 0.9) < 0.02
    assert found["interval_width"] == pytest.approx(2 * state["half_width"])


def test_too_few_validation_examples_give_every_class():
    assert conformal_quantile(np.array([0.1, 0.2, 0.3]), 0.9) == math.inf  # needs 9
    assert fit_sets(np.full((3, 2), 0.5), np.array([0, 1, 0]), 0.9)["threshold"] == 0.0
    assert conformal_quantile(np.arange(1.0, 10.0), 0.9) == 9.0  # rank ceil(10 * 0.9)


def test_abstaining_takes_the_share_asked_for_and_keeps_the_sure_answers():
    rng = np.random.default_rng(2)
    p, labels = _calibrated(4000, rng)
    state = fit_abstain(p[:2000], 0.2)
    found = abstain_scores(p[2000:], labels[2000:], state)
    assert abs(found["abstained"] - 0.2) < 0.03
    accuracy = float(np.mean(p[2000:].argmax(axis=1) == labels[2000:]))
    assert found["accuracy_answered"] > accuracy + 0.03
