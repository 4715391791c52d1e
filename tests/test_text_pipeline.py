"""The text input pipeline: each batch padded to its own longest text, length buckets while
training, truncation counted."""

from __future__ import annotations

import numpy as np

from ktransfer import config
from ktransfer.data.examples import Splits
from ktransfer.text.modality import TEXT
from ktransfer.text.pipeline import TextFeed
from ktransfer.text.textset import text_set


def _feed(tiny_bert, max_length=32, buckets=True) -> TextFeed:
    cfg = config.build(modality="text", data="x", backbone=f"kerashub:{tiny_bert}",
                       max_length=max_length, length_buckets=buckets)
    network = TEXT.build(cfg, 2)
    feed = TEXT.feed(cfg, network)
    assert isinstance(feed, TextFeed)
    return feed


def _texts(lengths):
    words = [" ".join(["film"] * n) for n in lengths]
    return text_set(("neg", "pos"), [i % 2 for i in range(len(words))], words)


def test_batches_are_cut_to_their_longest_text(tiny_bert):
    feed = _feed(tiny_bert)
    batches = list(feed.dataset(_texts([2, 3, 2, 10, 4, 4]), batch_size=3))
    widths = [x["token_ids"].shape[1] for x, _ in batches]
    assert widths == [3 + 2, 10 + 2]  # + [CLS] and [SEP]
    x, y = batches[0]
    assert y.shape == (3, 2) and set(x) == {"token_ids", "segment_ids", "padding_mask"}


def test_training_batches_group_texts_of_similar_length(tiny_bert):
    lengths = [2, 20] * 32
    bucketed = list(_feed(tiny_bert).dataset(_texts(lengths), batch_size=8, training=True))
    plain = list(_feed(tiny_bert, buckets=False).dataset(_texts(lengths), batch_size=8,
                                                          training=True))

    def padding(batches):
        return sum(int(np.sum(1 - x["padding_mask"].numpy())) for x, _ in batches)

    assert sum(len(y) for _, y in bucketed) == 64
    assert padding(bucketed) < padding(plain) / 4


def test_truncated_texts_are_counted(tiny_bert):
    feed = _feed(tiny_bert, max_length=8)
    data = Splits(train=_texts([2, 6, 7, 30]), val=_texts([9]), test=None)
    notes = TEXT.data_notes(data, feed)
    assert notes["truncated"] == {"train": 2, "val": 1}
