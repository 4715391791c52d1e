"""The new head put on a backbone: pooling, hidden Dense layers, dropout, L2, and the output
layers of the run's task (`ktransfer.tasks`: softmax over classes, a sigmoid per label, a value).

`POOLINGS` names how a backbone's output becomes one vector per example: feature maps
[B, h, w, C] (images) or token sequences [B, L, D] with a padding mask (text). The output
layers are float32 even under mixed precision, so outputs keep full precision.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import keras

from ktransfer.config import ModelConfig
from ktransfer.network.catalog import POOLINGS
from ktransfer.tasks import default_task

if TYPE_CHECKING:  # a type only: heads loads with the Keras classes (ktransfer.serializables),
    # which `import keras` inside tasks/task.py starts before Task exists
    from ktransfer.tasks.task import Task

POOL_LAYER = "head_pool"


@keras.saving.register_keras_serializable(package="ktransfer")
class FirstToken(keras.layers.Layer):
    """[B, L, D] token vectors -> [B, D], the first token's (BERT's [CLS])."""

    def call(self, inputs, mask=None):
        return inputs[:, 0, :]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])

    def compute_mask(self, inputs, mask=None):
        return None


@dataclass(frozen=True)
class Pooling:
    """The layers one pooling makes for feature maps (`spatial`) and for token sequences with a
    padding mask (`sequence`); None where it does not apply."""

    spatial: Callable[[], keras.layers.Layer] | None
    sequence: Callable[[], keras.layers.Layer] | None


# The registry's entries (network.catalog.POOLINGS).
AVG = Pooling(lambda: keras.layers.GlobalAveragePooling2D(name=POOL_LAYER),
              lambda: keras.layers.GlobalAveragePooling1D(name=POOL_LAYER))
MAX = Pooling(lambda: keras.layers.GlobalMaxPooling2D(name=POOL_LAYER), None)
FLATTEN = Pooling(lambda: keras.layers.Flatten(name=POOL_LAYER), None)
CLS = Pooling(None, lambda: FirstToken(name=POOL_LAYER))


def pool(features, name: str, mask=None):
    """One vector [B, C] per example from `features`: [B, h, w, C], [B, L, D] (with `mask`
    [B, L], 1 for real tokens) or already [B, C]."""
    rank = len(features.shape)
    if rank == 2:
        return features
    pooling = POOLINGS.get(name)
    make = pooling.spatial if rank == 4 else pooling.sequence if rank == 3 else None
    if make is None:
        kind = "feature maps" if rank == 4 else f"rank-{rank} outputs"
        kind = "token sequences" if rank == 3 else kind
        raise ValueError(f"--pooling={name} does not apply to {kind}")
    return make()(features, mask=mask) if rank == 3 else make()(features)


def build_head(features, outputs: int, cfg: ModelConfig, mask=None, task: Task | None = None):
    """Maps backbone features ([B, h, w, C], [B, L, D] with `mask`, or [B, C]) to the
    outputs [B, outputs] of `task` (default: --task's default): class probabilities, label
    probabilities, values."""
    x = pool(features, cfg.pooling, mask)
    regularizer = keras.regularizers.L2(cfg.l2) if cfg.l2 else None
    for i, units in enumerate(cfg.head_hidden, start=1):
        if cfg.dropout:
            x = keras.layers.Dropout(cfg.dropout, name=f"head_dropout{i}")(x)
        x = keras.layers.Dense(units, activation=cfg.head_activation,
                               kernel_initializer=cfg.initializer,
                               kernel_regularizer=regularizer, name=f"head_dense{i}")(x)
    if cfg.dropout:
        x = keras.layers.Dropout(cfg.dropout, name="head_dropout")(x)
    return (task or default_task()).output(x, outputs, cfg)
