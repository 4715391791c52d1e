"""A toy alignment, added the way docs/extending.md says: this module (a loss layer and the
`Alignment` that builds one per aligned feature pair) plus one line in `ALIGNMENTS`
(`register()`). `--mmd_alignment=mean_gap` then trains a whole adaptation run."""

from __future__ import annotations

from typing import Any

import keras

from ktransfer.domain.alignments import Alignment
from ktransfer.domain.catalog import ALIGNMENTS


class MeanGap(keras.layers.Layer):
    """The squared gap between the two domains' mean features, times `weight`."""

    def __init__(self, weight: float = 1.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.initial_weight = float(weight)
        self.weight = self.add_weight(shape=(), initializer=keras.initializers.Constant(weight),
                                      trainable=False, name="mmd_weight")

    def call(self, inputs: list[Any], training: bool = False) -> Any:
        source, target = inputs[:2]
        if training:
            gap = keras.ops.mean(source, axis=0) - keras.ops.mean(target, axis=0)
            self.add_loss(self.weight * keras.ops.sum(gap * gap))
        return source


def build(cfg: Any, names: list[str], width: int, classes: int) -> list[MeanGap]:
    """One MeanGap per aligned feature pair, at --mmd_weight."""
    return [MeanGap(cfg.mmd_weight, name=f"gap_{name}") for name in names]


MEAN_GAP = Alignment(build)


def register() -> None:
    """The one registration."""
    ALIGNMENTS.register("mean_gap", "plugins.mean_gap:MEAN_GAP",
                        "the squared gap between the domains' mean features")


def unregister() -> None:
    """Takes it back, so that other tests see the shipped alignments only."""
    ALIGNMENTS.unregister("mean_gap")
