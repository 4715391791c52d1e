"""Temperature scaling: fitted on the validation split, folded into the saved model, lowering
the calibration error while every class keeps its rank."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from sklearn.datasets import load_digits

from ktransfer import config, preflight
from ktransfer.deploy.prediction import predict_saved
from ktransfer.deploy.saving import open_classifier
from ktransfer.deploy.serving import export_saved
from ktransfer.errors import ConfigError
from ktransfer.reporting.evaluation import evaluate_saved
from ktransfer.tasks import TASKS
from ktransfer.tasks.calibration import fit_temperature, reliability
from ktransfer.tasks.multi_label import MULTI_LABEL
from ktransfer.tasks.single_label import SINGLE_LABEL
from ktransfer.tasks.task import read_state
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
    probs = task.probabilities
    sharp = probs.rescale(truth.astype(np.float32), 2.0)
    temperature = fit_temperature(probs, sharp, targets)
    assert temperature == pytest.approx(2.0, rel=0.1)
    calibrated = probs.rescale(sharp, 1 / temperature)
    assert probs.nll(calibrated, targets) < probs.nll(sharp, targets)
    assert reliability(*probs.confidence(calibrated, targets))[0] < \
        reliability(*probs.confidence(sharp, targets))[0]
    np.testing.assert_allclose(probs.rescale(sharp, 1.0), sharp, atol=1e-5)


def test_only_tasks_with_probabilities_calibrate():
    for name in TASKS.names():
        cfg = config.build(data="builtin:digits", task=name, calibrate="temperature")
        if TASKS.get(name).probabilities is not None:
            preflight.check_train(cfg)
        else:
            with pytest.raises(ConfigError, match="--calibrate"):
                preflight.check_train(cfg)


@pytest.fixture(scope="module")
def calibrated_run(tmp_path_factory):
    """Digits 5-9 from 10 examples each, calibrated, with 90% conformal sets and abstaining
    on 10% of the validation examples."""
    tmp = tmp_path_factory.mktemp("calibrated")
    return train(config.build(**tiny_values(
        tmp, weights=ASSET_WEIGHTS, image_size=32, classes=("5", "6", "7", "8", "9"),
        train_per_class=10, epochs=30, lr=0.03, dropout=0.0, calibrate="temperature",
        coverage=0.9, abstain_rate=0.1, report=True)))


def test_calibrated_run_folds_the_temperature_into_the_saved_model(calibrated_run):
    """The calibration error on the test split drops, the decisions do not change, and the
    saved model (what evaluate and the export use) gives the calibrated probabilities."""
    result = calibrated_run
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


def _digit_pngs(folder: Path, digits: range, n: int) -> list[str]:
    """`n` real scikit-learn digits of `digits` as PNG files, as a user would pass them."""
    found = load_digits()
    picked = np.flatnonzero(np.isin(found.target, list(digits)))[-n:]
    folder.mkdir(parents=True, exist_ok=True)
    for i in picked:
        pixels = np.clip(found.images[i] * 16, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).convert("RGB").save(folder / f"{i}.png")
    return [str(folder / f"{i}.png") for i in picked]


@pytest.mark.slow  # a run and its export: make test-slow
def test_conformal_sets_and_abstaining_reach_the_test_split_and_the_export(calibrated_run,
                                                                         tmp_path):
    """The 90% sets cover most test digits with fewer than all 5 classes; abstaining takes
    a small share of the model's own test digits and more of digits it never saw (0-4); the
    SavedModel returns the sets and abstain flags `predict` gives."""
    m, run = calibrated_run.metrics, calibrated_run.run_dir
    assert m["test"]["coverage_asked"] == 0.9 and m["test"]["set_coverage"] > 0.8
    assert 0.5 < m["test"]["mean_set_size"] < 4.0  # an empty set: no class likely enough
    assert 0.0 < m["test"]["abstained"] < 0.35
    assert m["test"]["accuracy_answered"] >= m["test"]["accuracy"]
    state = read_state(run)
    assert 0.0 < state["conformal"]["threshold"] < 1.0 and state["abstain"]["rate"] == 0.1
    unseen = _digit_pngs(tmp_path / "unseen", range(5), 100)
    rows = json.loads(predict_saved(config.PredictConfig(model=str(run), format="json"),
                                    unseen))
    assert np.mean([r["abstain"] for r in rows]) > m["test"]["abstained"] + 0.1
    assert all(not r["set"] or r["set"][0] == r["top_k"][0]["class"] for r in rows)
    version = export_saved(config.ExportConfig(run_dir=str(run), export_dir=str(tmp_path / "m"),
                                               formats=("tflite", "onnx")))
    conversions = json.loads((version / "conversions.json").read_text())
    assert conversions["tflite"]["within_limit"] and conversions["onnx"]["within_limit"]
    served = tf.saved_model.load(str(version)).signatures["serving_default"](
        image_bytes=tf.constant([Path(f).read_bytes() for f in unseen[:8]]))
    assert [[n.decode() for n in row if n] for row in served["set_names"].numpy()] == \
        [sorted(r["set"]) for r in rows[:8]]
    assert served["abstain"].numpy().tolist() == [r["abstain"] for r in rows[:8]]
    np.testing.assert_allclose(served["unknown_score"].numpy(),
                               [r["unknown_score"] for r in rows[:8]], atol=1e-4)
