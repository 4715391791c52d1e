"""Pixel preprocessing inside the model: raw RGB in [0, 255] -> what a backbone's weights expect.

The modes are those of keras.applications; the `PREPROCESSING` registry names them (its entries
describe the output range) and is where `--preprocess` takes its choices from. Each mode is one
stock Keras layer (`preprocessing_layer`), so a saved classifier loads with plain
`keras.saving.load_model`, without ktransfer; the `Preprocess` layer of earlier versions still
loads.
"""

from __future__ import annotations

import keras
import numpy as np

from ktransfer.image.catalog import PREPROCESSING

# Per-channel constants of keras.applications.imagenet_utils.
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)


@keras.saving.register_keras_serializable(package="ktransfer")
class Preprocess(keras.layers.Layer):
    """Maps RGB pixels in [0, 255] to what a backbone's weights expect.

    Modes follow keras.applications: 'tf' -> [-1, 1]; 'lite' -> (x - 127) / 128 (the official
    EfficientNet-Lite scaling); 'torch' -> ImageNet mean/std;
    'caffe' -> BGR minus ImageNet mean; 'scale01' -> [0, 1]; 'none' -> unchanged (for backbones
    such as EfficientNet that rescale inside).
    """

    def __init__(self, mode: str, **kwargs):
        super().__init__(**kwargs)
        if mode not in PREPROCESSING:
            raise ValueError(f"unknown preprocessing mode {mode!r}")
        self.mode = mode

    def call(self, x):
        x = keras.ops.cast(x, self.compute_dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "scale01":
            return x / 255.0
        if self.mode == "lite":
            return (x - 127.0) / 128.0
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


def _caffe(name: str) -> keras.layers.Layer:
    """RGB -> BGR minus the ImageNet mean, as a frozen Dense layer over the channels (a
    permutation matrix and a bias: exact in float32)."""
    layer = keras.layers.Dense(3, name=name, trainable=False, dtype="float32",
                               kernel_initializer=keras.initializers.Constant(
                                   np.eye(3, dtype="float32")[::-1]),
                               bias_initializer=keras.initializers.Constant(
                                   -np.array(_CAFFE_MEAN_BGR, dtype="float32")))
    return layer


def preprocessing_layer(mode: str, name: str = "preprocess") -> keras.layers.Layer:
    """The stock Keras layer that does `mode` (float32, frozen)."""
    if mode not in PREPROCESSING:
        raise ValueError(f"unknown preprocessing mode {mode!r}")
    mean, std = np.array(_TORCH_MEAN) * 255.0, np.array(_TORCH_STD) * 255.0
    build = {
        "tf": lambda: keras.layers.Rescaling(1 / 127.5, offset=-1.0, name=name,
                                             dtype="float32"),
        "lite": lambda: keras.layers.Rescaling(1 / 128.0, offset=-127 / 128.0, name=name,
                                               dtype="float32"),
        "scale01": lambda: keras.layers.Rescaling(1 / 255.0, name=name, dtype="float32"),
        "none": lambda: keras.layers.Identity(name=name, dtype="float32"),
        "torch": lambda: keras.layers.Normalization(mean=mean.tolist(),
                                                    variance=(std ** 2).tolist(), name=name,
                                                    dtype="float32"),
        "caffe": lambda: _caffe(name),
    }[mode]
    return build()
