"""Validators that score an adapted model without target labels (--da_select)."""

from __future__ import annotations

import numpy as np
import pytest

from ktransfer.domain.catalog import VALIDATORS
from ktransfer.domain.validators import EpochOutputs


def _outputs(target: np.ndarray, seed: int = 0, shift: float = 0.0) -> EpochOutputs:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, 90)
    source = np.full((90, 3), 0.1)
    source[np.arange(90), labels] = 0.8
    features = rng.normal(size=(90, 4))
    return EpochOutputs(target, rng.normal(size=(len(target), 4)) + shift, source, features,
                        labels)


def _confident_and_diverse(n: int = 60) -> np.ndarray:
    p = np.full((n, 3), 0.02)
    p[np.arange(n), np.arange(n) % 3] = 0.96
    return p


def _collapsed(n: int = 60) -> np.ndarray:
    p = np.full((n, 3), 0.02)
    p[:, 0] = 0.96
    return p


@pytest.mark.parametrize("name", ["im", "bnm"])
def test_confident_diverse_predictions_beat_uncertain_and_collapsed_ones(name):
    score = VALIDATORS.get(name)
    good = score(_outputs(_confident_and_diverse()))
    assert good > score(_outputs(np.full((60, 3), 1 / 3)))
    assert good > score(_outputs(_collapsed()))


def test_source_val_is_the_source_validation_accuracy():
    out = _outputs(_collapsed())
    assert VALIDATORS.get("source_val")(out) == 1.0
    wrong = EpochOutputs(out.target_probabilities, out.target_features,
                         np.roll(out.source_probabilities, 1, axis=1), out.source_features,
                         out.source_labels)
    assert VALIDATORS.get("source_val")(wrong) == 0.0


def test_dev_without_a_domain_shift_is_minus_the_source_loss():
    """When source and target features come from one distribution, the importance weights are
    about 1 and DEV's risk is the plain source validation loss."""
    out = _outputs(_collapsed(500), seed=1)
    loss = -np.log(0.8)
    assert VALIDATORS.get("dev")(out) == pytest.approx(-loss, rel=0.1)
    shifted = _outputs(_collapsed(500), seed=1, shift=3.0)  # a classifier tells them apart
    assert np.isfinite(VALIDATORS.get("dev")(shifted))


def test_snd_is_an_entropy_of_neighbour_similarities():
    n = 60
    value = VALIDATORS.get("snd")(_outputs(_confident_and_diverse(n)))
    assert 0.0 < value <= np.log(n - 1) + 1e-9
