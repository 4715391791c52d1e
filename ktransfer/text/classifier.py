"""The text classifier: token inputs {name: int32 [B, L]} -> encoder -> token vectors
[B, L, D] -> pooling over the padding mask -> new head -> probabilities [B, classes]. With
--long_text=chunks the inputs are chunks [B, C, L], read as [B*C, L] and pooled per text."""

from __future__ import annotations

import keras

from ktransfer.config import ModelConfig
from ktransfer.network.heads import build_head
from ktransfer.tasks import default_task
from ktransfer.tasks.task import Task
from ktransfer.text.chunks import ChunkPool, MergeChunks
from ktransfer.text.encoders import Encoder


def build_classifier(encoder: Encoder, num_classes: int, cfg: ModelConfig,
                     task: Task | None = None, chunk_pooling: str = "") -> keras.Model:
    """Inputs named as the encoder's (e.g. token_ids, segment_ids, padding_mask); with
    `chunk_pooling` (mean, max) they are chunks [B, C, L] and the chunks' outputs are pooled.

    Example:

        encoder = load_kerashub(ModelConfig(backbone="minilm"), TextOptions(max_length=64))
        model = build_classifier(encoder, 2, ModelConfig(backbone="minilm"))
    """
    shape = (None, None) if chunk_pooling else (None,)
    inputs = {name: keras.Input(shape, dtype=tensor.dtype, name=name)
              for name, tensor in encoder.backbone.input.items()}
    flat = ({name: MergeChunks(name=f"merge_{name}")(value) for name, value in inputs.items()}
            if chunk_pooling else inputs)
    sequence = encoder.backbone(flat)
    outputs = build_head(sequence, num_classes, cfg, mask=flat[encoder.mask_key], task=task)
    if chunk_pooling:
        outputs = ChunkPool(chunk_pooling, (task or default_task()).distribution,
                            dtype="float32", name="chunk_pool")(outputs, inputs[encoder.mask_key])
    return keras.Model(inputs, outputs, name="ktransfer_text")
