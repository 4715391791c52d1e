"""`export --quantize` (ktransfer/deploy/quantize.py): Keras-quantized SavedModels, smaller,
scored against the float32 model, and refused when they lose more than allowed."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text  # noqa: F401 (the tokenizer's ops, for the SavedModel)

from ktransfer import config
from ktransfer.deploy import quantize
from ktransfer.deploy.saving import open_classifier
from ktransfer.deploy.serving import export_saved
from ktransfer.errors import ConfigError, KtransferError

TEXTS = ["a wonderful, moving film", "dull and far too long", "great acting", "a mess"]


def _export(run_dir, export_dir, **flags):
    return export_saved(config.ExportConfig(run_dir=str(run_dir), export_dir=str(export_dir),
                                            **flags))


@pytest.mark.slow  # the text run and two quantisations: about a minute
def test_int8_text_model_is_smaller_scored_and_served_as_in_keras(text_run, tmp_path):
    version = _export(text_run.run_dir, tmp_path / "reviews", quantize="int8")
    report = json.loads((version / quantize.REPORT).read_text())
    assert report["mode"] == "int8" and report["within_limit"]
    assert report["accuracy"] >= report["keras"]["accuracy"] - 0.02 > 0.8
    assert report["quantized_share"] > 0.8  # token embeddings and every projection
    assert report["weight_bytes"] < 0.4 * report["float32_weight_bytes"]
    assert report["saved_variables_bytes"] < 0.6 * report["float32_weight_bytes"]
    clf = open_classifier(text_run.run_dir)
    small = quantize.quantized(clf.model, "int8")
    expected = small.predict(clf.feed.preprocessor(TEXTS), verbose=0)
    served = tf.saved_model.load(str(version)).signatures["serving_default"](
        text=tf.constant(TEXTS))["probabilities"]
    np.testing.assert_allclose(served, expected, atol=1e-5)
    full = clf.model.predict(clf.feed.preprocessor(TEXTS), verbose=0)
    assert np.abs(expected - full).max() > 0  # it is the quantized network that serves


def test_a_larger_accuracy_drop_fails_and_publishes_nothing(quickstart_run, tmp_path,
                                                            monkeypatch):
    real = quantize.quantized

    def broken(model, mode):  # a quantisation that ruins the head
        small = real(model, mode)
        head = [layer for layer in small.layers if layer.weights][-1]
        head.set_weights([np.zeros_like(w) for w in head.get_weights()])
        return small

    monkeypatch.setattr(quantize, "quantized", broken)
    with pytest.raises(KtransferError, match=r"^--max_accuracy_drop: the --quantize=int8 model "
                                             r"scores .* nothing was exported"):
        _export(quickstart_run, tmp_path / "digits", quantize="int8")
    assert not list((tmp_path / "digits").glob("[0-9]*"))


@pytest.mark.slow  # a run and two exports: make test-slow
def test_a_convnet_is_told_that_only_its_head_shrinks(quickstart_run, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        version = _export(quickstart_run, tmp_path / "digits", quantize="int8")
    report = json.loads((version / quantize.REPORT).read_text())
    assert report["quantized_share"] < 0.1 and report["within_limit"]
    assert "% of the weights are in layers Keras quantizes" in caplog.text


def test_quantize_with_a_tflite_copy_is_refused_at_once(tmp_path):
    with pytest.raises(ConfigError, match="^--quantize: quantizes the SavedModel"):
        config.ExportConfig(run_dir="r", export_dir=str(tmp_path / "m"), quantize="int8",
                            tflite="int8")


@pytest.mark.slow  # two exports of the quickstart run: make test-slow
@pytest.mark.parametrize("mode", ["int4", "float8"])
def test_int4_and_float8_exports_are_scored_and_served_as_in_keras(quickstart_run, tmp_path,
                                                                    mode):
    """No test ran either mode before (ce06f12). int4 stores the head's kernel in half a byte
    per weight; float8 (Keras' FP8 training mode) keeps float32 kernels and adds scales, so it
    is not smaller (as the export guide says). Both serve what the quantized Keras model gives,
    and stay close to the float32 model."""
    version = _export(quickstart_run, tmp_path / "digits", quantize=mode)
    report = json.loads((version / quantize.REPORT).read_text())
    assert report["mode"] == mode and report["within_limit"]
    if mode == "int4":
        assert report["weight_bytes"] < report["float32_weight_bytes"]
    else:
        assert report["weight_bytes"] > report["float32_weight_bytes"]
    clf = open_classifier(quickstart_run)
    size = clf.model.input_shape[1]
    pixels = np.random.default_rng(0).uniform(0, 255, (4, size, size, 3)).astype("float32")
    small = quantize.quantized(clf.model, mode).predict(pixels, verbose=0)
    served = tf.saved_model.load(str(version)).signatures["predict_pixels"](
        pixels=tf.constant(pixels))["probabilities"]
    np.testing.assert_allclose(served, small, atol=1e-5)
    full = clf.model.predict(pixels, verbose=0)
    assert np.abs(small - full).max() < 0.05  # float8 measured 0.015 here
    if mode == "int4":
        assert np.abs(small - full).max() > 0  # the quantized network is what serves
