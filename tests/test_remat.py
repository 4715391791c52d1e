"""`--remat` (ktransfer/network/remat.py): the blocks recompute in the backward pass and the
gradients stay what they were."""

from __future__ import annotations

from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf

from ktransfer import config
from ktransfer.errors import ConfigError
from ktransfer.modality import MODALITIES
from ktransfer.network import remat
from ktransfer.training import train
from ktransfer.training.lr_finder import _fine_tune_target, find_lr

from conftest import text_values, tiny_values


def _network(tiny_bert, tmp_path):
    cfg = config.build(**text_values(tmp_path, tiny_bert, fine_tune_epochs=1, remat=True))
    keras.utils.set_random_seed(0)
    return MODALITIES.get("text").build(cfg, 2)


def _gradients(network, inputs, labels, start):
    """The gradients of one training step (dropout on, in graph mode as `fit` runs it), from
    the random seed states `start`."""
    seeds = [v for v in network.model.variables if "seed_generator_state" in v.path]

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            outputs = network.model(x, training=True)
            loss = keras.losses.sparse_categorical_crossentropy(y, outputs)
        return [tf.convert_to_tensor(g) for g in tape.gradient(  # embeddings: IndexedSlices
            loss, network.model.trainable_variables)]

    for variable, value in zip(seeds, start, strict=True):
        variable.assign(value)
    return step(inputs, labels)


def test_recomputed_blocks_give_the_same_gradients_dropout_included(tiny_bert, tmp_path,
                                                                    monkeypatch):
    network = _network(tiny_bert, tmp_path)
    network.backbone.trainable = True
    inputs = network.preprocessor(["a good film", "an awful, boring film"] * 2)
    labels = tf.constant([1, 0, 1, 0])
    start = [v.numpy() for v in network.model.variables if "seed_generator_state" in v.path]
    assert start  # dropout layers draw from these
    plain = _gradients(network, inputs, labels, start)
    recomputed = []
    real = tf.recompute_grad
    monkeypatch.setattr(tf, "recompute_grad", lambda f: recomputed.append(f) or real(f))
    assert remat.enable(network.backbone, True) == 2  # the two transformer layers
    checkpointed = _gradients(network, inputs, labels, start)
    assert len(recomputed) >= 2  # Keras went through tf.recompute_grad for each block
    for a, b in zip(plain, checkpointed, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_a_fine_tuning_run_with_remat_trains(tiny_bert, tmp_path):
    result = train(config.build(**text_values(tmp_path, tiny_bert, epochs=1, fine_tune_epochs=1,
                                              remat=True)))
    assert result.metrics["epochs"]["fine_tune"] == 1


class _NoBatches:
    """A feed whose batches are not needed: the test looks at the network only."""

    def dataset(self, *args, **kwargs):
        return None


def test_the_fine_tuning_range_test_recomputes_the_blocks_as_the_run_would(tiny_bert, tmp_path):
    """find_lr --phase=fine_tune with --remat steps through recomputed blocks (before, the
    range test of a backbone that fits only with --remat ran out of memory)."""
    network = _network(tiny_bert, tmp_path)
    cfg = config.build(**text_values(tmp_path, tiny_bert, fine_tune_epochs=1, remat=True))
    model, _, _ = _fine_tune_target(cfg, _NoBatches(), SimpleNamespace(train=None), network)
    assert model is network.model and len(remat.blocks(network.backbone)) == 2
    assert all(getattr(block.call, "recomputed", False)
               for block in remat.blocks(network.backbone))


def test_a_flat_backbone_is_refused_before_any_work(tiny_config, tmp_path):
    with pytest.raises(ConfigError, match="^--remat: small_cnn has no nested blocks"):
        train(tiny_config(fine_tune_epochs=1, remat=True))
    assert not (tmp_path / "run").exists()
    cfg = config.build_find_lr(**tiny_values(tmp_path, fine_tune_epochs=1, remat=True,
                                             run_dir=""),
                               phase="fine_tune", output_dir=str(tmp_path / "lr"))
    with pytest.raises(ConfigError, match="^--remat: small_cnn has no nested blocks"):
        find_lr(cfg)  # before the head is trained for the range test
    assert not (tmp_path / "lr" / "lr_find.json").exists()
