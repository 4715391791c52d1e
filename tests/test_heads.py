"""The classification head."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from ktransfer.config import ModelConfig
from ktransfer.network.heads import build_head, pool

from conftest import layer_test


def _head_model(cfg: ModelConfig, shape=(4, 4, 8), classes=5) -> keras.Model:
    inputs = keras.Input(shape)
    return keras.Model(inputs, build_head(inputs, classes, cfg))


def test_hidden_layers_dropout_l2_and_initializer():
    cfg = ModelConfig(backbone="small_cnn", weights="none", head_hidden=(16, 8), dropout=0.3,
                      l2=0.01, initializer="zeros", pooling="max")
    model = _head_model(cfg)
    names = [layer.name for layer in model.layers]
    assert names[1:] == ["head_pool", "head_dropout1", "head_dense1", "head_dropout2",
                         "head_dense2", "head_dropout", "logits", "probabilities"]
    assert isinstance(model.get_layer("head_pool"), keras.layers.GlobalMaxPooling2D)
    assert model.get_layer("head_dense1").units == 16
    assert not np.any(model.get_layer("logits").kernel.numpy())  # zeros initializer
    model(np.ones((2, 4, 4, 8), "float32"))
    assert len(model.losses) == 3  # one L2 term per Dense kernel


@pytest.mark.parametrize("pooling, features", [("avg", 8), ("flatten", 128)])
def test_pooling_and_vector_inputs(pooling, features):
    cfg = ModelConfig(backbone="small_cnn", weights="none", pooling=pooling, dropout=0.0)
    model = _head_model(cfg)
    assert model.get_layer("logits").kernel.shape == (features, 5)
    vector = _head_model(cfg, shape=(12,))  # e.g. a hub feature-vector backbone
    assert vector.get_layer("logits").kernel.shape == (12, 5)


def test_outputs_are_float32_probabilities_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = _head_model(ModelConfig(backbone="small_cnn", weights="none", head_hidden=(8,)))
        assert model.get_layer("head_dense1").compute_dtype == "bfloat16"
        out = model(np.random.default_rng(0).normal(size=(3, 4, 4, 8)).astype("float32"))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert out.dtype == "float32"
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out).sum(1), 1.0, rtol=1e-5)


def test_first_token_passes_the_keras_layer_harness():
    from ktransfer.network.heads import FirstToken

    layer_test(FirstToken, init_kwargs={}, input_shape=(2, 5, 4), expected_output_shape=(2, 4),
               expected_num_trainable_weights=0, run_training_check=False)


@pytest.mark.parametrize("pooling, expected", [
    ("avg", [[2.0, 3.0]]),  # mean of the 2 real tokens, the padding left out
    ("mean", [[2.0, 3.0]]),
    ("cls", [[1.0, 2.0]]),
])
def test_token_sequences_pool_over_the_padding_mask(pooling, expected):
    tokens = keras.Input((None, 2))
    mask = keras.Input((None,), dtype="int32")
    model = keras.Model([tokens, mask], pool(tokens, pooling, mask))
    x = np.array([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]], "float32")
    got = model([x, np.array([[1, 1, 0]], "int32")])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(got), expected)


def test_poolings_that_do_not_apply_are_clear_errors():
    with pytest.raises(ValueError, match="--pooling=cls does not apply to feature maps"):
        pool(keras.Input((4, 4, 8)), "cls")
    with pytest.raises(ValueError, match="--pooling=flatten does not apply to token sequences"):
        pool(keras.Input((5, 8)), "flatten", keras.Input((5,)))
