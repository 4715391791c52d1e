"""keras-hub image backbones (`--backbone=kerashub:NAME_OR_FOLDER`): ViT, DINOv2, ResNet-v2,
EfficientNet, MiT and the other families keras-hub ships, from a preset name (needs a network
the first time) or a local preset or Hugging Face folder (offline).

The preset's own image converter (resizing and its scaling or mean/std normalisation) becomes
the classifier's `preprocess` layer, so the model still takes raw RGB pixels in [0, 255]; its
input size is the converter's unless --image_size says otherwise. The backbone is a model over
the preset's own layers, so freezing and layer-wise learning rates see them.
"""

from __future__ import annotations

import os

import keras
import keras_hub

from ktransfer.config import ModelConfig
from ktransfer.errors import WeightsError, first_line
from ktransfer.image.backbones import BackboneSource, BackboneSpec


def _load(handle: str, what: str, load: object) -> object:
    try:
        return load()  # type: ignore[operator]
    except (OSError, ValueError, KeyError) as exc:
        where = ("" if os.path.isdir(handle) else "; without a network, save the preset "
                 "elsewhere (Backbone.save_to_preset) and pass --backbone=kerashub:/path")
        raise WeightsError(f"--backbone=kerashub:{handle}: cannot load its {what} with "
                           f"keras-hub: {first_line(exc)[:200]}{where}") from None


def kerashub_spec(handle: str, cfg: ModelConfig) -> BackboneSpec:
    """The spec of a keras-hub image backbone and its image converter."""
    converter = _load(handle, "image converter",
                      lambda: keras_hub.layers.ImageConverter.from_preset(handle))
    size = getattr(converter, "image_size", None)
    default = int(size[0]) if size and size[0] else 224

    def build(input_shape: tuple[int, int, int], weights: str | None) -> keras.Model:
        full = _load(handle, "backbone", lambda: keras_hub.models.Backbone.from_preset(
            handle, load_weights=weights != "none"))
        assert isinstance(full, keras.Model)
        model = keras.Model(full.input, full.output, name="kerashub")
        if weights and weights != "none":
            model.load_weights(weights)
        return model

    def preprocess() -> keras.layers.Layer:
        layer = keras_hub.layers.ImageConverter.from_preset(handle, name="preprocess")
        assert isinstance(layer, keras.layers.Layer)
        return layer

    return BackboneSpec(f"kerashub:{handle}", "keras-hub", "none", default, 8, build,
                        has_imagenet=False, own_weights=True, make_preprocess=preprocess)


SOURCE = BackboneSource(kerashub_spec)
