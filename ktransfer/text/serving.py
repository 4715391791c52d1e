"""The text signature of an exported SavedModel: `serving_default` takes raw strings (a 1-D
DT_STRING `text` tensor; TF Serving's REST API: {"instances": [{"text": "..."}]}) and tokenises
them inside the graph exactly as in training; it returns `ktransfer.deploy.serving.outputs`.

Loading the SavedModel needs TensorFlow Text's ops (the tokenizer's `NormalizeUTF8` and
friends): `import tensorflow_text` before `tf.saved_model.load`.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from ktransfer.deploy.serving import outputs


def endpoints(model: keras.Model, preprocessor: Any, class_names: list[str],
              top_k: int) -> dict[str, Any]:
    """{"serving_default": text in}."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve_text(text):
        return outputs(model(preprocessor(text), training=False), class_names, top_k)

    return {"serving_default": serve_text}
