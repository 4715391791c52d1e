"""TF Hub text encoders (`--backbone=hub:HANDLE`) with their preprocessing model
(`--hub_preprocessor=HANDLE`): the classic pairing of a BERT encoder with
`bert_en_uncased_preprocess`. Handles are URLs (downloaded into TF Hub's cache when online) or
local SavedModel folders (offline).

The preprocessing model's `tokenize` and `bert_pack_inputs(segments, seq_length)` turn strings
into `input_word_ids`, `input_mask` and `input_type_ids` [B, L]; the encoder maps them to
`sequence_output` [B, L, D], which the head pools over `input_mask`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import keras
import tensorflow as tf

from ktransfer.config import ModelConfig, RunConfig
from ktransfer.errors import ConfigError, WeightsError
from ktransfer.network.hub import HubBackbone, load_module
from ktransfer.text.encoders import Encoder, EncoderSource
from ktransfer.text.options import TextOptions

INPUTS = ("input_word_ids", "input_mask", "input_type_ids")
CONFIG = "hub_preprocessor.json"


class HubTextPreprocessor(tf.Module):
    """Strings [B] -> {input_word_ids, input_mask, input_type_ids: int32 [B, sequence_length]}
    with a TF Hub BERT preprocessing model.

    Args:
        handle: the preprocessing model (URL or folder).
        sequence_length: tokens per text, [CLS] and [SEP] included (--max_length).
    """

    def __init__(self, handle: str, sequence_length: int):
        super().__init__(name="hub_preprocessor")  # a tf.Module: an export tracks the model
        self.handle = handle
        self.sequence_length = int(sequence_length)
        self.module = load_module(handle, flag="hub_preprocessor")
        for name in ("tokenize", "bert_pack_inputs"):
            if not hasattr(self.module, name):
                raise WeightsError(f"--hub_preprocessor={handle}: has no `{name}`; give a TF Hub "
                                   "BERT preprocessing model (e.g. bert_en_uncased_preprocess)")

    def tokenizer(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """Word pieces per text [B, (n)] (words merged), before packing."""
        tokens = self.module.tokenize(tf.convert_to_tensor(texts))
        return tokens.merge_dims(-2, -1) if tokens.shape.rank == 3 else tokens

    def __call__(self, texts: tf.Tensor) -> dict[str, tf.Tensor]:
        tokens = self.module.tokenize(tf.convert_to_tensor(texts))
        packed = self.module.bert_pack_inputs([tokens],
                                              seq_length=tf.constant(self.sequence_length))
        return {name: tf.cast(packed[name], tf.int32) for name in INPUTS}

    def save(self, folder: str | os.PathLike) -> None:
        """Writes the handle and length (the model itself stays where the handle points)."""
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / CONFIG).write_text(json.dumps(
            {"handle": self.handle, "sequence_length": self.sequence_length}))

    @classmethod
    def load(cls, folder: str | os.PathLike) -> HubTextPreprocessor:
        config = json.loads((Path(folder) / CONFIG).read_text())
        return cls(config["handle"], config["sequence_length"])


def load_hub(model: ModelConfig, text: TextOptions) -> Encoder:
    """The TF Hub encoder `--backbone=hub:HANDLE` names, with `--hub_preprocessor`."""
    handle = model.backbone[len("hub:"):]
    preprocessor = HubTextPreprocessor(text.hub_preprocessor, text.max_length)
    inputs = {name: keras.Input((None,), dtype="int32", name=name) for name in INPUTS}
    layer = HubBackbone(handle, output_key=model.hub_output_key or "sequence_output",
                        name="hub_module")
    sequence = layer(inputs)
    if len(sequence.shape) != 3:
        raise WeightsError(f"--backbone={model.backbone}: its output is {sequence.shape}, not "
                           "token vectors [B, L, D]; pick them with --hub_output_key")
    backbone = keras.Model(inputs, sequence, name="backbone")
    return Encoder(backbone, preprocessor, "input_mask", model.backbone)


def _check(handle: str, cfg: RunConfig) -> None:
    if not cfg.group("text").hub_preprocessor:
        raise ConfigError("hub_preprocessor", "a hub: text encoder needs its preprocessing "
                          "model, e.g. --hub_preprocessor=https://tfhub.dev/tensorflow/"
                          "bert_en_uncased_preprocess/3 (or a local folder)")
    if cfg.model.weights == "none":
        raise ConfigError("weights", "hub: encoders bring their own weights; leave "
                          "--weights=imagenet (as shipped)")


SOURCE = EncoderSource(load_hub, _check)
