"""Test-time augmentation: the views, and `evaluate` / `predict` averaging over them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from ktransfer.config import EvaluateConfig, PredictConfig
from ktransfer.deploy import prediction
from ktransfer.deploy.saving import open_classifier
from ktransfer.errors import ConfigError
from ktransfer.image.catalog import TTA_VIEWS
from ktransfer.reporting.evaluation import evaluate_saved, saved_split
from ktransfer.text.pipeline import TextFeed

from conftest import digit_jpeg, run_cli


def test_views_keep_the_shape_and_move_the_pixels():
    images = np.zeros((2, 16, 16, 3), np.float32)
    images[:, :2, :2, :] = 255.0  # a bright top-left corner, outside the other crops
    flipped = TTA_VIEWS.get("flip")[1](tf.constant(images)).numpy()
    assert flipped[:, :2, -2:].min() == 255.0 and flipped[:, :2, :2].max() == 0.0
    crops = [v(tf.constant(images)).numpy() for v in TTA_VIEWS.get("crops")]
    assert all(c.shape == images.shape for c in crops)
    top_left = crops[1]  # the order: centre, top-left, top-right, bottom-left, bottom-right
    assert top_left[:, :2, :2].mean() > 200
    assert all(c.max() == 0.0 for c in crops[2:])
    assert len(TTA_VIEWS.get("flip_crops")) == 10 and len(TTA_VIEWS.get("none")) == 1


def test_evaluate_with_flip_averages_both_views_and_reports_the_plain_accuracy(
        quickstart_run, tmp_path):
    cfg = EvaluateConfig(model=str(quickstart_run), output_dir=str(tmp_path), tta="flip")
    summary, _ = evaluate_saved(cfg)
    clf = open_classifier(str(quickstart_run))
    examples = saved_split(cfg, clf)
    inputs = clf.feed.inputs(examples, 64)
    plain = clf.model.predict(inputs, verbose=0)
    mirrored = clf.model.predict(inputs.map(tf.image.flip_left_right), verbose=0)
    expected = np.mean((plain + mirrored).argmax(1) == examples.labels)
    assert summary["accuracy"] == pytest.approx(expected)
    assert summary["tta"]["accuracy_without"] == pytest.approx(
        np.mean(plain.argmax(1) == examples.labels))
    metrics = json.loads((quickstart_run / "metrics.json").read_text())
    assert summary["tta"]["accuracy_without"] == pytest.approx(metrics["test"]["accuracy"],
                                                               abs=1e-6)
    assert json.loads((tmp_path / "evaluation.json").read_text())["tta"]["passes"] == 2


@pytest.mark.slow  # a run, then five crops per image: make test-slow
def test_predict_with_crops_is_the_mean_of_five_crops(quickstart_run, tmp_path):
    clf = open_classifier(str(quickstart_run))
    path = digit_jpeg(tmp_path / "a.jpg", 3)
    examples = clf.modality.presentation.read_inputs([str(path)], PredictConfig(model="x"))
    averaged = prediction.probabilities(clf.model, clf.feed, examples, tta="crops")
    inputs = clf.feed.inputs(examples, 8)
    each = [clf.model.predict(inputs.map(v), verbose=0) for v in TTA_VIEWS.get("crops")]
    np.testing.assert_allclose(averaged, np.mean(each, axis=0), atol=1e-6)
    result = run_cli("predict", f"--model={quickstart_run}", "--tta=crops", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(str(path))


def test_text_models_refuse_tta():
    feed = TextFeed(preprocessor=None, mask_key="padding_mask", max_length=16)
    assert len(feed.views("none")) == 1
    with pytest.raises(ConfigError, match="^--tta: test-time augmentation is for images"):
        feed.views("flip")
