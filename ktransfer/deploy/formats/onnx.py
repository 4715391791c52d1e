"""ONNX (`--onnx`): the Keras model with one output (`probabilities`, or `value` for
regression), through tf2onnx (opset 17), run with onnxruntime for the accuracy check. Both
come with the `onnx` extra (`pip install 'ktransfer[onnx]'`, checked before any work) and are
imported only when used (0.15 s of every command's start-up otherwise)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from ktransfer.config import ExportConfig
from ktransfer.deploy.conversion import (
    CheckData,
    ExportFormat,
    Predictor,
    call,
    named,
    tensor_specs,
)
from ktransfer.errors import KtransferError, first_line

ONNX_OPSET = 17
ONNX_TYPES = {"tensor(float)": "float32", "tensor(int32)": "int32", "tensor(int64)": "int64",
              "tensor(bool)": "bool"}


def onnx_bytes(model: keras.Model, key: str = "probabilities") -> bytes:
    """An ONNX model (opset 17) of `model`: its tensors in (`pixels`, or the token arrays by
    name), the model's output out, named `key` (the task's output: `probabilities` [B, C], or
    regression's `value` [B]); with no key, the model's outputs by their names."""
    specs = tensor_specs(model)
    names = list(specs)

    @tf.function(input_signature=list(specs.values()))
    def probabilities(*tensors):
        outputs = call(model, dict(zip(names, tensors, strict=True)))
        if not key:
            return outputs
        return {key: outputs if key == "probabilities" else tf.reshape(outputs, [-1])}

    import tf2onnx  # only here: 0.15 s of every command's start-up otherwise

    try:
        proto, _ = tf2onnx.convert.from_function(probabilities, opset=ONNX_OPSET,
                                                 input_signature=probabilities.input_signature)
    except Exception as exc:
        raise KtransferError(f"--onnx: tf2onnx cannot convert this model: "
                             f"{first_line(exc)[:200]}") from None
    return proto.SerializeToString()


def convert(folder: Path, model: keras.Model, signature: str, cfg: ExportConfig,
            data: CheckData | None, key: str = "probabilities") -> tuple[bytes, dict[str, Any]]:
    return onnx_bytes(model, key), {"opset": ONNX_OPSET, "inputs": list(tensor_specs(model)),
                                    "outputs": [key] if key else sorted(model.output)}


def predictor(content: bytes, signature: str, key: str = "probabilities") -> Predictor:
    import onnxruntime  # only here, as tf2onnx above

    session = onnxruntime.InferenceSession(content, providers=["CPUExecutionProvider"])
    dtypes = {i.name: ONNX_TYPES[i.type] for i in session.get_inputs()}
    if not key:  # every output, by name
        outputs = [o.name for o in session.get_outputs()]
        return lambda x: dict(zip(outputs, session.run(outputs, named(x, dtypes)), strict=True))
    return lambda x: session.run([key], named(x, dtypes))[0]


FORMAT = ExportFormat(
    filename="model.onnx",
    wanted=lambda cfg: cfg.onnx or "onnx" in cfg.formats,
    convert=convert,
    predictor=predictor,
    requires=("tf2onnx", "onnx", "onnxruntime"),
    extra="onnx",
)
