"""The text classifier: token inputs {name: int32 [B, L]} -> encoder -> token vectors
[B, L, D] -> pooling over the padding mask -> new head -> probabilities [B, classes]."""

from __future__ import annotations

import keras

from ktransfer.config import ModelConfig
from ktransfer.network.heads import build_head
from ktransfer.tasks.task import Task
from ktransfer.text.encoders import Encoder


def build_classifier(encoder: Encoder, num_classes: int, cfg: ModelConfig,
                     task: Task | None = None) -> keras.Model:
    """Inputs named as the encoder's (e.g. token_ids, segment_ids, padding_mask).

    Example:

        encoder = load_kerashub(ModelConfig(backbone="minilm"), TextOptions(max_length=64))
        model = build_classifier(encoder, 2, ModelConfig(backbone="minilm"))
    """
    inputs = {name: keras.Input((None,), dtype=tensor.dtype, name=name)
              for name, tensor in encoder.backbone.input.items()}
    sequence = encoder.backbone(inputs)
    outputs = build_head(sequence, num_classes, cfg, mask=inputs[encoder.mask_key], task=task)
    return keras.Model(inputs, outputs, name="ktransfer_text")
