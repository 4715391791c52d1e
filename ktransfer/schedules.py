"""Learning-rate schedules per training phase: constant, exponential, cosine, step; with warm-up.

All schedules count optimizer steps from the start of their phase; `steps_per_epoch` converts the
epoch-based flags into steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

from ktransfer.config import TrainConfig
from ktransfer.registry import Registry


@keras.saving.register_keras_serializable(package="ktransfer")
class Warmup(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to `peak` over `warmup_steps`, then `after(step - warmup_steps)`."""

    def __init__(self, after, peak: float, warmup_steps: int):
        self.after = after
        self.peak = float(peak)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warm = keras.ops.cast(self.warmup_steps, "float32")
        rise = self.peak * (step + 1.0) / keras.ops.maximum(warm, 1.0)
        after = self.after(keras.ops.maximum(step - warm, 0.0)) if callable(self.after) \
            else keras.ops.convert_to_tensor(self.after, "float32")
        return keras.ops.where(step < warm, rise, keras.ops.cast(after, "float32"))

    def get_config(self):
        after = self.after
        if isinstance(after, keras.optimizers.schedules.LearningRateSchedule):
            after = keras.saving.serialize_keras_object(after)
        return {"after": after, "peak": self.peak, "warmup_steps": self.warmup_steps}

    @classmethod
    def from_config(cls, config):
        after = config["after"]
        if isinstance(after, dict):
            after = keras.saving.deserialize_keras_object(after)
        return cls(after, config["peak"], config["warmup_steps"])


@keras.saving.register_keras_serializable(package="ktransfer")
class Offset(keras.optimizers.schedules.LearningRateSchedule):
    """`schedule(step + offset)`: continues a phase's schedule in a new optimizer (gradual
    unfreezing recompiles the model at each stage, and its step counter restarts at 0)."""

    def __init__(self, schedule, offset: int):
        self.schedule = schedule
        self.offset = int(offset)

    def __call__(self, step):
        return self.schedule(keras.ops.cast(step, "float32") + float(self.offset))

    def get_config(self):
        return {"schedule": keras.saving.serialize_keras_object(self.schedule),
                "offset": self.offset}

    @classmethod
    def from_config(cls, config):
        return cls(keras.saving.deserialize_keras_object(config["schedule"]), config["offset"])


def make_schedule(cfg: TrainConfig, peak: float, steps_per_epoch: int, epochs: int,
                  offset_epochs: int = 0):
    """The learning rate (float or schedule) for one phase of `epochs` epochs, as seen from
    `offset_epochs` into the phase."""
    sched = _phase_schedule(cfg, peak, steps_per_epoch, epochs)
    if offset_epochs and callable(sched):
        return Offset(sched, offset_epochs * steps_per_epoch)
    return sched


# name -> builder(cfg, peak, steps_per_epoch, decay_steps) of the schedule after warm-up.
SCHEDULES: Registry[Callable[[TrainConfig, float, int, int], Any]] = Registry(
    "learning-rate schedule", "lr_schedule")


@SCHEDULES.register("constant")
def _constant(cfg: TrainConfig, peak: float, steps_per_epoch: int, total: int) -> Any:
    return peak


@SCHEDULES.register("exponential")
def _exponential(cfg: TrainConfig, peak: float, steps_per_epoch: int, total: int) -> Any:
    return keras.optimizers.schedules.ExponentialDecay(peak, decay_steps=steps_per_epoch,
                                                       decay_rate=cfg.decay_rate)


@SCHEDULES.register("cosine")
def _cosine(cfg: TrainConfig, peak: float, steps_per_epoch: int, total: int) -> Any:
    return keras.optimizers.schedules.CosineDecay(peak, decay_steps=total,
                                                  alpha=cfg.cosine_alpha)


@SCHEDULES.register("step")
def _step(cfg: TrainConfig, peak: float, steps_per_epoch: int, total: int) -> Any:
    every = cfg.step_every * steps_per_epoch
    n = max(1, (total - 1) // every + 1)
    boundaries = [every * k - 1 for k in range(1, n)]  # value k applies from step every*k
    values = [peak / cfg.step_factor**k for k in range(n)]
    if not boundaries:
        return peak
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def _phase_schedule(cfg: TrainConfig, peak: float, steps_per_epoch: int, epochs: int):
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    total = max(1, epochs * steps_per_epoch - warmup)
    base = SCHEDULES.get(cfg.lr_schedule)(cfg, peak, steps_per_epoch, total)
    return Warmup(base, peak, warmup) if warmup else base
