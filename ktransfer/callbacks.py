"""Callbacks: atomic best/last checkpoints and a history that spans both training phases."""

from __future__ import annotations

import csv
import io
import math
import os

import keras

from ktransfer import atomic


def current_lr(model: keras.Model) -> float:
    """The optimizer's learning rate at its current step."""
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


class AtomicCheckpoint(keras.callbacks.Callback):
    """Saves the whole model as `.keras` at epoch end, via a temporary file and a rename.

    With `monitor`, saves only when it improves (best checkpoint); the best value is kept
    across phases because the same instance is used for both. `target` is the model to save
    when it is not the one being fitted (a head trained on cached features).
    """

    def __init__(self, path: str | os.PathLike, monitor: str | None = None,
                 target: keras.Model | None = None):
        super().__init__()
        self.path = os.fspath(path)
        self.target = target
        self.monitor = monitor
        self.mode_max = bool(monitor and "acc" in monitor)
        self.best = -math.inf if self.mode_max else math.inf

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor:
            value = (logs or {}).get(self.monitor)
            if value is None:
                return
            better = value > self.best if self.mode_max else value < self.best
            if not better:
                return
            self.best = float(value)
        atomic.save_with(self.path, (self.target or self.model).save)


class HistoryWriter(keras.callbacks.Callback):
    """Keeps one row per epoch (both phases) and rewrites history.csv atomically each epoch.

    Columns: epoch (1-based, continuous across phases), phase, lr, then every logged metric.
    """

    def __init__(self, path: str | os.PathLike):
        super().__init__()
        self.path = os.fspath(path)
        self.rows: list[dict[str, float | int | str]] = []
        self.phase = ""

    def on_epoch_end(self, epoch, logs=None):
        row: dict[str, float | int | str] = {"epoch": epoch + 1, "phase": self.phase,
                                             "lr": current_lr(self.model)}
        row.update({k: float(v) for k, v in (logs or {}).items() if k != "learning_rate"})
        self.rows.append(row)
        columns: list[str] = []
        for r in self.rows:
            columns.extend(k for k in r if k not in columns)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        writer.writerows(self.rows)
        atomic.write_text(self.path, buffer.getvalue())
