"""Progress lines for long steps, so that a run is never silent long enough to look hung: a
Keras callback that logs a pass's (or an epoch's) progress with the time left, at most every
`every` seconds, and a context manager that times a named step."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

import keras

log = logging.getLogger("ktransfer.progress")

EVERY_S = 15.0  # seconds between two progress lines of one pass


def eta(done: int, total: int, seconds: float) -> str:
    """"3 min 10 s left" at the pace so far ("" before the first step)."""
    if done <= 0 or total <= done:
        return ""
    left = seconds / done * (total - done)
    return f"{int(left // 60)} min {int(left % 60)} s left" if left >= 60 else \
        f"{left:.0f} s left"


class PassProgress(keras.callbacks.Callback):
    """Logs `what`'s batches done of `total`, with the time left, every `every` seconds of a
    `model.predict` pass (a pass that ends sooner prints nothing)."""

    def __init__(self, what: str, total: int, every: float = EVERY_S) -> None:
        super().__init__()
        self.what, self.total, self.every = what, total, every
        self.started = self.last = time.monotonic()

    def on_predict_batch_end(self, batch: int, logs: dict | None = None) -> None:
        now = time.monotonic()
        if now - self.last < self.every:
            return
        self.last = now
        done = batch + 1
        log.info("%s: batch %d of %d (%s)", self.what, done, self.total,
                 eta(done, self.total, now - self.started) or "finishing")


@contextlib.contextmanager
def step(what: str) -> Iterator[None]:
    """Logs `what` before it runs and its duration after."""
    log.info("%s ...", what)
    started = time.monotonic()
    yield
    log.info("%s: done in %.1f s", what, time.monotonic() - started)


class TrainProgress(keras.callbacks.Callback):
    """Logs, at most every `every` seconds, where a fit is: the batch inside a long epoch, and
    after an epoch the time left in the phase (`last`: the phase's last global epoch)."""

    def __init__(self, phase: str, last: int, every: float = EVERY_S) -> None:
        super().__init__()
        self.phase, self.last_epoch, self.every = phase, last, every
        self.epoch = 0
        self.started = self.epoch_started = self.shown = time.monotonic()
        self.epochs_done = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch, self.epoch_started = epoch, time.monotonic()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        now, steps = time.monotonic(), (self.params or {}).get("steps")
        if now - self.shown < self.every or not steps:
            return
        self.shown = now
        log.info("%s epoch %d: batch %d of %d (%s in this epoch)", self.phase, self.epoch + 1,
                 batch + 1, steps, eta(batch + 1, steps, now - self.epoch_started) or "ending")

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        now = time.monotonic()
        self.epochs_done += 1
        left = self.last_epoch - (epoch + 1)
        if now - self.shown < self.every or left <= 0:
            return
        self.shown = now
        log.info("%s phase: epoch %d of %d done, %s", self.phase, epoch + 1, self.last_epoch,
                 eta(self.epochs_done, self.epochs_done + left, now - self.started))
