"""A toy backbone source, added the way docs/extending.md says: this module (a
`BackboneSource` whose handle lists the widths of a plain convolution stack) plus one line in
`SOURCES` (`register()`). `--backbone=convs:16,32 --weights=none` then trains from scratch."""

from __future__ import annotations

import keras

from ktransfer.config import ModelConfig
from ktransfer.errors import ConfigError
from ktransfer.image.backbones import BackboneSource, BackboneSpec
from ktransfer.image.catalog import SOURCES


def widths(handle: str) -> list[int]:
    """The widths a handle lists ("16,32" -> [16, 32])."""
    try:
        found = [int(part) for part in handle.split(",")]
    except ValueError:
        found = []
    if not found or min(found) < 1:
        raise ConfigError("backbone", f"convs:{handle}: give widths such as convs:16,32")
    return found


def check(handle: str, cfg: ModelConfig) -> None:
    """Pre-flight: the widths parse, and no ImageNet weights are asked of a new network."""
    widths(handle)
    if cfg.weights == "imagenet":
        raise ConfigError("weights", "convs: backbones start from scratch; pass --weights=none")


def spec(handle: str, cfg: ModelConfig) -> BackboneSpec:
    """One stride-2 3x3 convolution with ReLU per width: feature map [B, S/2^n, S/2^n, last]."""

    def build(input_shape: tuple[int, int, int], weights: str | None) -> keras.Model:
        inputs = keras.Input(input_shape)
        x = inputs
        for i, width in enumerate(widths(handle), start=1):
            x = keras.layers.Conv2D(width, 3, strides=2, padding="same", activation="relu",
                                    name=f"block{i}_conv")(x)
        model = keras.Model(inputs, x, name="convs")
        if weights:
            model.load_weights(weights)
        return model

    return BackboneSpec(f"convs:{handle}", "convs", "scale01", 32, 8, build, has_imagenet=False)


SOURCE = BackboneSource(spec, check)


def register() -> None:
    """The one registration."""
    SOURCES.register("convs", "plugins.convs:SOURCE", "a plain convolution stack of the "
                     "widths given (convs:16,32), from scratch")


def unregister() -> None:
    """Takes it back, so that other tests see the shipped sources only."""
    SOURCES.unregister("convs")
