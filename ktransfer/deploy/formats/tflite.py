"""TFLite (`--tflite=float32|float16|dynamic|int8`): the SavedModel's pixels signature through
`tf.lite.TFLiteConverter`, run with the TFLite interpreter for the accuracy check."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ktransfer.config import ExportConfig
from ktransfer.deploy.conversion import CheckData, ExportFormat, Predictor, named
from ktransfer.errors import KtransferError, first_line
from ktransfer.registry import Registry


def _float16(converter: Any) -> None:
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]


def _dynamic(converter: Any) -> None:
    converter.optimizations = [tf.lite.Optimize.DEFAULT]


def _int8(converter: Any) -> None:  # the representative dataset is set by `tflite_bytes`
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]


# --tflite: name -> how to configure tf.lite.TFLiteConverter
TFLITE: Registry[Callable[[Any], None]] = Registry("TFLite conversion", "tflite", {
    "float32": lambda converter: None, "float16": _float16, "dynamic": _dynamic, "int8": _int8})


def kind(cfg: ExportConfig) -> str:
    """The TFLite conversion `cfg` asks for (`--formats=tflite` alone: float32)."""
    return cfg.tflite if cfg.tflite != "none" else "float32"


def tflite_bytes(saved_model_dir: Path, signature: str, kind: str,
                 data: CheckData | None) -> bytes:
    """A TFLite model of one signature; int8 calibrates on `data.calibration`."""
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir),
                                                         signature_keys=[signature])
    TFLITE.get(kind)(converter)
    if kind == "int8":
        if data is None or data.calibration is None:
            raise KtransferError("--tflite=int8: needs the run directory (its training images "
                                 "calibrate the quantisation); give --run_dir")
        calibration = data.calibration
        specs = tf.saved_model.load(str(saved_model_dir)).signatures[
            signature].structured_input_signature[1]
        dtypes = {name: spec.dtype.as_numpy_dtype for name, spec in specs.items()}

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
    """The signature as it is (every output the SavedModel's has; `key` among them)."""
    content = tflite_bytes(folder, signature, kind(cfg), data)
    return content, {"type": kind(cfg), "signature": signature}


def predictor(content: bytes, signature: str, key: str = "probabilities") -> Predictor:
    runner = tf.lite.Interpreter(model_content=content).get_signature_runner(signature)
    dtypes = {name: d["dtype"] for name, d in runner.get_input_details().items()}
    return lambda x: runner(**named(x, dtypes))[key]


FORMAT = ExportFormat(
    filename="model.tflite",
    wanted=lambda cfg: cfg.tflite != "none" or "tflite" in cfg.formats,
    convert=convert,
    predictor=predictor,
)
