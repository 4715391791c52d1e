"""TFLite and ONNX copies of an exported classifier, each checked against the Keras model.

Both convert the pixels model (image classifiers: float32 RGB [B, S, S, 3] in [0, 255] in;
decoding image bytes is not an op either format has). TFLite converts the SavedModel's
`predict_pixels` signature (all four outputs); ONNX (tf2onnx, opset 17) the model with one
output, `probabilities`. Every converted file is scored on the run's test split next to the
Keras model, and the figures go to VERSION/conversions.json; a drop larger than
`--max_accuracy_drop` fails the export (nothing is published) or, with
`--on_accuracy_drop=warn`, is written there and logged loudly.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ktransfer.config import ExportConfig, read_run_flags
from ktransfer.data.examples import Examples
from ktransfer.deploy.saving import Classifier
from ktransfer.errors import KtransferError, first_line
from ktransfer.modality import Feed
from ktransfer.registry import Registry

log = logging.getLogger(__name__)
ONNX_OPSET = 17
CALIBRATION_EXAMPLES = 200
REPORT = "conversions.json"


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


@dataclass
class CheckData:
    """Labelled examples to score conversions on (`test`), examples to calibrate int8 with
    (`calibration`), and the input pipeline that turns them into model inputs."""

    feed: Feed
    test: Examples | None
    calibration: Examples | None

    def batches(self, examples: Examples, batch_size: int = 32) -> Iterator[np.ndarray]:
        for x in self.feed.inputs(examples, batch_size).as_numpy_iterator():
            yield np.asarray(x, dtype=np.float32)


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

        def representative() -> Iterator[list[np.ndarray]]:
            for batch in data.batches(calibration, 1):
                yield [batch]

        converter.representative_dataset = representative
    try:
        return converter.convert()
    except Exception as exc:  # the converter's errors are pages long
        raise KtransferError(f"--tflite={kind}: the converter failed: "
                             f"{first_line(exc)[:200]}") from None


def onnx_bytes(model: keras.Model) -> bytes:
    """An ONNX model (opset 17) of `model`: `pixels` in, `probabilities` out."""
    size = int(model.input_shape[1])

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32,
                                                 name="pixels")])
    def probabilities(pixels):
        return {"probabilities": model(pixels, training=False)}

    import tf2onnx  # only here: 0.15 s of every command's start-up otherwise

    try:
        proto, _ = tf2onnx.convert.from_function(probabilities, opset=ONNX_OPSET,
                                                 input_signature=probabilities.input_signature)
    except Exception as exc:
        raise KtransferError(f"--onnx: tf2onnx cannot convert this model: "
                             f"{first_line(exc)[:200]}") from None
    return proto.SerializeToString()


def _accuracy(predict: Callable[[np.ndarray], np.ndarray], data: CheckData) -> float:
    assert data.test is not None
    probabilities = np.concatenate([predict(x) for x in data.batches(data.test)])
    return float(np.mean(probabilities.argmax(axis=1) == data.test.labels))


def _tflite_predict(content: bytes, signature: str) -> Callable[[np.ndarray], np.ndarray]:
    runner = tf.lite.Interpreter(model_content=content).get_signature_runner(signature)
    return lambda x: runner(pixels=x)["probabilities"]


def _onnx_predict(content: bytes) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime  # only here, as tf2onnx above

    session = onnxruntime.InferenceSession(content, providers=["CPUExecutionProvider"])
    return lambda x: session.run(["probabilities"], {"pixels": x})[0]


def _check(name: str, accuracy: float, reference: float, cfg: ExportConfig) -> dict[str, Any]:
    """The figures of one conversion; a drop beyond --max_accuracy_drop fails or warns."""
    drop = reference - accuracy
    entry = {"accuracy": accuracy, "drop": drop, "within_limit": drop <= cfg.max_accuracy_drop}
    if drop > cfg.max_accuracy_drop:
        message = (f"the {name} model scores {accuracy:.4f} on the test split, "
                   f"{drop:.4f} below the Keras model's {reference:.4f} (limit "
                   f"--max_accuracy_drop={cfg.max_accuracy_drop})")
        if cfg.on_accuracy_drop == "fail":
            raise KtransferError(f"--max_accuracy_drop: {message}; nothing was exported (pass "
                                 "--on_accuracy_drop=warn to export it anyway)")
        log.warning("WARNING: %s; exported anyway (--on_accuracy_drop=warn)", message)
    return entry


Conversion = tuple[str, str, bytes, Callable[[np.ndarray], np.ndarray], dict[str, Any]]


def _conversions(folder: Path, model: keras.Model, signature: str, cfg: ExportConfig,
                 data: CheckData | None) -> list[Conversion]:
    """(name, file name, content, predict function, facts) of each copy `cfg` asks for."""
    out: list[Conversion] = []
    if cfg.tflite != "none":
        content = tflite_bytes(folder, signature, cfg.tflite, data)
        out.append(("tflite", "model.tflite", content, _tflite_predict(content, signature),
                    {"type": cfg.tflite, "signature": signature}))
    if cfg.onnx:
        content = onnx_bytes(model)
        out.append(("onnx", "model.onnx", content, _onnx_predict(content),
                    {"opset": ONNX_OPSET, "inputs": ["pixels"], "outputs": ["probabilities"]}))
    return out


def convert(folder: Path, model: keras.Model, signature: str, cfg: ExportConfig,
            data: CheckData | None) -> dict[str, Any]:
    """Writes FOLDER/model.tflite and/or model.onnx as `cfg` asks, scores them (and the Keras
    model) on `data.test`, writes FOLDER/conversions.json and returns its content."""
    checked = data if data is not None and data.test is not None else None
    report: dict[str, Any] = {"test_examples": len(checked.test) if checked and checked.test
                              else 0}
    reference = 0.0
    if checked is not None:
        reference = _accuracy(lambda x: model.predict(x, verbose=0), checked)
        report["keras"] = {"accuracy": reference}
    for name, filename, content, predict, about in _conversions(folder, model, signature, cfg,
                                                                data):
        entry = {"file": filename, "bytes": len(content), **about}
        if checked is not None:
            entry |= _check(name, _accuracy(predict, checked), reference, cfg)
        (folder / filename).write_bytes(content)
        report[name] = entry
    if checked is None:
        report["note"] = "not checked: no labelled test data (export from a run directory)"
    (folder / REPORT).write_text(json.dumps(report, indent=2) + "\n")
    return report


def check_data(clf: Classifier) -> CheckData | None:
    """The run's test split (its validation split when there is none) and up to 200 training
    examples for calibration; None for a bare .keras file."""
    if clf.run_dir is None:
        return None
    splits = clf.modality.load_splits(read_run_flags(Path(clf.run_dir) / "flags.cfg"))
    test = (splits.test if splits.test is not None else splits.val).align(clf.class_names)
    rng = np.random.default_rng(0)
    pick = rng.permutation(len(splits.train))[:CALIBRATION_EXAMPLES]
    return CheckData(clf.feed, test, splits.train.subset(np.sort(pick)))
