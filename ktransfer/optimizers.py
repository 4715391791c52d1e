"""Optimizers: Adam, AdamW and SGD with momentum, each with optional decoupled weight decay and
optional per-variable learning-rate multipliers (layer-wise learning-rate decay).

Scaling gradients would not lower Adam's step (Adam is invariant to gradient scale), so the
multiplier is applied to the learning rate inside `update_step`, per variable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import keras

from ktransfer.config import TrainConfig
from ktransfer.registry import Registry

# For the type checker the mixin is an optimizer (it is only ever mixed into one).
_OptimizerBase: Any = keras.optimizers.Optimizer if TYPE_CHECKING else object


class _LayerwiseMixin(_OptimizerBase):
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


@dataclass(frozen=True)
class OptimizerKind:
    """A plain Keras optimizer class and its layer-wise twin; `options(cfg)` are the keyword
    arguments the flags give it."""

    plain: type[keras.optimizers.Optimizer]
    layerwise: type[keras.optimizers.Optimizer]
    options: Callable[[TrainConfig], dict[str, Any]]


OPTIMIZERS: Registry[OptimizerKind] = Registry("optimizer", "optimizer")
OPTIMIZERS.register("adam", OptimizerKind(
    keras.optimizers.Adam, LayerwiseAdam, lambda cfg: {"weight_decay": cfg.weight_decay or None}))
OPTIMIZERS.register("adamw", OptimizerKind(
    keras.optimizers.AdamW, LayerwiseAdamW, lambda cfg: {"weight_decay": cfg.weight_decay}))
OPTIMIZERS.register("sgd", OptimizerKind(
    keras.optimizers.SGD, LayerwiseSGD,
    lambda cfg: {"momentum": cfg.momentum, "nesterov": True,
                 "weight_decay": cfg.weight_decay or None}))


def make_optimizer(cfg: TrainConfig, learning_rate,
                   lr_multipliers: dict[str, float] | None = None) -> keras.optimizers.Optimizer:
    """Builds the optimizer `cfg.optimizer` with `learning_rate` (a float or a schedule), with
    gradient accumulation when `cfg.accumulate` > 1.

    `lr_multipliers` ({variable path: factor}) selects the layer-wise variant.
    """
    kind = OPTIMIZERS.get(cfg.optimizer)
    options = kind.options(cfg)
    if cfg.accumulate > 1:  # Keras averages the N gradients; schedules count every batch
        options["gradient_accumulation_steps"] = cfg.accumulate
    if lr_multipliers:
        return kind.layerwise(learning_rate, lr_multipliers=lr_multipliers, **options)
    return kind.plain(learning_rate, **options)
