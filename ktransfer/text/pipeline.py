"""tf.data pipelines for text: tokenise once (cached) -> shuffle -> length buckets -> batch ->
cut each batch to its longest text -> prefetch.

Batches are ({input name: int32 [B, L_batch]}, one-hot labels float32 [B, C]); L_batch is the
longest text of the batch (special tokens included), at most --max_length, so short texts do
not pay for the longest one.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import tensorflow as tf

from ktransfer.data.examples import Examples
from ktransfer.data.options import without_autotune
from ktransfer.modality import Feed
from ktransfer.tasks.task import Task
from ktransfer.text.chunks import ChunkedPreprocessor, Chunking, trim_chunks
from ktransfer.text.encoders import PREPROCESSOR_DIR, save_preprocessor
from ktransfer.text.hub import HubTextPreprocessor
from ktransfer.text.textset import TextSet

AUTOTUNE = tf.data.AUTOTUNE
BUCKET_EDGES = (8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
TOKENIZE_BATCH = 256


def trim(inputs: dict[str, tf.Tensor], mask_key: str) -> dict[str, tf.Tensor]:
    """Every [B, L] input cut to the longest real sequence of the batch; chunked inputs
    [B, C, L] to its most real chunks too."""
    if inputs[mask_key].shape.rank == 3:
        inputs = trim_chunks(inputs, mask_key)
    longest = tf.reduce_max(tf.reduce_sum(tf.cast(inputs[mask_key], tf.int32), axis=-1))
    return {name: value[..., :longest] for name, value in inputs.items()}


@dataclass
class TextFeed(Feed):
    """Texts -> token inputs through the encoder's preprocessor.

    Args:
        preprocessor: strings [B] -> {input: [B, max_length]} (keras-hub or TF Hub).
        mask_key: the input that is 1 for real tokens.
        max_length: the preprocessor's sequence length.
        buckets: training batches of similar lengths.
        shuffle_buffer: texts in the shuffle buffer when training.
        extra: more objects an export must track (e.g. TF Hub modules).
    """

    preprocessor: Any
    mask_key: str
    max_length: int
    buckets: bool = True
    shuffle_buffer: int = 2048
    extra: list[Any] = field(default_factory=list)
    task: Task | None = None

    def tokenized(self, examples: TextSet) -> tf.data.Dataset:
        """(inputs {name: [max_length]}, label) per text, in order."""
        strings = [str(t) for t in examples.texts] if examples.texts is not None else []
        texts = tf.constant(strings, dtype=tf.string) if strings else tf.zeros([0], tf.string)
        ds = tf.data.Dataset.from_tensor_slices((texts, examples.labels))
        ds = ds.batch(TOKENIZE_BATCH).map(lambda t, y: (self.preprocessor(t), y),
                                          num_parallel_calls=AUTOTUNE, deterministic=True)
        return ds.unbatch()

    def dataset(self, examples: Examples, *, batch_size: int, training: bool = False,
                seed: int = 0, repeat: bool = False,
                cache_path: str | os.PathLike | None = None) -> tf.data.Dataset:
        assert isinstance(examples, TextSet)
        encode = self.encoder(examples)
        ds = self.tokenized(examples).cache()
        if training:
            ds = ds.shuffle(min(self.shuffle_buffer, max(1, len(examples))), seed=seed,
                            reshuffle_each_iteration=True)
        if repeat:
            ds = ds.repeat()
        if training and self.buckets:
            edges = [e for e in BUCKET_EDGES if e < self.max_length]
            ds = ds.bucket_by_sequence_length(
                lambda x, y: tf.reduce_sum(tf.cast(x[self.mask_key], tf.int32)),
                bucket_boundaries=edges, bucket_batch_sizes=[batch_size] * (len(edges) + 1))
        else:
            ds = ds.batch(batch_size)
            if not repeat:  # unbatch() lost it; Keras warns about a dataset of unknown size
                ds = ds.apply(tf.data.experimental.assert_cardinality(
                    math.ceil(len(examples) / batch_size)))
        ds = ds.map(lambda x, y: (trim(x, self.mask_key), encode(y)),
                    num_parallel_calls=AUTOTUNE)
        return without_autotune(ds.prefetch(AUTOTUNE))

    @property
    def chunking(self) -> Chunking | None:
        """How long texts are cut (--long_text=chunks); None where they are truncated."""
        chunked = isinstance(self.preprocessor, ChunkedPreprocessor)
        return self.preprocessor.chunking if chunked else None

    def save(self, run_dir: str | os.PathLike) -> None:
        folder = os.path.join(os.fspath(run_dir), PREPROCESSOR_DIR)
        base = self.preprocessor.base if self.chunking else self.preprocessor
        if isinstance(base, HubTextPreprocessor):
            base.save(folder)
        else:
            save_preprocessor(base, run_dir)
        if self.chunking:
            self.chunking.save(folder)

    def trackables(self) -> list[Any]:
        return [self.preprocessor, *self.extra]
