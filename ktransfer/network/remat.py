"""`--remat`: gradient checkpointing of the backbone's blocks in the fine-tuning phase, through
Keras' rematerialisation (the mode `keras.RematScope` gives layers, `tf.recompute_grad` on
TensorFlow): each block keeps only its input for the backward pass and recomputes its inside,
trading one more forward pass of the blocks for the memory of their activations.

A block is a top-level backbone layer that holds layers of its own (a transformer layer of a
keras-hub encoder, a nested model). Keras takes a layer's remat mode when the layer is made
(`keras.RematScope`), and on TensorFlow its wrapper cannot pass keyword tensors (a padding
mask) in graph mode; so each block of the built backbone gets its call wrapped in
`keras.remat` with every tensor passed by position.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf

from ktransfer.errors import ConfigError

log = logging.getLogger("ktransfer.network")


def blocks(backbone: keras.Model) -> list[keras.layers.Layer]:
    """The backbone's top-level layers that have weights and layers of their own."""
    return [layer for layer in backbone.layers
            if layer.weights and list(layer._flatten_layers(include_self=False))]


def check(backbone: keras.Model, name: str) -> None:
    """Pre-flight of `--remat`: the backbone has blocks to recompute."""
    if not blocks(backbone):
        raise ConfigError("remat", f"{name} has no nested blocks to recompute (its layers form "
                          "one flat graph, as keras.applications networks do); --remat helps "
                          "encoders built of blocks, such as keras-hub transformers: leave it "
                          "off here")


def _recomputed(layer: keras.layers.Layer) -> Callable[..., Any]:
    """`layer.call` under `keras.remat`: float keyword tensors passed by position (the graph
    mode wrapper takes no keywords), other tensors (masks) captured; and the layer's random
    seed states set back to their values of the forward pass when the backward pass
    recomputes it, so that dropout draws the same masks (else the gradients are wrong)."""
    call = layer.call
    seeds = [v for v in layer.variables if "seed_generator_state" in v.path]

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        names = [k for k, v in kwargs.items() if tf.is_tensor(v) and v.dtype.is_floating]
        fixed = {k: v for k, v in kwargs.items() if k not in names}
        start = [tf.identity(keras.ops.convert_to_tensor(v)) for v in seeds]

        def inner(*tensors: Any) -> Any:
            for variable, value in zip(seeds, start, strict=True):
                variable.assign(value)
            return call(*tensors[:len(args)], **dict(zip(names, tensors[len(args):],
                                                         strict=True)), **fixed)
        return keras.remat(inner)(*args, *(kwargs[k] for k in names))
    wrapped.recomputed = True  # type: ignore[attr-defined]
    return wrapped


def enable(backbone: keras.Model, on: bool) -> int:
    """Recomputes each block in the backward pass when `on` (once); returns how many blocks."""
    if not on:
        return 0
    found = [layer for layer in blocks(backbone)
             if not getattr(layer.call, "recomputed", False)]
    for layer in found:
        layer.call = _recomputed(layer)
    if found:
        log.info("--remat: %d backbone blocks recompute their activations in the backward "
                 "pass", len(found))
    return len(blocks(backbone))
