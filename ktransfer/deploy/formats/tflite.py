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
                 data: CheckData | None, dtypes: dict[str, Any], custom: bool = False) -> bytes:
    """A TFLite model of one signature; int8 calibrates on `data.calibration`, fed as the
    signature's inputs of `dtypes` (name -> numpy dtype, the Keras model's). `custom`: the
    signature holds operations TFLite keeps as custom ones (`TFLite_Detection_PostProcess`,
    which every TFLite runtime and MediaPipe register)."""
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir),
                                                         signature_keys=[signature])
    TFLITE.get(kind)(converter)
    converter.allow_custom_ops = custom
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
    --tflite_metadata the Keras model with one output and MediaPipe's metadata; with no
    signature, the model itself with all its outputs (a task's copy outputs)."""
    dtypes = {name: spec.dtype.as_numpy_dtype for name, spec in tensor_specs(model).items()}
    if not signature:
        return _all_outputs(folder, model, cfg, data, dtypes)
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


def _all_outputs(folder: Path, model: keras.Model, cfg: ExportConfig, data: CheckData | None,
                 dtypes: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    """The model with every output by name, through a SavedModel of its own; with
    --tflite_metadata, the metadata MediaPipe's task for those outputs reads."""
    with tempfile.TemporaryDirectory() as tmp:
        tflite_metadata.all_outputs_model(model, Path(tmp))
        content = tflite_bytes(Path(tmp), "serving_default", kind(cfg), data, dtypes,
                               custom=True)
    about = {"type": kind(cfg), "outputs": sorted(model.output)}
    if cfg.tflite_metadata:
        labels = (folder / "labels.txt").read_text().splitlines()
        content, about["metadata"] = tflite_metadata.with_metadata_for(content, model, labels)
    return content, about


def _runner(content: bytes, signature: str) -> Any:
    """The signature runner of `content` (`signature`, else its first), with TFLite's default
    delegate (XNNPACK) where it prepares the model, else with the built-in kernels alone."""
    for resolver in (tf.lite.experimental.OpResolverType.AUTO,
                     tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES):
        try:
            interpreter = tf.lite.Interpreter(model_content=content,
                                              experimental_op_resolver_type=resolver)
            interpreter.allocate_tensors()  # where a delegate fails to prepare the model
        except (RuntimeError, ValueError) as exc:
            failed = exc
            continue
        names = interpreter.get_signature_list()
        return interpreter.get_signature_runner(signature if signature in names else
                                                next(iter(names)))
    raise KtransferError(f"--tflite: the converted model does not run: {first_line(failed)}")


def predictor(content: bytes, signature: str, key: str = "probabilities") -> Predictor:
    """A function of model inputs to the copy's output `key` ("": all, by name); a copy that
    takes one example per call is run on each in turn."""
    runner = _runner(content, signature)
    details = runner.get_input_details()
    dtypes = {name: d["dtype"] for name, d in details.items()}
    one = all(d["shape_signature"][0] == 1 for d in details.values())  # one image a call

    def run(x: Any) -> Any:
        inputs = named(x, dtypes)
        if not one:
            found = runner(**inputs)
        else:
            rows = [runner(**{k: v[i:i + 1] for k, v in inputs.items()})
                    for i in range(len(next(iter(inputs.values()))))]
            found = {k: np.concatenate([row[k] for row in rows]) for k in rows[0]}
        return found if not key else found[key]

    return run


FORMAT = ExportFormat(
    filename="model.tflite",
    wanted=lambda cfg: cfg.tflite != "none" or "tflite" in cfg.formats,
    convert=convert,
    predictor=predictor,
)
