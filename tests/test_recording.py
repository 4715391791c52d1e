"""The validation recorder: a fit's last validation pass stands in for predicting the split again,
and only while the model holds the weights that pass saw."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from ktransfer.deploy import prediction
from ktransfer.training.recording import ValidationRecorder


def _classifier(classes: int = 3) -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    hidden = keras.layers.BatchNormalization()(keras.layers.Dense(8, activation="relu")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(hidden))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _batches(rows: int, seed: int = 0, batch: int = 16) -> tf.data.Dataset:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 4)).astype("float32")
    return tf.data.Dataset.from_tensor_slices((x, rng.integers(0, 3, rows))).batch(batch)


def test_the_last_validation_pass_gives_the_probabilities_predict_would():
    model, recorder = _classifier(), ValidationRecorder(rows=50, classes=3)
    assert recorder.install(model)
    val = _batches(50, seed=1)  # 3 full batches and a part one
    model.fit(_batches(64), validation_data=val, epochs=2, verbose=0, shuffle=False,
              callbacks=[recorder])
    model.evaluate(_batches(40, seed=2), verbose=0)  # not the fit's validation: not recorded
    recorded = recorder.probabilities(model)
    assert recorded is not None and recorded.shape == (50, 3)
    np.testing.assert_allclose(recorded, prediction.batch_probabilities(model, val), atol=1e-6)


def test_weights_changed_after_the_pass_void_the_recording():
    model, recorder = _classifier(), ValidationRecorder(rows=50, classes=3)
    recorder.install(model)
    model.fit(_batches(64), validation_data=_batches(50, 1), verbose=0, shuffle=False,
              callbacks=[recorder])
    assert recorder.probabilities(model) is not None
    # A moving BatchNorm statistic is enough (what AdaBN re-estimates).
    moving_mean = model.layers[2].moving_mean
    moving_mean.assign(moving_mean + 0.1)
    assert recorder.probabilities(model) is None


@pytest.mark.parametrize("rows", [40, 60])
def test_a_pass_of_another_length_than_the_split_is_not_kept(rows):
    model, recorder = _classifier(), ValidationRecorder(rows=50, classes=3)
    recorder.install(model)
    model.fit(_batches(64), validation_data=_batches(rows, 1), verbose=0, shuffle=False,
              callbacks=[recorder])
    assert recorder.probabilities(model) is None


@pytest.mark.parametrize("test_split, predicted", [
    pytest.param(0.0, 0, marks=pytest.mark.slow), (0.2, 1)])  # a run each
def test_after_the_last_epoch_only_the_test_split_is_predicted(tiny_config, monkeypatch,
                                                               test_split, predicted):
    from ktransfer import training
    from ktransfer.training import run

    calls, seen = [], {}
    real_predict, real_finish = prediction.batch_probabilities, run.finish
    monkeypatch.setattr(prediction, "batch_probabilities",
                        lambda model, batches: calls.append(1) or real_predict(model, batches))

    def finish(job, trained):
        metrics = real_finish(job, trained)
        seen["calls"] = len(calls)
        seen["predicted"] = real_predict(job.model, job.val_ds)
        seen["labels"] = job.splits.val.labels
        return metrics

    monkeypatch.setattr(run, "finish", finish)
    result = training.train(tiny_config(test_split=test_split, epochs=1, fine_tune_epochs=1,
                                        report=True))
    assert seen["calls"] == predicted
    # metrics.json's validation figures are those of the final model's own predictions.
    predicted = seen["predicted"].argmax(1)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["val"]["accuracy"] == pytest.approx(
        float(np.mean(predicted == seen["labels"])), abs=1e-9)
    assert (result.run_dir / "report.html").is_file()


def test_only_the_pass_of_the_fits_last_epoch_is_kept():
    model, recorder = _classifier(), ValidationRecorder(rows=50, classes=3)
    recorder.install(model)
    stop = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: setattr(model, "stop_training", epoch == 0))
    model.fit(_batches(64), validation_data=_batches(50, 1), epochs=3, verbose=0, shuffle=False,
              callbacks=[recorder, stop])  # stopped early, after its first epoch
    assert recorder.probabilities(model) is None
