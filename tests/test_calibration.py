"""Temperature scaling: fitted on the validation split, folded into the saved model, lowering
the calibration error while every class keeps its rank."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ktransfer import config, preflight
from ktransfer.deploy.saving import open_classifier
from ktransfer.errors import ConfigError
from ktransfer.reporting.evaluation import evaluate_saved
from ktransfer.tasks import TASKS
from ktransfer.tasks.calibration import fit_temperature, reliability
from ktransfer.tasks.multi_label import MULTI_LABEL
from ktransfer.tasks.single_label import SINGLE_LABEL
from ktransfer.training import train

from conftest import tiny_values

ASSET_WEIGHTS = "ktransfer/assets/digits04_small_cnn.weights.h5"


def test_reliability_of_a_known_case():
    confidence = np.array([0.9, 0.9, 0.9, 0.9, 0.6, 0.6])
    correct = np.array([1, 1, 1, 0, 1, 0], bool)
    ece, rows = reliability(confidence, correct)
    assert ece == pytest.approx((4 * abs(0.9 - 0.75) + 2 * abs(0.6 - 0.5)) / 6)
    assert [r["count"] for r in rows] == [2, 4]


@pytest.mark.parametrize("task", [SINGLE_LABEL, MULTI_LABEL])
def test_the_temperature_of_overconfident_outputs_is_above_one(task):
    """Outputs made from true probabilities with logits doubled: the fitted T undoes it
    (about 2), and the likelihood improves."""
    rng = np.random.default_rng(0)
    if task is SINGLE_LABEL:
        truth = rng.dirichlet(np.ones(4), 4000)
        targets = np.array([rng.choice(4, p=p) for p in truth])
    else:
        truth = rng.uniform(0.05, 0.95, (4000, 3))
        targets = (rng.random((4000, 3)) < truth).astype(np.float32)
    sharp = task.rescale(truth.astype(np.float32), 2.0)
    temperature = fit_temperature(task, sharp, targets)
    assert temperature == pytest.approx(2.0, rel=0.1)
    calibrated = task.rescale(sharp, 1 / temperature)
    assert task.nll(calibrated, targets) < task.nll(sharp, targets)
    assert reliability(*task.confidence(calibrated, targets))[0] < \
        reliability(*task.confidence(sharp, targets))[0]
    np.testing.assert_allclose(task.rescale(sharp, 1.0), sharp, atol=1e-5)


def test_only_tasks_with_probabilities_calibrate():
    for name in TASKS.names():
        cfg = config.build(data="builtin:digits", task=name, calibrate="temperature")
        if TASKS.get(name).calibrates:
            preflight.check_train(cfg)
        else:
            with pytest.raises(ConfigError, match="--calibrate"):
                preflight.check_train(cfg)


def test_calibrated_run_folds_the_temperature_into_the_saved_model(tmp_path):
    """Digits 5-9 from 10 examples each: the calibration error on the test split drops, the
    decisions do not change, and the saved model (what evaluate and the export use) gives the
    calibrated probabilities."""
    cfg = config.build(**tiny_values(tmp_path, weights=ASSET_WEIGHTS, image_size=32,
                                     classes=("5", "6", "7", "8", "9"), train_per_class=10,
                                     epochs=30, lr=0.03, dropout=0.0, calibrate="temperature",
                                     report=True))
    result = train(cfg)
    calibration = result.metrics["calibration"]
    assert calibration["val"]["nll_after"] <= calibration["val"]["nll_before"] + 1e-6
    assert calibration["test"]["ece_after"] < calibration["test"]["ece_before"]
    summary, _ = evaluate_saved(config.EvaluateConfig(model=str(result.run_dir), split="test"))
    assert summary["ece"] == pytest.approx(calibration["test"]["ece_after"], abs=1e-4)
    assert summary["accuracy"] == pytest.approx(result.metrics["test"]["accuracy"])
    page = (result.run_dir / "report.html").read_text()
    assert "calibrated (temperature" in page and "Calibration" in page
    assert json.loads((result.run_dir / "metrics.json").read_text())["calibration"] == \
        calibration
    assert open_classifier(result.run_dir).model.get_layer("logits") is not None
