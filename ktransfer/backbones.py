"""Backbone registry: every keras.applications family, plus ktransfer's own `small_cnn`.

Each entry knows how to build the headless network, which preprocessing its weights expect and
its default input size. Preprocessing runs inside the model (`Preprocess` layer), so a trained or
exported model takes raw RGB pixels in [0, 255].
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass

import keras

from ktransfer.errors import ConfigError, WeightsError

# Per-channel constants of keras.applications.imagenet_utils.
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)
PREPROCESS_MODES = ("tf", "torch", "caffe", "scale01", "none")


@keras.saving.register_keras_serializable(package="ktransfer")
class Preprocess(keras.layers.Layer):
    """Maps RGB pixels in [0, 255] to what a backbone's weights expect.

    Modes follow keras.applications: 'tf' -> [-1, 1]; 'torch' -> ImageNet mean/std;
    'caffe' -> BGR minus ImageNet mean; 'scale01' -> [0, 1]; 'none' -> unchanged (for backbones
    such as EfficientNet that rescale inside).
    """

    def __init__(self, mode: str, **kwargs):
        super().__init__(**kwargs)
        if mode not in PREPROCESS_MODES:
            raise ValueError(f"unknown preprocessing mode {mode!r}")
        self.mode = mode

    def call(self, x):
        x = keras.ops.cast(x, self.compute_dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "scale01":
            return x / 255.0
        if self.mode == "torch":
            mean = keras.ops.convert_to_tensor(_TORCH_MEAN, self.compute_dtype)
            std = keras.ops.convert_to_tensor(_TORCH_STD, self.compute_dtype)
            return (x / 255.0 - mean) / std
        if self.mode == "caffe":
            mean = keras.ops.convert_to_tensor(_CAFFE_MEAN_BGR, self.compute_dtype)
            return keras.ops.flip(x, axis=-1) - mean
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone. `build(input_shape, weights)` returns a headless Model whose
    output is a feature map [B, h, w, C] (or a vector [B, C])."""

    name: str
    family: str
    preprocess: str
    default_size: int
    min_size: int
    build: Callable[[tuple[int, int, int], str | None], keras.Model]
    has_imagenet: bool = True


def _app_builder(fn_name: str) -> Callable[[tuple[int, int, int], str | None], keras.Model]:
    def build(input_shape: tuple[int, int, int], weights: str | None) -> keras.Model:
        fn = getattr(keras.applications, fn_name)
        return fn(include_top=False, weights=weights, input_shape=input_shape)

    return build


def small_cnn(input_shape: tuple[int, int, int] = (32, 32, 3)) -> keras.Model:
    """A 5-conv BatchNorm CNN (~0.1M weights) for small images, demos and fast tests.

    Output: feature map [B, S/4, S/4, 128]. Layers are named blockN_* so blocks can be unfrozen.
    """
    inputs = keras.Input(input_shape, name="input")
    x = inputs
    for block, (filters, convs) in enumerate(((32, 2), (64, 2), (128, 1)), start=1):
        for i in range(1, convs + 1):
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False,
                                    name=f"block{block}_conv{i}")(x)
            # momentum 0.9: short runs on small data (a few hundred steps) must still end
            # with moving statistics that match the data, not the initial variance of 1.
            x = keras.layers.BatchNormalization(momentum=0.9, name=f"block{block}_bn{i}")(x)
            x = keras.layers.Activation("relu", name=f"block{block}_relu{i}")(x)
        if block < 3:
            x = keras.layers.MaxPooling2D(name=f"block{block}_pool")(x)
    return keras.Model(inputs, x, name="small_cnn")


def _small_cnn_builder(input_shape: tuple[int, int, int], weights: str | None) -> keras.Model:
    model = small_cnn(input_shape)
    if weights:
        model.load_weights(weights)
    return model


# (keras.applications name, family, preprocessing, default input size, minimum input size)
_APPLICATIONS = [
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

REGISTRY: dict[str, BackboneSpec] = {
    name.lower(): BackboneSpec(name, family, mode, size, min_size, _app_builder(name))
    for name, family, mode, size, min_size in _APPLICATIONS
    if hasattr(keras.applications, name)
}
REGISTRY["small_cnn"] = BackboneSpec("small_cnn", "ktransfer", "scale01", 32, 8,
                                     _small_cnn_builder, has_imagenet=False)


def check_backbone_name(name: str) -> None:
    """Raises ConfigError for a name the registry does not know."""
    if name.lower() not in REGISTRY:
        raise ConfigError("backbone", f"unknown backbone {name!r}; run "
                          "`python -m ktransfer.train --list_backbones` for the names")


def get_spec(name: str) -> BackboneSpec:
    check_backbone_name(name)
    return REGISTRY[name.lower()]


def list_backbones() -> str:
    """A table of every backbone: name, family, preprocessing, default input size."""
    rows = [f"{'name':<20} {'family':<15} {'preprocess':<10} {'input':>5}"]
    for spec in REGISTRY.values():
        rows.append(f"{spec.name:<20} {spec.family:<15} {spec.preprocess:<10} "
                    f"{spec.default_size:>5}")
    return "\n".join(rows)


def _keras_cache_dir() -> str:
    base = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(base, "models")


def build_backbone(spec: BackboneSpec, weights: str, image_size: int) -> keras.Model:
    """Builds `spec` for [image_size, image_size, 3] inputs with `weights` (imagenet|none|PATH).

    Raises WeightsError, naming the file to download and where to put it, when ImageNet weights
    cannot be fetched (offline), and when a weights file does not fit the architecture.
    """
    if image_size < spec.min_size:
        raise ConfigError("image_size", f"{spec.name} needs inputs of at least "
                          f"{spec.min_size} px, got {image_size}")
    input_shape = (image_size, image_size, 3)
    if weights == "none":
        return spec.build(input_shape, None)
    if weights == "imagenet":
        if not spec.has_imagenet:
            raise ConfigError("weights", f"{spec.name} has no ImageNet weights; use none or the "
                              "path of a weights file")
        try:
            return spec.build(input_shape, "imagenet")
        except Exception as exc:  # keras raises a bare Exception("URL fetch failure on URL ...")
            match = re.search(r"(https?://\S+?)(?:\s|:\s|$)", str(exc))
            if not match:
                raise
            url = match.group(1).rstrip(":")
            fname = url.rsplit("/", 1)[-1]
            raise WeightsError(
                f"--weights=imagenet: cannot download {url} ({type(exc).__name__}; no network?). "
                f"Download that file elsewhere and put it at "
                f"{os.path.join(_keras_cache_dir(), fname)}, or pass --weights=/path/to/{fname}"
            ) from None
    try:
        return spec.build(input_shape, weights)
    except (ValueError, OSError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"--weights={weights}: does not fit backbone {spec.name} at "
                           f"{image_size} px: {first}") from None
