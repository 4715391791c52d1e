"""The image classifier: raw RGB pixels [B, S, S, 3] in [0, 255] -> preprocessing -> backbone ->
new head -> probabilities [B, classes]."""

from __future__ import annotations

import keras

from ktransfer.config import ModelConfig
from ktransfer.image.backbones import BackboneSpec
from ktransfer.image.preprocess import preprocessing_layer
from ktransfer.network.classifier import BACKBONE_NAME, PREPROCESS_NAME
from ktransfer.network.heads import build_head
from ktransfer.tasks.task import Task


def build_classifier(spec: BackboneSpec, backbone: keras.Model, num_classes: int,
                     image_size: int, cfg: ModelConfig, task: Task | None = None
                     ) -> keras.Model:
    """Input: float RGB pixels [B, S, S, 3] in [0, 255]; output: the task's [B, outputs]
    (class probabilities for the default task).

    Example:

        spec = get_spec("small_cnn")
        backbone = build_backbone(spec, "none", 32)
        model = build_classifier(spec, backbone, 10, 32, ModelConfig(backbone="small_cnn"))
    """
    backbone.name = BACKBONE_NAME
    inputs = keras.Input((image_size, image_size, 3), name="image")
    preprocess = (spec.make_preprocess() if spec.make_preprocess is not None
                  else preprocessing_layer(spec.preprocess, PREPROCESS_NAME))
    x = preprocess(inputs)
    x = backbone(x)
    outputs = build_head(x, num_classes, cfg, task=task)
    return keras.Model(inputs, outputs, name=f"ktransfer_{spec.name.split(':')[0]}")
