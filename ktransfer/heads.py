"""The new classification head put on a backbone: pooling, hidden Dense layers, dropout, L2.

The last Dense layer and the softmax are float32 even under mixed precision, so logits and
probabilities keep full precision.
"""

from __future__ import annotations

import keras

from ktransfer.config import ModelConfig


def build_head(features, num_classes: int, cfg: ModelConfig):
    """Maps backbone features ([B, h, w, C] or [B, C]) to class probabilities [B, num_classes]."""
    x = features
    if len(x.shape) == 4:
        pool = {"avg": keras.layers.GlobalAveragePooling2D, "max": keras.layers.GlobalMaxPooling2D,
                "flatten": keras.layers.Flatten}[cfg.pooling]
        x = pool(name="head_pool")(x)
    elif len(x.shape) != 2:
        raise ValueError(f"backbone output must be [B, h, w, C] or [B, C], got {x.shape}")
    regularizer = keras.regularizers.L2(cfg.l2) if cfg.l2 else None
    for i, units in enumerate(cfg.head_hidden, start=1):
        if cfg.dropout:
            x = keras.layers.Dropout(cfg.dropout, name=f"head_dropout{i}")(x)
        x = keras.layers.Dense(units, activation=cfg.head_activation,
                               kernel_initializer=cfg.initializer,
                               kernel_regularizer=regularizer, name=f"head_dense{i}")(x)
    if cfg.dropout:
        x = keras.layers.Dropout(cfg.dropout, name="head_dropout")(x)
    logits = keras.layers.Dense(num_classes, kernel_initializer=cfg.initializer,
                                kernel_regularizer=regularizer, dtype="float32",
                                name="logits")(x)
    return keras.layers.Activation("softmax", dtype="float32", name="probabilities")(logits)
