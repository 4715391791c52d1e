"""HubBackbone: a TF Hub module inside a Keras 3 model, frozen or fine-tuned, saved and reloaded."""

from __future__ import annotations

import time

import keras
import numpy as np
import pytest

from ktransfer.errors import WeightsError
from ktransfer.network.hub import HubBackbone


def _model(layer: HubBackbone) -> keras.Model:
    inputs = keras.Input((16, 16, 3))
    return keras.Model(inputs, keras.layers.Dense(2)(layer(inputs)))


def _fit_once(model: keras.Model) -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (8, 16, 16, 3)).astype("float32")
    y = rng.normal(0, 1, (8, 2)).astype("float32")
    model.compile(keras.optimizers.SGD(0.1), "mse")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)


def _values(layer: HubBackbone) -> dict[str, np.ndarray]:
    return {v.name: v.numpy().copy() for v in layer.weights}


def test_module_variables_are_tracked_with_clean_names(hub_module):
    layer = HubBackbone(str(hub_module))
    assert {v.name: v.trainable for v in layer.weights} == {
        "conv_kernel": True, "conv_bias": True, "bn_moving_mean": False}
    # Keras variables wrap the module's own variables (no copy): training reaches the module.
    assert layer.weights[0].value is layer._module.variables[0]


@pytest.mark.parametrize("trainable, module_training, changes", [
    (False, False, {"conv_kernel": False, "conv_bias": False, "bn_moving_mean": False}),
    (True, False, {"conv_kernel": True, "conv_bias": True, "bn_moving_mean": False}),
    (True, True, {"conv_kernel": True, "conv_bias": True, "bn_moving_mean": True}),
])
def test_frozen_keeps_and_fine_tuning_changes_module_variables(hub_module, trainable,
                                                                module_training, changes):
    layer = HubBackbone(str(hub_module), module_training=module_training)
    layer.trainable = trainable
    model = _model(layer)
    before = _values(layer)
    _fit_once(model)
    after = _values(layer)
    assert {name: not np.array_equal(before[name], after[name]) for name in before} == changes


def test_trained_model_saves_and_reloads_with_its_values(hub_module, tmp_path):
    layer = HubBackbone(str(hub_module))
    model = _model(layer)
    _fit_once(model)
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=False)
    x = np.random.default_rng(1).uniform(0, 1, (4, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-6)
    trained = HubBackbone(str(hub_module))  # a fresh load has the module's original values
    assert not np.array_equal(trained.weights[0].numpy(), layer.weights[0].numpy())


def test_missing_folder_and_unreachable_url_fail_fast_and_say_what_to_do(tmp_path, monkeypatch):
    with pytest.raises(WeightsError, match="no such folder"):
        HubBackbone(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsError, match="no saved_model.pb"):
        HubBackbone(str(tmp_path / "empty"))
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "cache"))
    url = "https://127.0.0.1:9/google/imagenet/mobilenet_v3_small_100_224/feature_vector/5"
    start = time.time()
    with pytest.raises(WeightsError) as info:
        HubBackbone(url)
    assert time.time() - start < 30
    message = str(info.value)
    assert f"{url}?tf-hub-format=compressed" in message and str(tmp_path / "cache") in message
    assert "--backbone=hub:/path/to/that/folder" in message


def test_a_module_without_variables_works_frozen_and_refuses_fine_tuning(tmp_path, caplog,
                                                                         tiny_config):
    import tensorflow as tf

    from ktransfer.errors import ConfigError
    from ktransfer.training import train

    module = tf.Module()
    module.kernel = tf.Variable(np.random.default_rng(0).normal(0, 0.5, (3, 8)).astype("f"))
    module.__call__ = tf.function(
        lambda images: tf.reduce_mean(images, axis=[1, 2]) @ module.kernel,
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    tf.saved_model.save(module, str(tmp_path / "bare"))  # no `variables` attribute saved
    values = dict(backbone=f"hub:{tmp_path / 'bare'}", weights="imagenet", epochs=1)
    with caplog.at_level("WARNING"):
        assert train(tiny_config(**values)).metrics["epochs"]["head"] == 1
    assert "lists no `variables`" in caplog.text
    with pytest.raises(ConfigError, match="^--fine_tune_epochs: .* no weights that could train"):
        train(tiny_config(**values, fine_tune_epochs=1, overwrite=True))


def test_a_model_with_a_hub_backbone_loads_after_the_module_moved(tmp_path, tiny_config):
    """The .keras file carries a copy of the module: moving (or losing) the module folder the
    model was trained from does not break it, and the fine-tuned weights are the ones loaded."""
    import shutil

    from ktransfer.deploy.saving import load_model
    from ktransfer.training import train

    from conftest import save_hub_module

    module = save_hub_module(tmp_path / "module", seed=3)
    result = train(tiny_config(backbone=f"hub:{module}", weights="imagenet", epochs=0,
                               fine_tune_epochs=2, fine_tune_lr=0.05))
    pixels = np.random.default_rng(0).uniform(0, 255, (3, 16, 16, 3)).astype("float32")
    expected = result.model.predict(pixels, verbose=0)
    shutil.move(str(module), str(tmp_path / "elsewhere"))
    loaded = load_model(result.run_dir / "model.keras", unsafe=True)
    np.testing.assert_allclose(loaded.predict(pixels, verbose=0), expected, atol=1e-6)
    original = HubBackbone(str(tmp_path / "elsewhere"))
    tuned = loaded.get_layer("backbone").get_layer("hub_module")
    assert any(not np.array_equal(a.numpy(), b.numpy())
               for a, b in zip(original.weights, tuned.weights, strict=True))


def test_a_model_file_with_a_hub_module_runs_nothing_without_unsafe_load(tmp_path):
    """The module inside a .keras file is a TensorFlow graph, here one that writes a file when
    called: safe mode (the default of every command) refuses the file before anything of it
    loads, as Keras refuses its own TFSMLayer; with --unsafe_load it loads and runs."""
    from ktransfer.deploy.saving import load_model
    from ktransfer.errors import KtransferError

    from conftest import save_hub_module

    marker = tmp_path / "marker"
    model = _model(HubBackbone(str(save_hub_module(tmp_path / "m", marker=marker))))
    model.save(tmp_path / "crafted.keras")
    marker.unlink(missing_ok=True)
    with pytest.raises(KtransferError, match=r"^--model: .* contains code \(a TF Hub module, "
                       r"a TensorFlow graph named '\w+'\); .* with --unsafe_load$"):
        load_model(tmp_path / "crafted.keras")
    with pytest.raises(ValueError, match="disallowed in safe_mode"):
        keras.saving.load_model(tmp_path / "crafted.keras")
    assert not marker.exists()
    loaded = load_model(tmp_path / "crafted.keras", unsafe=True)
    loaded.predict(np.zeros((1, 16, 16, 3), "float32"), verbose=0)
    assert marker.exists()
