"""Which backbone layers train: all frozen for phase 1, the top N (or all) for phase 2.

Keras 3 runs a BatchNormalization layer with `trainable=False` in inference mode, so keeping BN
frozen while fine-tuning keeps its moving statistics and its behaviour.
"""

from __future__ import annotations

import keras


def weighted_layers(backbone: keras.Model) -> list[keras.layers.Layer]:
    """Backbone layers that own weights, input to output."""
    return [layer for layer in backbone.layers if layer.weights]


def is_batchnorm(layer: keras.layers.Layer) -> bool:
    return isinstance(layer, keras.layers.BatchNormalization)


def freeze(backbone: keras.Model) -> None:
    """Feature extraction: no backbone weight changes, BatchNorm in inference mode."""
    backbone.trainable = False


def unfreeze_top(backbone: keras.Model, top: int | None, bn_trainable: bool = False) -> int:
    """Makes the top `top` weighted layers trainable (all when None); returns how many train.

    BatchNorm layers stay frozen unless `bn_trainable`.
    """
    backbone.trainable = True
    layers = weighted_layers(backbone)
    keep_frozen = set(map(id, layers[: max(0, len(layers) - top)])) if top is not None else set()
    count = 0
    for layer in layers:
        trainable = id(layer) not in keep_frozen and (bn_trainable or not is_batchnorm(layer))
        layer.trainable = trainable
        count += int(trainable)
    return count
