"""The contract of the backbone sources (`--backbone=SOURCE:HANDLE`), run over every
registered source of each modality: a handle it accepts passes pre-flight and builds a
backbone that maps a batch to features; an empty handle and (for sources that bring their own
weights) --weights=none are one-line errors naming the flag."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from ktransfer import config
from ktransfer.errors import ConfigError
from ktransfer.image import backbones
from ktransfer.text import encoders

from conftest import (
    save_hub_text_modules,
    save_kerashub_resnet,
    save_user_model,
    text_values,
)
from plugins import installed

# A handle (and any flags it needs) per registered source; a new source adds its own here.
IMAGE_HANDLES = {
    "hub": lambda tmp, request: (str(request.getfixturevalue("hub_module")), {}),
    "file": lambda tmp, request: (str(save_user_model(tmp / "mine.keras")), {}),
    "kerashub": lambda tmp, request: (str(save_kerashub_resnet(tmp / "resnet")), {}),
    "convs": lambda tmp, request: ("8,16", {"weights": "none"}),  # tests/plugins/convs.py
}


def _hub_text(tmp, request):
    encoder, preprocessor = save_hub_text_modules(tmp / "hub")
    return str(encoder), {"hub_preprocessor": str(preprocessor)}


TEXT_HANDLES = {
    "kerashub": lambda tmp, request: (str(request.getfixturevalue("tiny_bert")), {}),
    "hub": _hub_text,
}


@pytest.fixture
def with_toy():
    """The toy source of tests/plugins/convs.py, registered for the test."""
    with installed("convs"):
        yield


@pytest.mark.parametrize("name", [*backbones.SOURCES.names(), "convs"])
def test_every_image_backbone_source_checks_and_builds(name, tmp_path, request, with_toy):
    assert name in IMAGE_HANDLES, f"give the {name} source a handle in IMAGE_HANDLES"
    handle, flags = IMAGE_HANDLES[name](tmp_path, request)
    cfg = config.ModelConfig(backbone=f"{name}:{handle}", **flags)
    backbones.check_backbone(cfg)
    spec = backbones.resolve_spec(cfg)
    size = spec.default_size if name == "file" else 32
    model = backbones.build_backbone(spec, cfg.weights, size, "")
    pixels = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
    features = model(pixels)
    assert features.shape[0] == 2 and len(features.shape) in (2, 4)
    with pytest.raises(ConfigError, match="^--backbone: give a name or path after"):
        config.ModelConfig(backbone=f"{name}:")
    if backbones.SOURCES.get(name).own_weights:
        with pytest.raises(ConfigError, match="^--weights: .*bring their own weights"):
            backbones.check_backbone(config.ModelConfig(backbone=f"{name}:{handle}",
                                                        weights="none"))


@pytest.mark.parametrize("name", encoders.SOURCES.names())
def test_every_text_encoder_source_checks_and_loads(name, tmp_path, request):
    assert name in TEXT_HANDLES, f"give the {name} source a handle in TEXT_HANDLES"
    handle, flags = TEXT_HANDLES[name](tmp_path, request)
    tiny_bert = request.getfixturevalue("tiny_bert")
    cfg = config.build(**text_values(tmp_path, tiny_bert, backbone=f"{name}:{handle}",
                                     **flags))
    encoders.check_encoder(cfg)
    encoder = encoders.load_encoder(cfg.model, cfg.group("text"))
    tokens = encoder.preprocessor(tf.constant(["a good film", "dull"]))
    vectors = encoder.backbone(tokens)
    assert len(vectors.shape) == 3 and vectors.shape[0] == 2
    assert encoder.mask_key in tokens


def test_a_new_backbone_source_is_one_registration(tiny_config, with_toy):
    """tests/plugins/convs.py, registered alone, trains a run (head, then fine-tuning) past
    chance, and its pre-flight refuses what it cannot do in one line naming the flag."""
    from ktransfer import preflight
    from ktransfer.training import train

    with pytest.raises(ConfigError, match="^--weights: convs: backbones start from scratch"):
        preflight.check_train(tiny_config(backbone="convs:8,16", weights="imagenet"))
    with pytest.raises(ConfigError, match="^--backbone: convs:8,x: give widths"):
        preflight.check_train(tiny_config(backbone="convs:8,x"))
    result = train(tiny_config(backbone="convs:16,32", epochs=15, fine_tune_epochs=1, lr=0.05,
                               classes=("0", "1"), report=True))
    assert result.metrics["epochs"] == {"head": 15, "fine_tune": 1}
    assert result.metrics["test"]["accuracy"] > 0.5 + 0.2  # two classes: chance is 0.5
