"""Pixel preprocessing inside the model (image.preprocess)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from ktransfer.image.catalog import PREPROCESSING
from ktransfer.image.preprocess import Preprocess, preprocessing_layer

from conftest import layer_test


@pytest.mark.parametrize("mode, module", [
    ("tf", "mobilenet_v2"), ("torch", "densenet"), ("caffe", "resnet50")])
def test_preprocess_matches_keras_applications(mode, module):
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    expected = getattr(keras.applications, module).preprocess_input(pixels.copy())
    for layer in (preprocessing_layer(mode), Preprocess(mode)):  # stock layer; the old one
        got = keras.ops.convert_to_numpy(layer(pixels))
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("mode", PREPROCESSING.names())
def test_each_mode_is_one_frozen_stock_keras_layer_that_round_trips(mode, tmp_path):
    layer = preprocessing_layer(mode)
    assert type(layer).__module__.startswith("keras.") and not layer.trainable_weights
    inputs = keras.Input((4, 4, 3))
    model = keras.Model(inputs, layer(inputs))
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")  # plain Keras, safe mode
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 4, 4, 3)).astype("float32")
    np.testing.assert_allclose(again.predict(pixels, verbose=0),
                               model.predict(pixels, verbose=0))


@pytest.mark.parametrize("mode", PREPROCESSING.names())
def test_every_mode_passes_the_keras_layer_harness(mode):
    layer_test(Preprocess, init_kwargs={"mode": mode}, input_shape=(2, 4, 4, 3),
               expected_output_shape=(2, 4, 4, 3), expected_num_trainable_weights=0,
               expected_num_non_trainable_weights=0, run_training_check=False)


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="unknown preprocessing mode 'bgr'"):
        Preprocess("bgr")
