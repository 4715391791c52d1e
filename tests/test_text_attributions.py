"""Integrated gradients over token embeddings: the completeness axiom on a tiny BERT, and the
HTML they are shown in."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from ktransfer import config
from ktransfer.errors import ConfigError
from ktransfer.text.attributions import Attribution, TokenAttributions, _scaled, highlight
from ktransfer.text.modality import TEXT

from conftest import text_values


@pytest.fixture(scope="module")
def classifier(tmp_path_factory, tiny_bert):
    cfg = config.build(**text_values(tmp_path_factory.mktemp("ig"), tiny_bert))
    network = TEXT.build(cfg, 2)
    return network.model, TEXT.feed(cfg, network)


def test_attributions_add_up_to_the_change_from_the_zero_embedding(classifier):
    """Completeness (Sundararajan et al.): the attributions of all tokens sum to
    log p(x) - log p(baseline), up to the error of the 64-step path integral."""
    model, feed = classifier
    explain = TokenAttributions(model, feed.preprocessor, feed.mask_key, steps=64)
    inputs = feed.preprocessor(tf.constant(["the plot was great and the music superb"]))
    length = int(tf.reduce_sum(tf.cast(inputs[feed.mask_key], tf.int32)))
    inputs = {k: v[:, :length] for k, v in inputs.items()}
    for class_id in (0, 1):
        scores = explain.scores(inputs, class_id)
        assert scores.shape == (length,)
        full = float(np.log(model(inputs, training=False)[0, class_id]))
        with tf.GradientTape() as tape, _scaled(explain.layer, tf.zeros([1, 1, 1]), tape, {}):
            baseline = float(np.log(model(inputs, training=False)[0, class_id]))
        assert abs(full - baseline) > 1e-3  # the text matters to the untrained model at all
        assert scores.sum() == pytest.approx(full - baseline, rel=0.05, abs=2e-3)
    # The layer is itself again afterwards.
    assert "call" not in vars(explain.layer)


def test_highlight_colours_pieces_by_sign_and_joins_word_pieces():
    page = highlight(Attribution(["super", "##b", "dull"], [0.5, 0.25, -1.0], "positive"))
    assert ">super</span><span" in page and ">b</span> <span" in page  # ##b joins "super"
    assert "rgba(40,160,60,0.50)" in page and "rgba(210,50,50,1.00)" in page


def test_encoders_without_a_token_embedding_are_refused(hub_module):
    cfg = config.build(data="builtin:digits", backbone=f"hub:{hub_module}", image_size=32)
    from ktransfer.image.modality import IMAGE

    model = IMAGE.build(cfg, 2).model
    with pytest.raises(ConfigError, match="^--explain: the encoder 'backbone' has no token"):
        TokenAttributions(model, None, "padding_mask")
