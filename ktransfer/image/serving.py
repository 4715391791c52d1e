"""The image signatures of an exported SavedModel.

`serving_default` takes encoded images (JPEG/PNG/BMP/GIF bytes; TF Serving's REST API turns
`{"image_bytes": {"b64": "..."}}` into such bytes) and `predict_pixels` takes float RGB pixels
[B, S, S, 3] in [0, 255]; both return what `answer` makes of the model's output (the task's
outputs: `ktransfer.deploy.serving.answer`). Decoding and resizing run
inside the graph exactly as in training (`image.pipeline.resize`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf

from ktransfer.image.header import check_size
from ktransfer.image.pipeline import resize

PIXELS_SIGNATURE = "predict_pixels"


def endpoints(model: keras.Model, answer: Callable[[tf.Tensor], dict[str, tf.Tensor]]
              ) -> dict[str, Any]:
    """{"serving_default": bytes in, "predict_pixels": pixels in} for a square-input model."""
    size = int(model.input_shape[1])

    def decode(data: tf.Tensor) -> tf.Tensor:
        with tf.control_dependencies([check_size(data)]):  # a bomb is refused, not decoded
            image = tf.io.decode_image(data, channels=3, expand_animations=False)
        return resize(tf.ensure_shape(image, [None, None, 3]), size)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_bytes(image_bytes):
        pixels = tf.map_fn(decode, image_bytes, fn_output_signature=tf.TensorSpec(
            [size, size, 3], tf.float32))
        return answer(model(pixels, training=False))

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32,
                                                 name="pixels")])
    def serve_pixels(pixels):
        return answer(model(pixels, training=False))

    return {"serving_default": serve_bytes, PIXELS_SIGNATURE: serve_pixels}
