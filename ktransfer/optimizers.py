"""Optimizers: Adam, AdamW and SGD with momentum, each with optional decoupled weight decay."""

from __future__ import annotations

import keras

from ktransfer.config import TrainConfig


def make_optimizer(cfg: TrainConfig, learning_rate) -> keras.optimizers.Optimizer:
    """Builds the optimizer `cfg.optimizer` with `learning_rate` (a float or a schedule)."""
    decay = cfg.weight_decay or None
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate, weight_decay=decay)
    if cfg.optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=cfg.momentum, nesterov=True,
                                    weight_decay=decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")
