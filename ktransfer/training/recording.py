"""Keeping the class probabilities of a fit's validation passes, so that a run does not predict
its validation split a second time once training is done (MobileNetV2 at 160 px: ~2 s for 400
images on 2 CPU cores, a tenth of a short run's fixed cost); and scoring each pass as a whole
where a task's metric is not a mean over batches (`EpochScores`: detection's mAP)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ktransfer.training.callbacks import weights_fingerprint


@dataclass(frozen=True)
class _Buffer:
    """The recording's variables: predictions [rows, classes], rows written, and whether a
    validation pass is on."""

    values: tf.Variable
    count: tf.Variable
    on: tf.Variable


class ValidationRecorder(keras.callbacks.Callback):
    """Records the predictions of every validation pass of the fits it is a callback of.

    `install` wraps the model's `compute_metrics`, which Keras's test step calls with the batch's
    predictions, so the validation pass writes them, in order, into a [rows, classes] variable
    (only between `on_test_begin` and `on_test_end`: training steps and other evaluations
    write nothing). At the end of a complete pass in the fit's last epoch the model's weights
    are fingerprinted (once; a SHA-1 of every weight, ~20 ms for MobileNetV2); `probabilities`
    returns the recording only while the model still holds those weights, so a restore of
    the best weights, an EMA swap or AdaBN's re-estimate after the last pass sends the caller
    back to predicting, as does an early stop.

    Args:
        rows: examples in the validation split.
        classes: the classifier's outputs.

    Example:
        >>> recorder = ValidationRecorder(rows=400, classes=5)
        >>> if recorder.install(model):
        ...     model.fit(train, validation_data=val, callbacks=[recorder])
        >>> probabilities = recorder.probabilities(model)  # [400, 5], or None
    """

    def __init__(self, rows: int, classes: int | tuple[int, ...]):
        super().__init__()
        self.rows = rows
        self.shape = tuple(classes) if isinstance(classes, tuple) else (classes,)
        self.buffer: _Buffer | None = None  # made by `install`, outside any strategy
        self.fingerprint: str | None = None
        self._epoch = 0

    def install(self, model: keras.Model) -> bool:
        """Wraps `model.compute_metrics` to record; False (and nothing done) when the model is
        distributed, whose per-replica batches this single buffer cannot order."""
        if model.distribute_strategy.num_replicas_in_sync != 1 or tf.distribute.has_strategy():
            return False
        if self.buffer is None:
            values = tf.Variable(tf.zeros([self.rows, *self.shape]), trainable=False)
            self.buffer = _Buffer(values, tf.Variable(0, trainable=False),
                                  tf.Variable(False, trainable=False))
        original = type(model).compute_metrics.__get__(model)
        buffer = self.buffer

        def compute_metrics(x, y, y_pred, sample_weight=None):
            _record(buffer, y_pred)
            return original(x, y, y_pred, sample_weight=sample_weight)

        model.compute_metrics = compute_metrics
        return True

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_test_begin(self, logs=None):
        self.fingerprint = None
        if self.buffer is not None:
            self.buffer.count.assign(0)
            self.buffer.on.assign(True)

    def on_test_end(self, logs=None):
        if self.buffer is None:
            return
        self.buffer.on.assign(False)
        last = self._epoch + 1 == self.params.get("epochs")
        if last and int(self.buffer.count.numpy()) == self.rows:
            self.fingerprint = weights_fingerprint(self.model)

    def last_pass(self) -> np.ndarray | None:
        """float64 [rows, classes] of the last validation pass if it was complete, whatever
        the weights are now; else None."""
        if self.buffer is None or int(self.buffer.count.numpy()) != self.rows:
            return None
        return self.buffer.values.numpy().astype(np.float64)

    def probabilities(self, model: keras.Model) -> np.ndarray | None:
        """float64 [rows, classes] of the last complete validation pass, if `model` holds the
        weights that pass saw; else None."""
        if (self.buffer is None or self.fingerprint is None
                or weights_fingerprint(model) != self.fingerprint):
            return None
        return self.buffer.values.numpy().astype(np.float64)


class EpochScores(keras.callbacks.Callback):
    """Adds `val_NAME` to each epoch's logs for the metrics a task scores on the whole
    validation split (`Task.epoch_scores`: detection's COCO mAP, which no mean over batches
    gives), so that --monitor, the best checkpoint, early stopping, history.csv and
    TensorBoard read them as any metric. It comes after the recorder and before them.

    Args:
        score: validation outputs [rows, ...] -> {name: value}.
        recorder: the fit's recorder, if installed: its last pass is the epoch's outputs.
        predict: () -> the validation outputs, where nothing was recorded.
    """

    def __init__(self, score: Callable[[np.ndarray], dict[str, float]],
                 recorder: ValidationRecorder | None, predict: Callable[[], np.ndarray]):
        super().__init__()
        self.score, self.recorder, self.predict = score, recorder, predict

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is None or "val_loss" not in logs:  # no validation pass this epoch
            return
        outputs = self.recorder.last_pass() if self.recorder is not None else None
        found = self.score(self.predict() if outputs is None else outputs)
        logs.update({f"val_{name}": float(value) for name, value in found.items()})


def _record(buffer: _Buffer, y_pred: tf.Tensor) -> None:
    """Writes one batch of predictions [B, classes] at the buffer's next rows, while a
    validation pass is on (a graph op: Keras traces the step once)."""
    rows, shape = buffer.values.shape[0], buffer.values.shape[1:]
    if not isinstance(y_pred, tf.Tensor) or y_pred.shape[1:] != shape:
        return

    def write() -> tf.Tensor:
        # Rows past the end (a pipeline longer than the split) overwrite the last one: the
        # count then says the recording is not the split's. Static shapes, for XLA.
        at = tf.minimum(buffer.count + tf.range(tf.shape(y_pred)[0]), rows - 1)
        buffer.values.scatter_nd_update(at[:, None], tf.cast(y_pred, tf.float32))
        return buffer.count.assign_add(tf.shape(y_pred)[0])

    tf.cond(buffer.on, write, lambda: tf.identity(buffer.count))
