"""Pixel preprocessing inside the model: raw RGB in [0, 255] -> what a backbone's weights expect.

The modes are those of keras.applications; the `PREPROCESSING` registry names them (its entries
describe the output range) and is where `--preprocess` takes its choices from.
"""

from __future__ import annotations

import keras

from ktransfer.registry import Registry

# Per-channel constants of keras.applications.imagenet_utils.
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)
PREPROCESSING: Registry[str] = Registry("pixel preprocessing", "preprocess")
for _mode, _meaning in (("tf", "[-1, 1]"), ("torch", "ImageNet mean/std"),
                        ("caffe", "BGR minus ImageNet mean"), ("scale01", "[0, 1]"),
                        ("none", "unchanged")):
    PREPROCESSING.register(_mode, _meaning)


@keras.saving.register_keras_serializable(package="ktransfer")
class Preprocess(keras.layers.Layer):
    """Maps RGB pixels in [0, 255] to what a backbone's weights expect.

    Modes follow keras.applications: 'tf' -> [-1, 1]; 'torch' -> ImageNet mean/std;
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
