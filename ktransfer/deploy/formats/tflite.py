"""TFLite (`--tflite=float32|float16|dynamic|int8`): the SavedModel's pixels signature through
`tf.lite.TFLiteConverter`, run with the TFLite interpreter for the accuracy check."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ktransfer.config import ExportConfig
from ktransfer.deploy.catalog import TFLITE
from ktransfer.deploy.conversion import CheckData, ExportFormat, Predictor, named, tensor_specs
from ktransfer.deploy.formats import tflite_metadata
from ktransfer.errors import KtransferError, first_line


def float32_conversion(converter: Any) -> None:
    """Plain float32: the converter as it is."""


def float16_conversion(converter: Any) -> None:
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]


def dynamic_conversion(converter: Any) -> None:
    converter.optimizations = [tf.lite.Optimize.DEFAULT]


def int8_conversion(converter: Any) -> None:  # `tflite_bytes` sets the representative data
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]


def kind(cfg: ExportConfig) -> str:
    """The TFLite conversion `cfg` asks for (`--formats=tflite` alone: float32)."""
    return cfg.tflite if cfg.tflite != "none" else "float32"


def tflite_bytes(saved_model_dir: Path, signature: str, kind: str,
                 data: CheckData | None, dtypes: dict[str, Any]) -> bytes:
    """A TFLite model of one signature; int8 calibrates on `data.calibration`, fed as the
    signature's inputs of `dtypes` (name -> numpy dtype, the Keras model's)."""
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir),
                                                         signature_keys=[signature])
    TFLITE.get(kind)(converter)
    if kind == "int8":
        if data is None or data.calibration is None:
            raise KtransferError("--tflite=int8: needs the run directory (its training images "
                                 "calibrate the quantisation); give --run_dir")
        calibration = data.calibration

        def representative() -> Iterator[dict[str, np.ndarray]]:
            for batch in data.batches(calibration, 1):
                yield named(batch, dtypes)

        converter.representative_dataset = representative
    try:
        return converter.convert()
    except Exception as exc:  # the converter's errors are pages long
        raise KtransferError(f"--tflite={kind}: the converter failed: "
                             f"{first_line(exc)[:200]}") from None


def convert(folder: Path, model: keras.Model, signature: str, cfg: ExportConfig,
            data: CheckData | None, key: str = "probabilities") -> tuple[bytes, dict[str, Any]]:
    """The signature as it is (every output the SavedModel's has; `key` among them), or with
    --tflite_metadata the Keras model with one output and MediaPipe's metadata."""
    dtypes = {name: spec.dtype.as_numpy_dtype for name, spec in tensor_specs(model).items()}
    if not cfg.tflite_metadata:
        content = tflite_bytes(folder, signature, kind(cfg), data, dtypes)
        return content, {"type": kind(cfg), "signature": signature}
    with tempfile.TemporaryDirectory() as tmp:
        tflite_metadata.one_output_model(model, key, Path(tmp))
        content = tflite_bytes(Path(tmp), "serving_default", kind(cfg), data, dtypes)
    labels = (folder / "labels.txt").read_text().splitlines()
    return tflite_metadata.with_metadata(content, labels), {
        "type": kind(cfg), "signature": "serving_default", "metadata": "MediaPipe image "
        "classifier (labels.txt packed in; normalisation mean 0, std 1)"}


def predictor(content: bytes, signature: str, key: str = "probabilities") -> Predictor:
    interpreter = tf.lite.Interpreter(model_content=content)
    names = interpreter.get_signature_list()
    runner = interpreter.get_signature_runner(signature if signature in names else
                                              next(iter(names)))
    dtypes = {name: d["dtype"] for name, d in runner.get_input_details().items()}
    return lambda x: runner(**named(x, dtypes))[key]


FORMAT = ExportFormat(
    filename="model.tflite",
    wanted=lambda cfg: cfg.tflite != "none" or "tflite" in cfg.formats,
    convert=convert,
    predictor=predictor,
)
