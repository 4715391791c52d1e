"""Runs a Keras training program with a clock on every `fit` and `predict`: the time of the first
training batch, of the first prediction batch and of every epoch's start and end, written as
JSON to $PEER_TIMING at exit.

    PEER_TIMING=out.json python clock.py -m ktransfer.train --flagfile=...
    PEER_TIMING=out.json python clock.py guide.py --data=DIR

Used by benchmarks/peers.py for ktransfer and the keras.io guide script alike, so that neither
program carries timing code of its own. Each `fit` call is one phase (ktransfer: the head, then
fine-tuning; the guide script: the same).
"""

from __future__ import annotations

import atexit
import json
import os
import runpy
import sys
import time

import keras

RECORD: dict = {"first_step": None, "first_predict": None, "fits": []}


class Clock(keras.callbacks.Callback):
    """Records the first batch's end and each epoch's [start, end, start of validation, end of
    validation] of one fit (its callbacks run last, so an epoch's end includes the others'
    epoch-end work)."""

    def __init__(self, epochs: list):
        super().__init__()
        self.epochs = epochs

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append([time.time(), None, None, None])

    def on_test_begin(self, logs=None):  # training done: validation follows
        if self.epochs and self.epochs[-1][1] is None:
            self.epochs[-1][2] = time.time()

    def on_test_end(self, logs=None):  # validation done: what follows is epoch-end work
        if self.epochs and self.epochs[-1][1] is None:
            self.epochs[-1][3] = time.time()

    def on_train_batch_end(self, batch, logs=None):
        if RECORD["first_step"] is None:
            RECORD["first_step"] = time.time()

    def on_epoch_end(self, epoch, logs=None):
        self.epochs[-1][1] = time.time()


class PredictClock(keras.callbacks.Callback):
    """Records the first prediction batch's end (ktransfer's feature cache extracts the
    backbone's features with `predict` before its first training step)."""

    def on_predict_batch_end(self, batch, logs=None):
        if RECORD["first_predict"] is None:
            RECORD["first_predict"] = time.time()


def timed_predict(predict):
    def wrapper(self, *args, **kwargs):
        kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), PredictClock()]
        return predict(self, *args, **kwargs)
    return wrapper


def timed_fit(fit):
    def wrapper(self, *args, **kwargs):
        epochs: list = []
        RECORD["fits"].append(epochs)
        kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), Clock(epochs)]
        return fit(self, *args, **kwargs)
    return wrapper


def write() -> None:
    RECORD["end"] = time.time()
    with open(os.environ["PEER_TIMING"], "w") as f:
        json.dump(RECORD, f)


def main() -> None:
    keras.Model.fit = timed_fit(keras.Model.fit)
    keras.Model.predict = timed_predict(keras.Model.predict)
    atexit.register(write)
    if sys.argv[1] == "-m":
        sys.argv = [sys.argv[2], *sys.argv[3:]]
        runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
    else:
        sys.argv = sys.argv[1:]
        runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
