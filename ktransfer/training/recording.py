"""Keeping the class probabilities of a fit's validation passes, so that a run does not predict
its validation split a second time once training is done (MobileNetV2 at 160 px: ~2 s for 400
images on 2 CPU cores, a tenth of a short run's fixed cost)."""

from __future__ import annotations

from dataclasses import dataclass

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

    def probabilities(self, model: keras.Model) -> np.ndarray | None:
        """float64 [rows, classes] of the last complete validation pass, if `model` holds the
        weights that pass saw; else None."""
        if (self.buffer is None or self.fingerprint is None
                or weights_fingerprint(model) != self.fingerprint):
            return None
        return self.buffer.values.numpy().astype(np.float64)


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
