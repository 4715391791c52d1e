"""Learning-rate schedules per training phase: constant, exponential, cosine, step, cyclic
(Smith's triangular, triangular2 and exp_range policies) and one-cycle; with warm-up.

All schedules count optimizer steps from the start of their phase (a resumed run restores the
step count, so it continues mid-cycle); `steps_per_epoch` converts the epoch-based flags into
steps. Every schedule class here is serialisable (`ktransfer>NAME`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import keras

from ktransfer.config import TrainConfig
from ktransfer.optim.catalog import SCHEDULES


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


@keras.saving.register_keras_serializable(package="ktransfer")
class Cyclic(keras.optimizers.schedules.LearningRateSchedule):
    """Cyclical learning rates (Smith 2017): up linearly from `low` to `high` in half a cycle
    of `cycle_steps`, down in the other half, again and again. `policy`: triangular (the same
    every cycle), triangular2 (the swing halves each cycle) or exp_range (the swing shrinks by
    `gamma` per step)."""

    def __init__(self, low: float, high: float, cycle_steps: int, policy: str = "triangular",
                 gamma: float = 1.0):
        self.low, self.high = float(low), float(high)
        self.cycle_steps, self.policy, self.gamma = int(cycle_steps), policy, float(gamma)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        half = max(self.cycle_steps / 2.0, 1.0)
        cycle = keras.ops.floor(1.0 + step / (2.0 * half))
        x = keras.ops.abs(step / half - 2.0 * cycle + 1.0)
        swing = (self.high - self.low) * keras.ops.maximum(0.0, 1.0 - x)
        if self.policy == "triangular2":
            swing = swing / keras.ops.power(2.0, cycle - 1.0)
        elif self.policy == "exp_range":
            swing = swing * keras.ops.power(self.gamma, step)
        return self.low + swing

    def get_config(self):
        return {"low": self.low, "high": self.high, "cycle_steps": self.cycle_steps,
                "policy": self.policy, "gamma": self.gamma}


@keras.saving.register_keras_serializable(package="ktransfer")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """The one-cycle policy (Smith 2018, as fastai runs it): from `peak / 25` up to `peak`
    over `rise_steps` and down to `peak * floor` by `total_steps`, both halves cosine-shaped."""

    def __init__(self, peak: float, total_steps: int, rise_steps: int, floor: float = 0.0):
        self.peak, self.total_steps = float(peak), int(total_steps)
        self.rise_steps, self.floor = int(rise_steps), float(floor)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        rise = float(max(self.rise_steps, 1))
        fall = float(max(self.total_steps - self.rise_steps, 1))
        start, end = self.peak / 25.0, self.peak * self.floor

        def cosine(a, b, fraction):  # from a to b along half a cosine
            fraction = keras.ops.clip(fraction, 0.0, 1.0)
            return b + (a - b) * (1.0 + keras.ops.cos(math.pi * fraction)) / 2.0

        return keras.ops.where(step < rise, cosine(start, self.peak, step / rise),
                               cosine(self.peak, end, (step - rise) / fall))

    def momentum(self, step, high: float, low: float):
        """The inverse cycle of a momentum coefficient: from `high` down to `low` while the
        rate rises, back up to `high` while it falls (the same cosine halves)."""
        step = keras.ops.cast(step, "float32")
        rise = float(max(self.rise_steps, 1))
        fall = float(max(self.total_steps - self.rise_steps, 1))
        down = low + (high - low) * (1.0 + keras.ops.cos(math.pi * keras.ops.clip(
            step / rise, 0.0, 1.0))) / 2.0
        up = high + (low - high) * (1.0 + keras.ops.cos(math.pi * keras.ops.clip(
            (step - rise) / fall, 0.0, 1.0))) / 2.0
        return keras.ops.where(step < rise, down, up)

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps,
                "rise_steps": self.rise_steps, "floor": self.floor}


def inverse_momentum(schedule: Any, high: float, low: float) -> Callable[[Any], Any]:
    """step -> momentum cycled inversely to `schedule`, a one-cycle rate (or one continued
    by `Offset`)."""
    offset = 0
    if isinstance(schedule, Offset):
        schedule, offset = schedule.schedule, schedule.offset
    if not isinstance(schedule, OneCycle):
        raise ValueError("momentum cycling needs a one_cycle schedule")
    return lambda step: schedule.momentum(keras.ops.cast(step, "float32") + offset, high, low)


def constant_schedule(cfg: TrainConfig, peak: float, steps_per_epoch: int, total: int) -> Any:
    return peak


def exponential_schedule(cfg: TrainConfig, peak: float, steps_per_epoch: int, total: int) -> Any:
    return keras.optimizers.schedules.ExponentialDecay(peak, decay_steps=steps_per_epoch,
                                                       decay_rate=cfg.decay_rate)


def cosine_schedule(cfg: TrainConfig, peak: float, steps_per_epoch: int, total: int) -> Any:
    return keras.optimizers.schedules.CosineDecay(peak, decay_steps=total,
                                                  alpha=cfg.cosine_alpha)


def step_schedule(cfg: TrainConfig, peak: float, steps_per_epoch: int, total: int) -> Any:
    every = cfg.step_every * steps_per_epoch
    n = max(1, (total - 1) // every + 1)
    boundaries = [every * k - 1 for k in range(1, n)]  # value k applies from step every*k
    values = [peak / cfg.step_factor**k for k in range(n)]
    if not boundaries:
        return peak
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def cyclic_schedule(cfg: TrainConfig, peak: float, steps_per_epoch: int, total: int) -> Any:
    return Cyclic(peak * cfg.lr_floor, peak, max(1, round(cfg.cycle_epochs * steps_per_epoch)),
                  cfg.cyclic_policy, cfg.cycle_gamma)


def one_cycle_schedule(cfg: TrainConfig, peak: float, steps_per_epoch: int, epochs: int) -> Any:
    """The whole phase: its own rise (--warmup_epochs, else 30 % of the phase)."""
    total = max(1, epochs * steps_per_epoch)
    rise = round(cfg.warmup_epochs * steps_per_epoch) if cfg.warmup_epochs else round(0.3 * total)
    return OneCycle(peak, total, rise, cfg.cosine_alpha)


_OWN_WARMUP = {"one_cycle"}


def _phase_schedule(cfg: TrainConfig, peak: float, steps_per_epoch: int, epochs: int):
    if cfg.lr_schedule in _OWN_WARMUP:
        return SCHEDULES.get(cfg.lr_schedule)(cfg, peak, steps_per_epoch, epochs)
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    total = max(1, epochs * steps_per_epoch - warmup)
    base = SCHEDULES.get(cfg.lr_schedule)(cfg, peak, steps_per_epoch, total)
    return Warmup(base, peak, warmup) if warmup else base
