"""LoRA (ktransfer/network/lora.py): only the adapters train, the merged network predicts what
the adapted one does, the adapters alone rebuild it, and a killed run resumes exactly."""

from __future__ import annotations

import json
import zipfile

import keras
import numpy as np
import pytest

from ktransfer import config
from ktransfer.deploy.saving import load_model
from ktransfer.errors import ConfigError
from ktransfer.network import lora
from ktransfer.network.classifier import get_backbone
from ktransfer.runs import rundir
from ktransfer.training import train

from conftest import text_values, train_killed_after


def _lora_values(tmp_path, tiny_bert, **overrides):
    values = dict(epochs=1, fine_tune_epochs=3, fine_tune_lr=0.01, lora_rank=4,
                  lr_schedule="constant")
    return text_values(tmp_path, tiny_bert, **{**values, **overrides})


def _encoder(tiny_bert, tmp_path, **overrides):
    from ktransfer.modality import MODALITIES

    cfg = config.build(**_lora_values(tmp_path, tiny_bert, **overrides))
    return cfg, MODALITIES.get("text").build(cfg, 2)


def test_only_the_adapters_of_the_chosen_layers_train(tiny_bert, tmp_path):
    cfg, network = _encoder(tiny_bert, tmp_path)
    backbone = network.backbone
    before = {v.path: keras.ops.convert_to_numpy(v).copy() for v in backbone.weights}
    count = lora.enable(backbone, cfg.model)
    adapted = lora.adapters(backbone)
    assert sorted({layer.name for layer in adapted}) == ["query", "value"]  # auto: keras-hub's
    ours = {id(v) for v in backbone.weights}
    assert count == sum(int(np.prod(v.shape)) for v in network.model.trainable_weights
                        if id(v) in ours) > 0
    network.model.compile(optimizer=keras.optimizers.Adam(0.05),
                          loss="sparse_categorical_crossentropy")
    inputs = network.preprocessor(["a good film", "a bad film"] * 4)
    network.model.fit(inputs, np.array([1, 0] * 4), epochs=3, verbose=0)
    changed = {v.path for v in backbone.weights
               if v.path in before and not np.allclose(before[v.path], v.numpy())}
    assert changed == set()  # kernels, biases and norms are as they were
    assert all(np.abs(layer.lora_kernel_b.numpy()).max() > 0 for layer in adapted)


def test_print_model_says_what_lora_will_train(tiny_bert, tmp_path):
    """Before the adapters exist (--print_model), the count Keras' adapters will have."""
    cfg, network = _encoder(tiny_bert, tmp_path)
    said = lora.planned(network.backbone, cfg.model)
    count = lora.enable(network.backbone, cfg.model)
    assert said.startswith("LoRA rank 4 on 4 layers (") and "query" in said and "value" in said
    assert f"phase 2 trains {count:,} adapter weights" in said


def test_lora_targets_and_the_rank_are_checked_before_any_work(tiny_bert, tmp_path, tiny_config,
                                                               hub_module):
    with pytest.raises(ConfigError, match="^--lora_rank: adapts the backbone in phase 2"):
        config.build(**_lora_values(tmp_path, tiny_bert, fine_tune_epochs=0))
    with pytest.raises(ConfigError, match="^--lora_targets: 'nothing' matches no adaptable"):
        train(config.build(**_lora_values(tmp_path, tiny_bert, lora_targets="nothing")))
    with pytest.raises(ConfigError, match="^--lora_rank: hub:.* has no Dense, EinsumDense"):
        train(tiny_config(backbone=f"hub:{hub_module}", weights="imagenet", image_size=32,
                               fine_tune_epochs=1, lora_rank=2))
    assert not (tmp_path / "run").exists()


@pytest.mark.slow  # a LoRA fine-tuning run: make test-slow
def test_merged_run_predicts_what_the_adapted_network_did(tiny_bert, tmp_path):
    result = train(config.build(**_lora_values(tmp_path, tiny_bert)))
    run = result.run_dir
    with zipfile.ZipFile(run / "model.keras") as z:  # a plain network: no adapter in it
        assert "lora" not in z.read("config.json").decode()
    saved = load_model(run / "model.keras")
    cfg, network = _encoder(tiny_bert, tmp_path)  # the pretrained encoder, adapters apart
    lora.apply_adapters(network.backbone, run / lora.ADAPTERS_FILE)
    inputs = network.preprocessor(["a good film", "an awful, boring film", "fine"])
    merged = get_backbone(saved)(inputs)
    np.testing.assert_allclose(network.backbone(inputs), merged, atol=1e-5)
    pretrained = _encoder(tiny_bert, tmp_path)[1].backbone(inputs)
    assert np.abs(np.asarray(merged) - np.asarray(pretrained)).max() > 1e-3  # it did adapt
    assert (run / lora.ADAPTERS_FILE).stat().st_size < (run / "model.keras").stat().st_size / 5


def test_restore_takes_the_adapters_back_out_of_the_merged_kernels(tiny_bert, tmp_path):
    """What a resumed run loads: Keras saved merged kernels and sets both adapters to zero on
    load (then LoRA could not train on); `restore` gives back the exact state."""
    from keras.src.saving import saving_lib

    cfg, network = _encoder(tiny_bert, tmp_path)
    lora.enable(network.backbone, cfg.model)
    for layer in lora.adapters(network.backbone):  # as if trained
        layer.lora_kernel_b.assign(np.random.default_rng(0).normal(
            size=layer.lora_kernel_b.shape).astype("float32"))
    state = [v.numpy().copy() for v in network.backbone.weights]
    saving_lib.save_weights_only(network.backbone, str(tmp_path / "w.weights.h5"))
    lora.save_adapters(network.backbone, tmp_path / "a.npz")
    fresh = _encoder(tiny_bert, tmp_path)[1].backbone
    lora.enable(fresh, cfg.model)
    fresh.load_weights(tmp_path / "w.weights.h5")
    assert all(not layer.lora_kernel_b.numpy().any() for layer in lora.adapters(fresh))
    lora.restore(fresh, tmp_path / "a.npz")
    for before, after in zip(state, fresh.weights, strict=True):
        np.testing.assert_allclose(after.numpy(), before, atol=1e-5)


@pytest.mark.slow  # a kill-and-resume run, as the others: make test-slow
def test_a_killed_lora_run_resumes_with_its_adapters(tiny_bert, tmp_path, monkeypatch):
    """Killed after the head epoch and two of the three LoRA epochs, the same command ends
    with the model a run never killed ends with (the adapters and base kernels restored from
    the resume state). Before, this test replaced the restore with a recorder."""
    cfg = config.build(**_lora_values(tmp_path, tiny_bert))
    whole = train(config.build(**_lora_values(tmp_path, tiny_bert,
                                              run_dir=str(tmp_path / "whole"))))
    train_killed_after(3, cfg, monkeypatch)
    resume = rundir.run_path(cfg) / "resume"
    state = json.loads((resume / "state.json").read_text())
    assert state["phase"] == "fine_tune" and (resume / state["lora"]).is_file()
    result = train(cfg)
    assert len((result.run_dir / "history.csv").read_text().splitlines()) == 1 + 4
    assert not lora.adapters(get_backbone(result.model))  # merged at the end
    for resumed, kept in zip(result.model.weights, whole.model.weights, strict=True):
        np.testing.assert_allclose(resumed.numpy(), kept.numpy(), atol=1e-5)
    assert result.metrics["test"]["loss"] == pytest.approx(whole.metrics["test"]["loss"],
                                                           abs=1e-5)


class _Marker:
    """Pickles as `open(path, "w")`: a plain unpickler would create the file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def test_an_adapters_file_in_a_run_folder_cannot_run_code(tmp_path):
    """RUN/lora_adapters.npz and the resume state's epoch files are read without pickle: one
    holding a pickled object is refused, and the object never runs."""
    from ktransfer.errors import TrainingError

    marker = tmp_path / "marker"
    np.savez(tmp_path / "a.npz", __meta__=np.array([_Marker(marker)], dtype=object))
    marker.unlink(missing_ok=True)
    with pytest.raises(TrainingError, match="cannot read the LoRA adapters"):
        lora.restore(keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)]),
                     tmp_path / "a.npz")
    assert not marker.exists()
