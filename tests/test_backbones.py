"""Backbone registry, preprocessing and weights handling."""

from __future__ import annotations

import time

import keras
import numpy as np
import pytest

from ktransfer import backbones
from ktransfer.errors import ConfigError, WeightsError

FAMILIES = {"VGG", "ResNet", "ResNetV2", "DenseNet", "Inception", "Xception", "MobileNet",
            "MobileNetV2", "MobileNetV3", "EfficientNet", "EfficientNetV2", "ConvNeXt", "NASNet"}


def test_registry_covers_every_family_and_lookup_ignores_case():
    assert FAMILIES <= {spec.family for spec in backbones.REGISTRY.values()}
    assert backbones.get_spec("resnet50").name == "ResNet50"
    assert backbones.get_spec("EfficientNetV2B0").default_size == 224
    with pytest.raises(ConfigError, match="^--backbone: unknown backbone 'nope'"):
        backbones.get_spec("nope")
    table = backbones.list_backbones()
    assert "MobileNetV3Small" in table and "small_cnn" in table


@pytest.mark.parametrize("mode, module", [
    ("tf", "mobilenet_v2"), ("torch", "densenet"), ("caffe", "resnet50")])
def test_preprocess_matches_keras_applications(mode, module):
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    expected = getattr(keras.applications, module).preprocess_input(pixels.copy())
    got = backbones.Preprocess(mode)(pixels)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(got), expected, rtol=1e-5, atol=1e-4)


def test_small_cnn_builds_and_loads_weights_file(tmp_path):
    spec = backbones.get_spec("small_cnn")
    first = backbones.build_backbone(spec, "none", 16)
    assert first.output_shape == (None, 4, 4, 128)
    path = tmp_path / "b.weights.h5"
    first.save_weights(path)
    second = backbones.build_backbone(spec, str(path), 16)
    for a, b in zip(first.weights, second.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_weights_file_that_does_not_fit_is_a_clear_error(tmp_path):
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    path = tmp_path / "other.weights.h5"
    other.save_weights(path)
    with pytest.raises(WeightsError, match=r"^--weights=.*does not fit backbone small_cnn"):
        backbones.build_backbone(backbones.get_spec("small_cnn"), str(path), 16)


def test_too_small_input_and_missing_imagenet_weights_are_config_errors():
    with pytest.raises(ConfigError, match="^--image_size: InceptionV3 needs inputs of at least 75"):
        backbones.build_backbone(backbones.get_spec("InceptionV3"), "none", 32)
    with pytest.raises(ConfigError, match="^--weights: small_cnn has no ImageNet weights"):
        backbones.build_backbone(backbones.get_spec("small_cnn"), "imagenet", 32)


def test_imagenet_weights_offline_fail_fast_and_say_where_to_put_the_file(tmp_path, monkeypatch):
    """Offline (as in CI) the download fails in seconds with the file name and cache folder.
    Where a network exists the weights download and the model builds instead."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    start = time.time()
    try:
        model = backbones.build_backbone(backbones.get_spec("MobileNetV3Small"), "imagenet", 32)
    except WeightsError as exc:
        message = str(exc)
        assert time.time() - start < 30
        assert message.startswith("--weights=imagenet: cannot download https://")
        assert "weights_mobilenet_v3_small" in message
        assert str(tmp_path / "keras_home" / "models") in message
        assert "--weights=/path/to/" in message
        assert "\n" not in message
    else:
        assert model.output_shape[-1] == 576
