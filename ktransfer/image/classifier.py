"""The image classifier: raw RGB pixels [B, S, S, 3] in [0, 255] -> preprocessing -> backbone ->
new head -> probabilities [B, classes]. A task with a head on feature maps (a detector) gets the
backbone cut at the strides it reads instead of the pooled head."""

from __future__ import annotations

from typing import Any

import keras

from ktransfer.config import ModelConfig
from ktransfer.errors import ConfigError
from ktransfer.image.backbones import BackboneSpec
from ktransfer.image.preprocess import preprocessing_layer
from ktransfer.network.classifier import BACKBONE_NAME, PREPROCESS_NAME
from ktransfer.network.heads import build_head
from ktransfer.tasks.task import Task


def build_classifier(spec: BackboneSpec, backbone: keras.Model, num_classes: int,
                     image_size: int, cfg: ModelConfig, task: Task | None = None,
                     options: Any = None) -> keras.Model:
    """Input: float RGB pixels [B, S, S, 3] in [0, 255]; output: the task's [B, outputs]
    (class probabilities for the default task). With a task's `MapHead`, `backbone` must be
    `feature_maps` of it, and `options` is the task group the head reads.

    Example:

        spec = get_spec("small_cnn")
        backbone = build_backbone(spec, "none", 32)
        model = build_classifier(spec, backbone, 10, 32, ModelConfig(backbone="small_cnn"))
    """
    backbone.name = BACKBONE_NAME
    inputs = keras.Input((image_size, image_size, 3), name="image")
    preprocess = (spec.make_preprocess() if spec.make_preprocess is not None
                  else preprocessing_layer(spec.preprocess, PREPROCESS_NAME))
    x = backbone(preprocess(inputs))
    head = task.map_head if task is not None else None
    if head is not None:
        outputs = head.build(dict(zip(head.strides, x, strict=True)), image_size, num_classes,
                             options)
    else:
        outputs = build_head(x, num_classes, cfg, task=task)
    return keras.Model(inputs, outputs, name=f"ktransfer_{spec.name.split(':')[0]}")


def feature_maps(backbone: keras.Model, strides: tuple[int, ...], image_size: int
                 ) -> keras.Model:
    """`backbone` (its layers and weights) as a model with one output per stride: the last
    layer whose output is `image_size / stride` cells wide. ConfigError when it has no map at
    a stride (a backbone that is not a layer graph, or too few downsamplings)."""
    last: dict[int, Any] = {}
    for layer in getattr(backbone, "layers", []):
        shape: tuple[Any, ...] = tuple(getattr(getattr(layer, "output", None), "shape", ()))
        if len(shape) == 4 and shape[1]:
            last[int(shape[1])] = layer.output
    missing = [s for s in strides if image_size % s or image_size // s not in last]
    if missing:
        found = sorted(image_size // w for w in last if w and image_size % w == 0)
        raise ConfigError("backbone", f"{backbone.name} has no feature map at stride "
                          f"{missing[0]} of a {image_size} px input (it has strides "
                          f"{found or 'none'}); detection reads strides "
                          f"{'/'.join(map(str, strides))}: choose a convolutional backbone "
                          f"(efficientnet_lite0, a keras.applications family) and an "
                          f"--image_size that is a multiple of {max(strides)}")
    maps = [last[image_size // s] for s in strides]
    return keras.Model(backbone.inputs, maps, name=backbone.name)

