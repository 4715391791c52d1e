"""Assembles the classifier: raw pixels -> backbone preprocessing -> backbone -> new head."""

from __future__ import annotations

import keras

from ktransfer.backbones import BackboneSpec, Preprocess
from ktransfer.config import ModelConfig
from ktransfer.heads import build_head

BACKBONE_NAME = "backbone"


def build_classifier(spec: BackboneSpec, backbone: keras.Model, num_classes: int,
                     image_size: int, cfg: ModelConfig) -> keras.Model:
    """Input: float RGB pixels [B, S, S, 3] in [0, 255]; output: probabilities [B, classes]."""
    backbone.name = BACKBONE_NAME
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = Preprocess(spec.preprocess, name="preprocess")(inputs)
    x = backbone(x)
    outputs = build_head(x, num_classes, cfg)
    return keras.Model(inputs, outputs, name=f"ktransfer_{spec.name.split(':')[0]}")


def get_backbone(model: keras.Model) -> keras.Model:
    """The backbone sub-model of a classifier built by `build_classifier`."""
    return model.get_layer(BACKBONE_NAME)
