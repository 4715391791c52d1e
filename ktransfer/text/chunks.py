"""Long texts read whole, as chunks (`--long_text=chunks`).

A text of n word pieces becomes chunks of at most W = --max_length - 2 pieces, one starting
every S = --chunk_stride pieces (they overlap when S < W) until one reaches the text's end, at
most --max_chunks of them. Each is packed as the encoder's preprocessor packs a text ([CLS]
pieces [SEP], then padding), so the model takes inputs [B, C, L]; it runs on every chunk as
one sequence ([B*C, L], `MergeChunks`) and pools each text's chunk outputs (`ChunkPool`).
Training, evaluation, prediction and the SavedModel's raw-string signature all go through
`ChunkedPreprocessor`, so they read a long text the same way.

A chunk is real when it holds word pieces (the first chunk always is); the others are
[CLS] [SEP] alone, padding the batch to its most chunks, and are left out of the pooling.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from ktransfer.errors import ConfigError
from ktransfer.text.options import TextOptions

SPECIALS = 2  # the start and end tokens around each chunk's word pieces
CONFIG = "chunks.json"  # in RUN/preprocessor/, beside the tokenizer


@dataclass(frozen=True)
class Chunking:
    """How long texts are cut.

    Args:
        length: tokens per chunk, special tokens included (--max_length).
        stride: word pieces from one chunk's start to the next.
        max_chunks: chunks per text at most.
    """

    length: int
    stride: int
    max_chunks: int

    @classmethod
    def of(cls, text: TextOptions) -> Chunking | None:
        """The run's chunking; None with --long_text=truncate."""
        if text.long_text != "chunks":
            return None
        window = text.max_length - SPECIALS  # at least 2 (--max_length >= 4)
        return cls(text.max_length, text.chunk_stride or window // 2, text.max_chunks)

    @property
    def window(self) -> int:
        """Word pieces per chunk."""
        return self.length - SPECIALS

    @property
    def span(self) -> int:
        """Word pieces of a text read at most; the rest is left out."""
        return (self.max_chunks - 1) * self.stride + self.window

    def count(self, pieces: int) -> int:
        """Chunks of a text of `pieces` word pieces."""
        if pieces <= self.window:
            return 1
        return min(self.max_chunks, 1 + -(-(pieces - self.window) // self.stride))

    def save(self, folder: str | os.PathLike) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / CONFIG).write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, folder: str | os.PathLike) -> Chunking | None:
        """What `save` wrote in `folder`; None where the run truncated long texts."""
        path = Path(folder) / CONFIG
        return cls(**json.loads(path.read_text())) if path.is_file() else None


def split(full: dict[str, tf.Tensor], mask_key: str, chunking: Chunking,
          pads: dict[str, Any]) -> dict[str, tf.Tensor]:
    """Packed texts {input: [B, span + 2]} -> chunks {input: [B, max_chunks, length]}.

    `pads`: each input's padding value. Every input is cut alike: the start token's value,
    the chunk's word pieces, the end token's value, then padding."""
    c = chunking
    mask = full[mask_key]
    n = tf.maximum(tf.reduce_sum(tf.cast(tf.cast(mask, tf.bool), tf.int32), axis=1)
                   - SPECIALS, 0)  # word pieces per text [B]
    k = tf.range(c.max_chunks)
    starts = k * c.stride
    needed = (k[None] == 0) | ((starts - c.stride + c.window)[None] < n[:, None])  # [B, C]
    lengths = tf.where(needed, tf.clip_by_value(n[:, None] - starts[None], 0, c.window), 0)
    positions = 1 + starts[:, None] + tf.range(c.window)[None]  # [C, W] in the packed text
    inside = tf.range(c.window)[None, None] < lengths[..., None]  # [B, C, W]
    at_end = tf.range(c.length)[None, None] == lengths[..., None] + 1  # [B, C, L]
    column = tf.stack([tf.shape(mask)[0], c.max_chunks, 1])
    chunks = {}
    for name, value in full.items():
        pad = tf.constant(pads[name], value.dtype)
        body = tf.where(inside, tf.gather(value, positions, axis=1), pad)
        first = tf.tile(value[:, None, :1], [1, c.max_chunks, 1])
        chunk = tf.concat([first, body, tf.fill(column, pad)], axis=-1)
        end = tf.gather(value, (n + 1)[:, None], batch_dims=1)  # [B, 1]
        chunks[name] = tf.where(at_end, end[:, :, None], chunk)
    return chunks


def real_chunks(mask: Any) -> Any:
    """Which chunks of [B, C, L] hold word pieces (the first always counts): bool [B, C]."""
    ops = keras.ops
    tokens = ops.sum(ops.cast(ops.cast(mask, "bool"), "int32"), axis=-1)
    first = ops.expand_dims(ops.arange(ops.shape(mask)[1]) == 0, 0)
    return ops.logical_or(tokens > SPECIALS, first)


def trim_chunks(inputs: dict[str, tf.Tensor], mask_key: str) -> dict[str, tf.Tensor]:
    """Chunked inputs [B, C, L] cut to the batch's most real chunks."""
    count = tf.reduce_max(tf.reduce_sum(tf.cast(real_chunks(inputs[mask_key]), tf.int32), 1))
    return {name: value[:, :count] for name, value in inputs.items()}


class ChunkedPreprocessor(tf.Module):
    """Strings [B] -> chunks {input: [B, max_chunks, length]} through the encoder's own
    preprocessor, which packs each text whole (up to `Chunking.span` word pieces) first.

    Args:
        base: the encoder's preprocessor (keras-hub or TF Hub); its sequence length is set to
            the span (+ 2 special tokens).
        chunking: how texts are cut.
        mask_key: the input that is 1 for real tokens.
    """

    def __init__(self, base: Any, chunking: Chunking, mask_key: str):
        super().__init__(name="chunked_preprocessor")  # an export tracks `base`
        base.sequence_length = chunking.span + SPECIALS
        self.base, self.chunking, self.mask_key = base, chunking, mask_key
        sample = base(tf.constant(["a"]))
        pieces = int(tf.size(self.tokenizer(tf.constant(["a"]))))
        mask = [bool(v) for v in tf.cast(sample[mask_key][0], tf.bool).numpy()]
        if mask != [True] * (pieces + SPECIALS) + [False] * (len(mask) - pieces - SPECIALS):
            raise ConfigError("long_text", "chunks need a tokenizer that packs a text as start "
                              "token, word pieces, end token (BERT-like); this one does not: "
                              "use --long_text=truncate")
        self.pads = {name: value[0, -1].numpy().item() for name, value in sample.items()}

    @property
    def tokenizer(self) -> Any:
        """The encoder's tokenizer (strings -> word pieces)."""
        return self.base.tokenizer

    @property
    def sequence_length(self) -> int:
        return self.chunking.length

    def __call__(self, texts: tf.Tensor) -> dict[str, tf.Tensor]:
        return split(self.base(texts), self.mask_key, self.chunking, self.pads)


@keras.saving.register_keras_serializable(package="ktransfer")
class MergeChunks(keras.layers.Layer):
    """Chunks [B, C, L] -> sequences [B*C, L]: every chunk of every text as one text."""

    def call(self, chunks: Any) -> Any:
        return keras.ops.reshape(chunks, (-1, keras.ops.shape(chunks)[-1]))

    def compute_output_shape(self, input_shape: tuple[Any, ...]) -> tuple[Any, ...]:
        return (None, input_shape[-1])


@keras.saving.register_keras_serializable(package="ktransfer")
class ChunkPool(keras.layers.Layer):
    """Chunk outputs `parts` [B*C, K] and the chunked padding mask `tokens` [B, C, L] -> text
    outputs [B, K]: the mean
    or the maximum over each text's real chunks; `rescale` makes maxima of class
    probabilities sum to 1 again."""

    def __init__(self, mode: str = "mean", rescale: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.mode, self.rescale = mode, rescale

    def call(self, parts: Any, tokens: Any) -> Any:
        ops = keras.ops
        shape = ops.shape(tokens)
        per = ops.reshape(ops.cast(parts, self.compute_dtype), (shape[0], shape[1], -1))
        real = ops.expand_dims(real_chunks(tokens), -1)  # [B, C, 1]
        if self.mode == "mean":
            weights = ops.cast(real, per.dtype)
            return ops.sum(per * weights, axis=1) / ops.sum(weights, axis=1)
        best = ops.max(ops.where(real, per, float("-inf")), axis=1)
        return best / ops.sum(best, axis=-1, keepdims=True) if self.rescale else best

    def compute_output_shape(self, parts_shape: tuple[Any, ...], tokens_shape: tuple[Any, ...]
                             ) -> tuple[Any, ...]:
        return (tokens_shape[0], parts_shape[-1])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode, "rescale": self.rescale}
