"""Long steps say where they are: a pass or an epoch logs its progress with the time left,
and a run logs each step after training, so that a slow run cannot be taken for a hung one."""

from __future__ import annotations

import logging

import keras
import numpy as np
import pytest

from ktransfer import config
from ktransfer.runs.progress import PassProgress, TrainProgress, eta
from ktransfer.training import train

from conftest import tiny_values


def test_time_left_at_the_pace_so_far():
    assert eta(1, 4, 10.0) == "30 s left"
    assert eta(10, 70, 20.0) == "2 min 0 s left"
    assert eta(0, 4, 1.0) == "" and eta(4, 4, 1.0) == ""


def test_passes_and_epochs_log_progress(caplog):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile("sgd", "mse")
    x, y = np.zeros((40, 3), np.float32), np.zeros((40, 2), np.float32)
    with caplog.at_level(logging.INFO, logger="ktransfer.progress"):
        model.predict(x, batch_size=10, verbose=0, callbacks=[PassProgress("features", 4, 0)])
        model.fit(x, y, batch_size=10, epochs=3, verbose=0,
                  callbacks=[TrainProgress("head", 3, every=0)])
    lines = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("features: batch 2 of 4 (") for m in lines)
    assert any(m.startswith("head epoch 1: batch 3 of 4 (") for m in lines)
    assert any(m.startswith("head phase: epoch 2 of 3 done, ") for m in lines)


@pytest.mark.slow  # a run with a report and an export: make test-slow
def test_a_run_logs_the_steps_after_training(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="ktransfer.progress"):
        train(config.build(**tiny_values(tmp_path, report=True)))
    lines = [r.getMessage() for r in caplog.records]
    for what in ("scoring the test split", "writing the report"):
        assert any(m.startswith(what) and "done in" in m for m in lines), what
