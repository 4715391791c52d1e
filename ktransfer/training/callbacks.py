"""Callbacks: atomic best/last checkpoints and a history that spans both training phases."""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras.src.saving import saving_lib  # save_weights_only(objects_to_skip=): not on Model

from ktransfer.errors import TrainingError, first_line
from ktransfer.network import lora
from ktransfer.runs import atomic

LR_SAMPLES = 9  # learning-rate points recorded per epoch (lr.csv), ends included


def current_lr(model: keras.Model) -> float:
    """The optimizer's learning rate at its current step."""
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


def lr_samples(optimizer: keras.optimizers.Optimizer, first: int, last: int,
               count: int = LR_SAMPLES) -> list[tuple[float, float]]:
    """The learning rate at up to `count` evenly spaced optimizer steps of [first, last], the
    steps of one epoch: (where the step starts, as a fraction of the epoch; rate)."""
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # under loss scaling
    steps = last - first + 1
    picked = sorted({first + round((steps - 1) * i / max(count - 1, 1)) for i in range(count)})
    schedule = getattr(optimizer, "_learning_rate", None)
    if not isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        rate = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        return [((s - first) / steps, rate) for s in (picked[0], picked[-1])]
    return [((s - first) / steps, float(keras.ops.convert_to_numpy(schedule(s))))
            for s in picked]


class AtomicCheckpoint(keras.callbacks.Callback):
    """Saves the whole model as `.keras` at epoch end, via a temporary file and a rename.

    With `monitor`, saves only when it improves (best checkpoint); the best value is kept
    across phases because the same instance is used for both. `target` is the model to save
    when it is not the one being fitted (a head trained on cached features).

    `head`: while only the head trains (on cached features), each epoch writes the head's
    weights alone (PATH.head.weights.h5, kilobytes instead of the whole backbone);
    `materialize` then writes the `.keras` file once, the untouched backbone with that head.

    `deferred`: files are written with a `.pending` suffix and take their names only when
    `promote` is called, once the epoch is committed to the resume state; a run killed in
    between comes back to the last committed epoch, and a best checkpoint of the lost epoch is
    discarded.

    `twin`: a checkpoint of the same model earlier in the callback list (the best one, for the
    last one); in an epoch where it wrote the whole model, this one copies its file instead of
    saving the model again.
    """

    def __init__(self, path: str | os.PathLike, monitor: str | None = None,
                 target: keras.Model | None = None, guard: NaNGuard | None = None,
                 deferred: bool = False, twin: AtomicCheckpoint | None = None,
                 mode_max: bool | None = None):
        super().__init__()
        self.twin = twin
        self.written_epoch: int | None = None  # this epoch's, when it wrote the whole model
        self.path = os.fspath(path)
        self.head_path = self.path + ".head.weights.h5"
        self.suffix = ".pending" if deferred else ""
        self.target = target
        self.head: keras.Model | None = None
        self.guard = guard
        self.monitor = monitor
        self.mode_max = bool(monitor and "acc" in monitor) if mode_max is None else mode_max
        self.best = -math.inf if self.mode_max else math.inf

    def _improved(self, logs: dict | None) -> bool:
        if not self.monitor:
            return True
        value = (logs or {}).get(self.monitor)
        if value is None:
            return False
        if not (value > self.best if self.mode_max else value < self.best):
            return False
        self.best = float(value)
        return True

    def on_epoch_begin(self, epoch, logs=None):
        self.written_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        if (self.guard is not None and self.guard.tripped) or not self._improved(logs):
            return
        if self.head is not None:
            with atomic.atomic_path(self.head_path + self.suffix, suffix=".weights.h5") as tmp:
                self.head.save_weights(str(tmp))
            return
        # The temporary name must end in .keras for Keras; the rename gives the final name.
        twin = self.twin
        with atomic.atomic_path(self.path + self.suffix, suffix=".keras") as tmp:
            if twin is not None and twin.written_epoch == epoch and twin.target is self.target:
                shutil.copyfile(twin.path + twin.suffix, tmp)
            else:
                (self.target or self.model).save(str(tmp))
        self.written_epoch = epoch
        if os.path.exists(self.head_path):  # superseded by a whole-model checkpoint
            os.unlink(self.head_path)

    def materialize(self) -> None:
        """Writes the `.keras` file of a head-only checkpoint: the target with those head
        weights (the head's current weights are put back afterwards)."""
        self.promote()
        if self.head is None or not os.path.exists(self.head_path):
            return
        current = self.head.get_weights()
        self.head.load_weights(self.head_path)
        try:
            atomic.save_with(self.path, (self.target or self.model).save)
        finally:
            self.head.set_weights(current)
        os.unlink(self.head_path)

    def promote(self) -> None:
        """Deferred checkpoints of a committed epoch take their names."""
        for path in (self.path, self.head_path):
            if self.suffix and os.path.exists(path + self.suffix):
                os.replace(path + self.suffix, path)

    def discard(self) -> None:
        """Drops deferred checkpoints of an epoch that was not committed."""
        for path in (self.path, self.head_path):
            if self.suffix and os.path.exists(path + self.suffix):
                os.unlink(path + self.suffix)


class HistoryWriter(keras.callbacks.Callback):
    """Keeps one row per epoch (both phases) and rewrites history.csv atomically each epoch.

    Columns: epoch (1-based, continuous across phases), phase, lr, seconds (wall time of the
    epoch, validation included), then every logged metric. Beside it, lr.csv holds the
    learning rate within each epoch (columns epoch, position: epochs since the start of training,
    phase, lr), so the report can draw cyclic schedules as they ran.
    """

    def __init__(self, path: str | os.PathLike, guard: NaNGuard | None = None,
                 keep_until: int = 0):
        super().__init__()
        self.path = os.fspath(path)
        self.lr_path = os.path.join(os.path.dirname(self.path), "lr.csv")
        self.guard = guard
        self.phase = ""
        self.rows = _read_rows(self.path, "epoch", keep_until)
        self.lr_rows = _read_rows(self.lr_path, "epoch", keep_until)

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()
        self._first_step = _steps_done(self.model.optimizer)

    def on_epoch_end(self, epoch, logs=None):
        if self.guard is not None and self.guard.tripped:
            return
        row: dict[str, float | int | str] = {
            "epoch": epoch + 1, "phase": self.phase, "lr": current_lr(self.model),
            "seconds": round(time.perf_counter() - getattr(self, "_started", time.perf_counter()),
                             3)}
        row.update({k: float(v) for k, v in (logs or {}).items() if k != "learning_rate"})
        self.rows.append(row)
        last = max(_steps_done(self.model.optimizer) - 1, 0)
        first = min(getattr(self, "_first_step", last), last)
        self.lr_rows.extend({"epoch": epoch + 1, "position": round(epoch + fraction, 4),
                             "phase": self.phase, "lr": lr}
                            for fraction, lr in lr_samples(self.model.optimizer, first, last))
        _write_rows(self.path, self.rows)
        _write_rows(self.lr_path, self.lr_rows)


def _steps_done(optimizer: keras.optimizers.Optimizer) -> int:
    """Batches the optimizer has seen: what schedules count. With gradient accumulation
    `iterations` counts updates instead, so the raw counter is read."""
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # under loss scaling
    return int(keras.ops.convert_to_numpy(getattr(optimizer, "_iterations",
                                                  optimizer.iterations)))


def _read_rows(path: str, key: str, keep_until: int) -> list[dict]:
    """The rows of a CSV file whose `key` is at most `keep_until` (a resumed run keeps its
    epochs); none without `keep_until` or without the file."""
    if not keep_until or not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [dict(r) for r in csv.DictReader(f) if int(r[key]) <= keep_until]


def _write_rows(path: str, rows: list[dict]) -> None:
    """Rewrites a CSV file atomically, with the union of the rows' keys as columns."""
    columns: list[str] = []
    for r in rows:
        columns.extend(k for k in r if k not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic.write_text(path, buffer.getvalue())


class NaNGuard(keras.callbacks.Callback):
    """Stops training at the first batch whose loss is NaN or infinite and remembers where.

    Put it first in the callback list: checkpoint, history and resume callbacks check
    `tripped` and write nothing for the broken epoch, so the last good files stay.
    """

    def __init__(self):
        super().__init__()
        self.tripped: tuple[int, int] | None = None  # (1-based epoch, batch)
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.tripped = (self._epoch + 1, batch + 1)
            self.model.stop_training = True


class EMAWeights(keras.callbacks.SwapEMAWeights):
    """`--ema`: the model holds the moving average of its weights whenever anything outside the
    training steps looks at it: validation, every callback after this one at the end of an epoch
    (checkpoints, resume state, early stopping's best weights) and the end of the fit. The raw
    weights go back in at the start of the next epoch.

    Keras's `SwapEMAWeights(swap_on_epoch=True)` with two changes: the end of the fit keeps the
    average even when early stopping ends it before the last epoch (the transfer optimizers'
    `finalize_variable_values` does nothing, see `ktransfer.optim.optimizers`), and a resumed fit
    starts from saved weights that are the average (`average_in_model=True`).

    Args:
        average_in_model: whether the model holds the average now (the optimizer then holds
            the raw weights).
    """

    def __init__(self, average_in_model: bool = False):
        super().__init__(swap_on_epoch=True)
        self._ema_weights_in_model = average_in_model

    def on_train_end(self, logs=None):
        optimizer = getattr(self.model.optimizer, "inner_optimizer", self.model.optimizer)
        built = hasattr(optimizer, "_model_variables_moving_average")  # not after 0 epochs
        if built and not self._ema_weights_in_model:
            self._swap_variables()
            self._ema_weights_in_model = True


class ResumeState(keras.callbacks.Callback):
    """After every epoch, saves what a killed run needs to continue from that epoch: the fitted
    model's weights with its optimizer state (`epochNNNN.weights.h5`), then `state.json` (the
    commit point, written last). Both are written atomically; older weights are removed.

    `phase`, `stage`, `fitted` ("model" or "head") and `extra` describe the current fit and are
    set by the training loop before each one. `skip`: a frozen backbone the fitted model holds
    that need not be saved every epoch (the run rebuilds it as it was); its weights are left out
    of the file, and the state says so with their fingerprint, for `load_resumed`.
    """

    def __init__(self, directory: str | os.PathLike, guard: NaNGuard | None = None,
                 best: AtomicCheckpoint | None = None):
        super().__init__()
        self.directory = Path(directory)
        self.guard = guard
        self.best = best
        self.phase, self.stage, self.fitted = "", 0, "model"
        self.extra: dict = {}
        self.skip: keras.Model | None = None
        self.skip_fingerprint = ""
        self.lora: keras.Model | None = None  # a backbone with LoRA adapters

    def on_epoch_end(self, epoch, logs=None):
        if self.guard is not None and self.guard.tripped:
            return
        self.commit(epoch + 1, complete=False)

    def commit(self, epoch: int, complete: bool) -> None:
        """Saves the current weights and state as of `epoch` (1-based, global)."""
        name = f"epoch{epoch:04d}{'-end' if complete else ''}.weights.h5"
        skip = [self.skip] if self.skip is not None else None
        atomic.save_with(self.directory / name, lambda path: saving_lib.save_weights_only(
            self.model, path, objects_to_skip=skip))
        adapters = name.replace(".weights.h5", ".lora.npz") if self.lora is not None else ""
        if adapters:  # Keras saves LoRA layers merged, with zero adapters
            atomic.save_with(self.directory / adapters,
                             lambda path: lora.save_adapters(self.lora, path))
        state = {"epoch": epoch, "phase": self.phase, "stage": self.stage,
                 "fitted": self.fitted, "complete": complete, "weights": name,
                 "backbone_skipped": skip is not None,
                 "backbone_fingerprint": self.skip_fingerprint if skip else "",
                 "lora": adapters, "seeds": seed_states(self.model),
                 "best": None if self.best is None or not math.isfinite(self.best.best)
                 else self.best.best, **self.extra}
        atomic.write_json(self.directory / "state.json", state)
        if self.best is not None:
            self.best.promote()
        for old in [*self.directory.glob("epoch*.weights.h5"),
                    *self.directory.glob("epoch*.lora.npz")]:
            if old.name not in (name, adapters):
                old.unlink(missing_ok=True)


def load_resumed(model: keras.Model, folder: str | os.PathLike, state: dict,
                 backbone: keras.Model) -> None:
    """Loads the weights `ResumeState` saved in `folder` (`state` is its state.json) into
    `model`, leaving out `backbone` when the state says it was left out."""
    skip = [backbone] if state.get("backbone_skipped") else None
    if skip and weights_fingerprint(backbone) != state.get("backbone_fingerprint"):
        raise TrainingError(
            f"the resume state in {folder} leaves out the frozen backbone, and "
            "the backbone built now differs from the one the run started with (other weights "
            "or another version of them); give the run's --weights again, or start over with "
            "--overwrite")
    path = Path(folder) / state["weights"]
    try:
        model.load_weights(path, objects_to_skip=skip)
    except (OSError, ValueError, KeyError) as exc:  # missing, truncated or not HDF5
        raise TrainingError(f"cannot read {path} (the weights of the last saved epoch: "
                            f"{first_line(exc)[:160]}); nothing was deleted. Pass --overwrite "
                            "to start this run again from scratch, or choose another "
                            "--run_dir") from None
    if state.get("lora"):
        lora.restore(backbone, Path(folder) / state["lora"])
    restore_seed_states(model, state.get("seeds", []))


def _seed_variables(model: keras.Model) -> list[Any]:
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


def seed_states(model: keras.Model) -> list[list[int]]:
    """The state of every random seed generator in `model` (dropout's, ...), in the model's
    order (their names carry a per-process counter): Keras' weights files leave them out, and a
    resumed run must draw the masks the killed run would have."""
    return [[int(x) for x in keras.ops.convert_to_numpy(v)] for v in _seed_variables(model)]


def restore_seed_states(model: keras.Model, states: list[list[int]]) -> None:
    """Puts back what `seed_states` saved (nothing when the model's generators differ)."""
    found = _seed_variables(model)
    if len(found) == len(states):
        for variable, state in zip(found, states, strict=True):
            variable.assign(np.asarray(state, variable.dtype))


def weights_fingerprint(model: keras.Model) -> str:
    """SHA-1 of `model`'s weights (shapes and bytes, in order): whether a rebuilt backbone is
    the one a run started with (~20 ms for 3.5 M weights)."""
    digest = hashlib.sha1()
    for weight in model.weights:
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(weight))
        digest.update(str(value.shape).encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


class TensorBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard callback, with the `evaluation_*_vs_iterations` steps continuous
    across fits: each phase (and gradual-unfreezing stage) compiles a new optimizer whose step
    count restarts at 0, so `step_offset` (the steps of the fits before) is added.

    Overrides `on_test_end` of keras.callbacks.TensorBoard (its private writer attributes);
    tests/test_callbacks.py reads the event files back, so a Keras change shows up.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.step_offset = 0

    def on_test_end(self, logs=None):
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None and hasattr(optimizer, "iterations"):
            step = keras.ops.convert_to_numpy(optimizer.iterations) + self.step_offset
            with self._val_writer.as_default():
                for name, value in (logs or {}).items():
                    self.summary.scalar(f"evaluation_{name}_vs_iterations", value,
                                        step=int(step))
        self._pop_writer()
