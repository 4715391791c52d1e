"""Optimizers: Adam, AdamW and SGD with momentum, each with optional decoupled weight decay and
optional per-variable learning-rate multipliers (layer-wise learning-rate decay).

Scaling gradients would not lower Adam's step (Adam is invariant to gradient scale), so the
multiplier is applied to the learning rate inside `update_step`, per variable.
"""

from __future__ import annotations

from typing import Any

import keras

from ktransfer.config import TrainConfig


class _LayerwiseMixin:
    """Multiplies the learning rate of each variable by `lr_multipliers[variable.path]` (1 if
    absent). Multipliers are resolved once, when the optimizer is built for its variables."""

    def __init__(self, *args, lr_multipliers: dict[str, float] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lr_multipliers = dict(lr_multipliers or {})
        self._multiplier_by_index: list[float] = []

    def build(self, var_list):
        super().build(var_list)
        self._multiplier_by_index = [float(self.lr_multipliers.get(v.path, 1.0))
                                     for v in var_list]

    def update_step(self, gradient, variable, learning_rate):
        scale = self._multiplier_by_index[self._get_variable_index(variable)]
        if scale != 1.0:
            learning_rate = learning_rate * scale
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "lr_multipliers": self.lr_multipliers}


@keras.saving.register_keras_serializable(package="ktransfer")
class LayerwiseAdam(_LayerwiseMixin, keras.optimizers.Adam):
    """Adam with per-variable learning-rate multipliers."""


@keras.saving.register_keras_serializable(package="ktransfer")
class LayerwiseAdamW(_LayerwiseMixin, keras.optimizers.AdamW):
    """AdamW with per-variable learning-rate multipliers."""


@keras.saving.register_keras_serializable(package="ktransfer")
class LayerwiseSGD(_LayerwiseMixin, keras.optimizers.SGD):
    """SGD with per-variable learning-rate multipliers."""


def make_optimizer(cfg: TrainConfig, learning_rate,
                   lr_multipliers: dict[str, float] | None = None) -> keras.optimizers.Optimizer:
    """Builds the optimizer `cfg.optimizer` with `learning_rate` (a float or a schedule).

    `lr_multipliers` ({variable path: factor}) selects the layer-wise variant.
    """
    decay = cfg.weight_decay or None
    extra: dict[str, Any] = {}
    classes = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW,
               "sgd": keras.optimizers.SGD}
    if lr_multipliers:
        classes = {"adam": LayerwiseAdam, "adamw": LayerwiseAdamW, "sgd": LayerwiseSGD}
        extra["lr_multipliers"] = lr_multipliers
    if cfg.optimizer == "adam":
        return classes["adam"](learning_rate, weight_decay=decay, **extra)
    if cfg.optimizer == "adamw":
        return classes["adamw"](learning_rate, weight_decay=cfg.weight_decay, **extra)
    if cfg.optimizer == "sgd":
        return classes["sgd"](learning_rate, momentum=cfg.momentum, nesterov=True,
                              weight_decay=decay, **extra)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")
