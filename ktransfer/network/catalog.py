"""The network registries, importable without TensorFlow: `--pooling` names."""

from __future__ import annotations

from ktransfer.registry import Registry

_HEADS = "ktransfer.network.heads"

# name -> Pooling (the layer for feature maps, the layer for masked token sequences)
POOLINGS: Registry = Registry("pooling", "pooling", {
    "avg": f"{_HEADS}:AVG", "mean": f"{_HEADS}:AVG", "max": f"{_HEADS}:MAX",
    "flatten": f"{_HEADS}:FLATTEN", "cls": f"{_HEADS}:CLS",
}, about={"avg": "mean over positions (text: over the tokens, padding masked)",
          "mean": "the same as avg", "max": "maximum over positions (images)",
          "flatten": "every position's features in one vector (images)",
          "cls": "the first token's vector (text: BERT's [CLS])"})
