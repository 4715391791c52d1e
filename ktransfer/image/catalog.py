"""The image registries, importable without TensorFlow: `--backbone` names (every
keras.applications family, `small_cnn`, EfficientNet-Lite) and sources (`hub:`, `file:`,
`kerashub:`), `--preprocess` modes and `--tta` views; and the check of a backbone name, which
pre-flight runs before TensorFlow loads."""

from __future__ import annotations

from ktransfer.errors import ConfigError
from ktransfer.registry import Registry

_BACKBONES = "ktransfer.image.backbones"

# (keras.applications name, family, preprocessing, default input size, minimum input size)
APPLICATIONS = [
    ("VGG16", "VGG", "caffe", 224, 32),
    ("VGG19", "VGG", "caffe", 224, 32),
    ("ResNet50", "ResNet", "caffe", 224, 32),
    ("ResNet101", "ResNet", "caffe", 224, 32),
    ("ResNet152", "ResNet", "caffe", 224, 32),
    ("ResNet50V2", "ResNetV2", "tf", 224, 32),
    ("ResNet101V2", "ResNetV2", "tf", 224, 32),
    ("ResNet152V2", "ResNetV2", "tf", 224, 32),
    ("DenseNet121", "DenseNet", "torch", 224, 32),
    ("DenseNet169", "DenseNet", "torch", 224, 32),
    ("DenseNet201", "DenseNet", "torch", 224, 32),
    ("InceptionV3", "Inception", "tf", 299, 75),
    ("InceptionResNetV2", "Inception", "tf", 299, 75),
    ("Xception", "Xception", "tf", 299, 71),
    ("MobileNet", "MobileNet", "tf", 224, 32),
    ("MobileNetV2", "MobileNetV2", "tf", 224, 32),
    ("MobileNetV3Small", "MobileNetV3", "none", 224, 32),
    ("MobileNetV3Large", "MobileNetV3", "none", 224, 32),
    ("EfficientNetB0", "EfficientNet", "none", 224, 32),
    ("EfficientNetB1", "EfficientNet", "none", 240, 32),
    ("EfficientNetB2", "EfficientNet", "none", 260, 32),
    ("EfficientNetB3", "EfficientNet", "none", 300, 32),
    ("EfficientNetB4", "EfficientNet", "none", 380, 32),
    ("EfficientNetB5", "EfficientNet", "none", 456, 32),
    ("EfficientNetB6", "EfficientNet", "none", 528, 32),
    ("EfficientNetB7", "EfficientNet", "none", 600, 32),
    ("EfficientNetV2B0", "EfficientNetV2", "none", 224, 32),
    ("EfficientNetV2B1", "EfficientNetV2", "none", 240, 32),
    ("EfficientNetV2B2", "EfficientNetV2", "none", 260, 32),
    ("EfficientNetV2B3", "EfficientNetV2", "none", 300, 32),
    ("EfficientNetV2S", "EfficientNetV2", "none", 384, 32),
    ("EfficientNetV2M", "EfficientNetV2", "none", 480, 32),
    ("EfficientNetV2L", "EfficientNetV2", "none", 480, 32),
    ("ConvNeXtTiny", "ConvNeXt", "none", 224, 32),
    ("ConvNeXtSmall", "ConvNeXt", "none", 224, 32),
    ("ConvNeXtBase", "ConvNeXt", "none", 224, 32),
    ("ConvNeXtLarge", "ConvNeXt", "none", 224, 32),
    ("ConvNeXtXLarge", "ConvNeXt", "none", 224, 32),
    ("NASNetMobile", "NASNet", "tf", 224, 32),
    ("NASNetLarge", "NASNet", "tf", 331, 32),
]

# Keyed by lower-case name (--backbone is case-insensitive) -> BackboneSpec
BACKBONES: Registry = Registry("backbone", "backbone", {
    **{name.lower(): f"{_BACKBONES}:{name}" for name, *_ in APPLICATIONS},
    "small_cnn": f"{_BACKBONES}:SMALL_CNN",
    **{lite: f"ktransfer.image.efficientnet_lite:{lite[-5:].upper()}"
       for lite in ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")},
})

# Backbones named SOURCE:HANDLE -> BackboneSource; a new source is an entry here.
SOURCES: Registry = Registry("backbone source", "backbone", {
    "hub": f"{_BACKBONES}:HUB", "file": f"{_BACKBONES}:FILE",
    "kerashub": "ktransfer.image.kerashub:SOURCE",
}, about={"hub": "a TF Hub image module (URL or local SavedModel folder)",
          "file": "your own .keras model (a ktransfer classifier gives its backbone)",
          "kerashub": "a keras-hub image backbone (preset name or checkpoint folder)"})

# --preprocess: mode -> preprocessing_layer(mode) builds it; about: what RGB [0, 255] becomes
PREPROCESSING: Registry = Registry("pixel preprocessing", "preprocess", {
    mode: "ktransfer.image.preprocess:preprocessing_layer"
    for mode in ("tf", "lite", "torch", "caffe", "scale01", "none")
}, about={"tf": "[-1, 1]", "lite": "(x - 127) / 128, EfficientNet-Lite",
          "torch": "ImageNet mean/std", "caffe": "BGR minus ImageNet mean", "scale01": "[0, 1]",
          "none": "unchanged"})

# --tta: name -> the views whose probabilities are averaged (the first is always the plain
# image or the centre crop)
TTA_VIEWS: Registry = Registry("test-time augmentation", "tta", {
    name: f"ktransfer.image.tta:{name.upper()}" for name in ("none", "flip", "crops", "flip_crops")
}, about={"none": "the image as it is", "flip": "it and its mirror", "crops": "five crops",
          "flip_crops": "five crops and their mirrors"})


def check_backbone_name(name: str) -> None:
    """ConfigError (--backbone) unless `name` is a registered backbone or SOURCE:HANDLE of a
    registered source with a handle; the handle itself is checked later, by its source."""
    kind, colon, handle = name.partition(":")
    if colon and kind in SOURCES:
        if not handle:
            raise ConfigError("backbone", f"give a name or path after {kind}:")
        return
    if name.lower() not in BACKBONES:
        raise ConfigError("backbone", f"unknown backbone {name!r}; run "
                          "`python -m ktransfer.train --list_backbones` for the names")
