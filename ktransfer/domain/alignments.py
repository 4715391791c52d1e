"""The alignments of `--mmd_alignment`: how an adaptation run pulls source and target features
together. Each entry builds the loss layers of a `DomainAdaptationModel` and says what they take
besides the features; a new alignment is one `Alignment` (in a module of its own if it brings a
layer) and one registration in `ALIGNMENTS` (see docs/extending.md)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras

from ktransfer.config import AdaptConfig
from ktransfer.domain.adversarial import ConditionalDomainLoss
from ktransfer.domain.mmd import MMDLoss

# (cfg, names of the aligned layers, feature width d, classes C) -> one loss layer per pair
LossBuilder = Callable[[AdaptConfig, list[str], int, int], list[keras.layers.Layer]]
TAKES = ("none", "classes", "predictions")


@dataclass(frozen=True)
class Alignment:
    """One alignment.

    Args:
        build: its loss layers, one per aligned feature pair (pooled features first, then the
            hidden head layers that --mmd_layers selects). Each layer is called on
            [source features [n, d], target features [m, d], *extra], adds its loss while
            training and returns the source features; it holds its loss weight as a scalar
            variable `weight` with its full value in `initial_weight` (the ramp-up sets it).
        takes: the extra inputs: none; classes (source labels [n, C] and target class
            weights [m, C], the predicted probabilities or --pseudo_labels'); predictions
            (both domains' predicted probabilities [n, C], [m, C]).
        pooled_only: aligns the pooled backbone features alone, whatever --mmd_layers says.
    """

    build: LossBuilder
    takes: str = "none"
    pooled_only: bool = False

    def __post_init__(self) -> None:
        if self.takes not in TAKES:
            raise ValueError(f"takes must be one of {TAKES}, got {self.takes!r}")

    @property
    def conditional(self) -> bool:
        """Whether target rows are weighted by class (pseudo-labels apply)."""
        return self.takes == "classes"


def mmd_losses(joint: bool = False) -> LossBuilder:
    """MMD at every aligned layer (`joint`: JAN's MMD of (features, predictions) pairs)."""

    def build(cfg: AdaptConfig, names: list[str], feature_dim: int, num_classes: int
              ) -> list[keras.layers.Layer]:
        return [MMDLoss(cfg.mmd_weight, cfg.mmd_estimator, joint=joint,
                        threshold=cfg.class_threshold, name=name) for name in names]

    return build


def cdan_loss(cfg: AdaptConfig, names: list[str], feature_dim: int, num_classes: int
              ) -> list[keras.layers.Layer]:
    """CDAN+E's conditional domain discriminator on the pooled features."""
    return [ConditionalDomainLoss(cfg.mmd_weight, feature_dim, num_classes, name="cdan")]


MARGINAL = Alignment(mmd_losses())
CLASS = Alignment(mmd_losses(), takes="classes")
JOINT = Alignment(mmd_losses(joint=True), takes="predictions")
CDAN = Alignment(cdan_loss, takes="predictions", pooled_only=True)
