"""`--batch_size=auto` (ktransfer/training/batch_search.py): the largest batch that fits, the rest
made up by gradient accumulation; out of memory simulated above a chosen batch."""

from __future__ import annotations

import logging

import keras
import numpy as np
import pytest
import tensorflow as tf

from ktransfer import config, preflight
from ktransfer.config import AUTO_BATCH, SearchConfig, TuneConfig
from ktransfer.errors import ConfigError
from ktransfer.modality import MODALITIES
from ktransfer.runs import rundir
from ktransfer.training import batch_search, train

from conftest import train_killed_after


def _memory_for(monkeypatch, largest: int) -> list[int]:
    """Makes every training step of more than `largest` examples run out of memory, as an
    accelerator's allocator would; returns the batch sizes tried."""
    tried = []
    real = keras.Model.train_on_batch

    def train_on_batch(self, x, y=None, **kwargs):
        tried.append(int(tf.shape(y)[0]))
        if tried[-1] > largest:
            raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")
        return real(self, x, y, **kwargs)

    monkeypatch.setattr(keras.Model, "train_on_batch", train_on_batch)
    return tried


def test_the_candidates_divide_the_effective_batch():
    assert batch_search.candidates(32) == [32, 16, 8, 4, 2, 1]
    assert batch_search.candidates(48)[:4] == [48, 24, 16, 12]


@pytest.mark.slow  # a batch search and a run: make test-slow
def test_auto_takes_the_largest_batch_that_fits_and_accumulates_the_rest(tiny_config,
                                                                         monkeypatch, caplog):
    tried = _memory_for(monkeypatch, 8)
    cfg = tiny_config(batch_size="auto", effective_batch_size=32, fine_tune_epochs=1)
    assert cfg.data.batch_size == AUTO_BATCH
    with caplog.at_level(logging.INFO, logger="ktransfer.training"):
        result = train(cfg)
    assert tried[:3] == [32, 16, 8]
    saved = config.parse_flagfile(result.run_dir / "flags.cfg")
    assert (saved["batch_size"], saved["accumulate"]) == (8, 4)
    assert "--batch_size=auto: 8 (out of memory at 32, 16); --accumulate=4" in caplog.text


def test_a_try_leaves_the_weights_as_they_were(tiny_config, monkeypatch):
    cfg = tiny_config(batch_size="auto", fine_tune_epochs=1)
    modality = MODALITIES.get("image")
    splits = modality.load_splits(cfg)
    network = modality.build(cfg, len(splits.class_names))
    before = network.model.get_weights()
    assert batch_search.fits(cfg, modality, splits, network, 16)
    _memory_for(monkeypatch, 4)
    assert not batch_search.fits(cfg, modality, splits, network, 16)
    for a, b in zip(before, network.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not network.backbone.trainable  # frozen again, as phase 1 starts


def test_a_resumed_run_keeps_the_batch_it_found(tiny_config, monkeypatch):
    cfg = tiny_config(batch_size="auto", effective_batch_size=32, epochs=2)
    _memory_for(monkeypatch, 16)
    train_killed_after(1, cfg, monkeypatch)  # undoes the simulated memory limit too
    tried = _memory_for(monkeypatch, 1000)
    train(cfg)
    assert tried == [] or max(tried) <= 16  # no search: its flags.cfg's batch
    saved = config.parse_flagfile(rundir.run_path(cfg) / "flags.cfg")
    assert (saved["batch_size"], saved["accumulate"]) == (16, 2)


def test_auto_is_for_train_and_is_refused_where_a_number_is_needed(tiny_config, tmp_path):
    with pytest.raises(ConfigError, match="^--batch_size: auto is found by `train`; give tune"):
        preflight.check_search(SearchConfig(run=tiny_config(batch_size="auto"),
                                            tune=TuneConfig(directory=str(tmp_path / "t"))))
    with pytest.raises(ConfigError, match="^--accumulate: is set by --batch_size=auto"):
        tiny_config(batch_size="auto", accumulate=2)
