"""Pixel preprocessing inside the model (image.preprocess)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from ktransfer.image.preprocess import PREPROCESSING, Preprocess

from conftest import layer_test


@pytest.mark.parametrize("mode, module", [
    ("tf", "mobilenet_v2"), ("torch", "densenet"), ("caffe", "resnet50")])
def test_preprocess_matches_keras_applications(mode, module):
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    expected = getattr(keras.applications, module).preprocess_input(pixels.copy())
    got = Preprocess(mode)(pixels)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(got), expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("mode", PREPROCESSING.names())
def test_every_mode_passes_the_keras_layer_harness(mode):
    layer_test(Preprocess, init_kwargs={"mode": mode}, input_shape=(2, 4, 4, 3),
               expected_output_shape=(2, 4, 4, 3), expected_num_trainable_weights=0,
               expected_num_non_trainable_weights=0, run_training_check=False)


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="unknown preprocessing mode 'bgr'"):
        Preprocess("bgr")
