"""`Copies`: the part of a task whose TFLite and ONNX copies answer in other terms than the
model's own output (the `output_key` tensor that the SavedModel's answers are computed from).

A detector's raw output (offsets and class logits of every anchor) is no use on a phone: its
copies end in non-max suppression, as its SavedModel does, in the operation each runtime has
(TFLite's `TFLite_Detection_PostProcess`, which MediaPipe's ObjectDetector reads; TensorFlow's
own for ONNX). The export converts the model with these outputs, scores each copy with
`quality` on the run's test split against the Keras model's `Task.quality`; --tflite_metadata
writes the metadata of MediaPipe's task for those outputs (its ObjectDetector's for the four
detection outputs).
"""

from __future__ import annotations

import abc
from typing import Any

import numpy as np


class Copies(abc.ABC):
    """What a task's copies return (see the module docstring)."""

    @abc.abstractmethod
    def outputs(self, outputs: Any, classes: int, state: dict[str, Any], runtime: str
                ) -> dict[str, Any]:
        """{name: tensor} a copy for `runtime` ("tflite", "onnx") returns from the model's
        output tensor `outputs` [B, ...]; `classes`: how many the model has."""

    @abc.abstractmethod
    def quality(self, found: dict[str, np.ndarray], targets: np.ndarray,
                state: dict[str, Any], classes: int, size: int) -> float:
        """`Task.quality` of a copy's `outputs` (each [N, ...], in the examples' order);
        `size`: the side of the model's square input in pixels (0 for other inputs)."""
