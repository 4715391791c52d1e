"""The text signature of an exported SavedModel: `serving_default` takes raw strings (a 1-D
DT_STRING `text` tensor; TF Serving's REST API: {"instances": [{"text": "..."}]}) and tokenises
them inside the graph exactly as in training; it returns what `answer` makes of the model's
output (the task's outputs: `ktransfer.deploy.serving.answer`).

Loading the SavedModel needs TensorFlow Text's ops (the tokenizer's `NormalizeUTF8` and
friends): `import tensorflow_text` before `tf.saved_model.load`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf

from ktransfer.deploy.conversion import call, tensor_specs
from ktransfer.text.pipeline import trim

TOKENS_SIGNATURE = "predict_tokens"  # what the TFLite and ONNX copies convert


def endpoints(model: keras.Model, preprocessor: Any, mask_key: str,
              answer: Callable[[tf.Tensor], dict[str, tf.Tensor]]) -> dict[str, Any]:
    """{"serving_default": text in, "predict_tokens": the tokenizer's outputs in (token ids,
    padding mask, ... [B, L]), for clients that tokenise themselves and for the copies}."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve_text(text):
        return answer(model(trim(preprocessor(text), mask_key), training=False))

    specs = tensor_specs(model)  # the token arrays by name, as the copies take them

    @tf.function(input_signature=list(specs.values()))
    def predict_tokens(*tokens):
        return answer(call(model, dict(zip(specs, tokens, strict=True))))

    return {"serving_default": serve_text, TOKENS_SIGNATURE: predict_tokens}
