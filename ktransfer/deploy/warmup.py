"""TF Serving warm-up: real requests saved with the export
(`VERSION/assets.extra/tf_serving_warmup_requests`), which the model server replays when it
loads a version, so the first user's request does not pay for tracing and allocation; and a
sample batching configuration beside `models.config`.

Format (TF Serving's "SavedModel Warmup" guide): a TFRecord file of `PredictionLog` protos,
each a `PredictRequest` to the `serving_default` signature.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from ktransfer.runs import atomic

WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
BATCHING_FILE = "batching.config"
# --enable_batching --batching_parameters_file=batching.config: batches of up to 32 requests,
# waiting at most 2 ms for more; a starting point to tune with the server's own tools.
BATCHING = """max_batch_size { value: 32 }
batch_timeout_micros { value: 2000 }
max_enqueued_batches { value: 100 }
num_batch_threads { value: 4 }
"""


def requests(inputs: dict[str, np.ndarray], signature: str = "serving_default"
             ) -> list[bytes]:
    """Serialized `PredictionLog`s: one request of the first example, one of them all (the
    two batch shapes a server meets first)."""
    found = []
    n = len(next(iter(inputs.values())))
    for count in sorted({1, n}):
        request = predict_pb2.PredictRequest()
        request.model_spec.signature_name = signature
        for key, values in inputs.items():
            request.inputs[key].CopyFrom(tf.make_tensor_proto(values[:count]))
        log = prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=request))
        found.append(log.SerializeToString())
    return found


def write_warmup(folder: str | os.PathLike, inputs: dict[str, np.ndarray]) -> Path:
    """Writes FOLDER/assets.extra/tf_serving_warmup_requests from `serving_default`'s inputs
    of a few real examples."""
    path = Path(folder) / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in requests(inputs):
            writer.write(record)
    return path


def read_warmup(folder: str | os.PathLike) -> list[predict_pb2.PredictRequest]:
    """The warm-up requests of an export, parsed as TF Serving parses them."""
    found = []
    for record in tf.data.TFRecordDataset(str(Path(folder) / WARMUP_FILE)).as_numpy_iterator():
        log = prediction_log_pb2.PredictionLog.FromString(record)
        found.append(log.predict_log.request)
    return found


def write_batching(base_parent: str | os.PathLike) -> None:
    """A sample batching configuration beside models.config (kept when it exists: the user's
    tuned one wins)."""
    path = Path(base_parent) / BATCHING_FILE
    if not path.exists():
        atomic.write_text(path, BATCHING)
