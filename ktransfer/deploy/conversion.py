"""Copies of an exported classifier in other formats (`FORMATS`: TFLite, ONNX, ...), each
checked against the Keras model.

A format converts the model from tensors (decoding image bytes and tokenising strings are not
ops these formats have): image classifiers take `pixels`, float32 RGB [B, S, S, 3] in
[0, 255]; text classifiers the tokenizer's outputs by name (`token_ids`, `padding_mask`, ...
[B, L]; the tokenizer is shipped beside them, in VERSION/preprocessor/). Each converts the
modality's tensor signature of the SavedModel (`predict_pixels`, `predict_tokens`) or the Keras
model itself; a task with a `Copies` part (detection) has its copies converted from the model
with the outputs that part names (`copy_model`: boxes after non-max suppression), scored by
that part. Every converted file is scored on the run's test split next
to the Keras model, and the figures go to VERSION/conversions.json; a drop larger than
`--max_accuracy_drop` fails the export (nothing is published) or, with
`--on_accuracy_drop=warn`, is written there and logged loudly. A new format is a module with an
`ExportFormat` and one line in `FORMATS` (see docs/extending.md).
"""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ktransfer.config import ExportConfig
from ktransfer.data.examples import Examples
from ktransfer.deploy.catalog import FORMATS
from ktransfer.deploy.saving import Classifier, run_config
from ktransfer.errors import KtransferError
from ktransfer.modality import Feed
from ktransfer.tasks import default_task
from ktransfer.tasks.copies import Copies

log = logging.getLogger(__name__)
PIXELS = "pixels"
CALIBRATION_EXAMPLES = 200
REPORT = "conversions.json"
# a batch of model inputs -> the task's output (or a task's copy outputs, by name)
Predictor = Callable[[Any], Any]


@dataclass
class ExportFormat:
    """One kind of copy written beside the SavedModel.

    Args:
        filename: its file in the version folder (e.g. "model.tflite").
        wanted: whether an `ExportConfig` asks for it (its own flag, or `--formats`).
        convert: (SavedModel folder, Keras model, signature, cfg, check data, output key)
            -> (the file's bytes, facts for conversions.json); raises KtransferError naming
            its flag. The output key is the task's `output_key` ("probabilities", "value"),
            what the copy's output is named.
        predictor: (the file's bytes, signature, output key) -> a `Predictor` of that
            output (the task's `output_key`: "probabilities", "value"), for the accuracy
            check.
        requires: the Python modules it needs beyond ktransfer's own dependencies, and the
            extra that installs them (`pip install 'ktransfer[EXTRA]'`).
    """

    filename: str
    wanted: Callable[[ExportConfig], bool]
    convert: Callable[..., tuple[bytes, dict[str, Any]]]
    predictor: Callable[[bytes, str, str], Predictor]
    requires: tuple[str, ...] = ()
    extra: str = ""




def wanted(cfg: ExportConfig) -> list[str]:
    """The formats `cfg` asks for, in registration order."""
    return [name for name, fmt in FORMATS.items() if fmt.wanted(cfg)]


def check_installed(cfg: ExportConfig) -> None:
    """Before any work: each wanted format's optional modules are installed (KtransferError
    naming the format's flag and the extra to install)."""
    for name in wanted(cfg):
        fmt = FORMATS.get(name)
        missing = [m for m in fmt.requires if importlib.util.find_spec(m) is None]
        if missing:
            raise KtransferError(f"--{name}: needs {', '.join(missing)}, which is not "
                                 f"installed: pip install 'ktransfer[{fmt.extra}]'")


@dataclass
class CheckData:
    """Labelled examples to score conversions on (`test`), examples to calibrate int8 with
    (`calibration`), and the input pipeline that turns them into model inputs."""

    feed: Feed
    test: Examples | None
    calibration: Examples | None
    state: dict[str, Any] = field(default_factory=dict)  # the task's (e.g. thresholds)

    def batches(self, examples: Examples, batch_size: int = 32) -> Iterator[Any]:
        """Model inputs: float32 pixels [B, S, S, 3], or a dict of arrays (token ids)."""
        for x in self.feed.inputs(examples, batch_size).as_numpy_iterator():
            yield x if isinstance(x, dict) else np.asarray(x, dtype=np.float32)


def named(batch: Any, dtypes: dict[str, Any]) -> dict[str, Any]:
    """A batch of model inputs as a copy's named inputs of `dtypes` (name -> numpy dtype):
    token arrays by name (a boolean padding mask as the integers the model declares), or an
    image batch as `pixels`."""
    inputs = batch if isinstance(batch, dict) else {PIXELS: batch}
    return {name: np.asarray(inputs[name], dtype=dtype) for name, dtype in dtypes.items()}


def tensor_specs(model: keras.Model) -> dict[str, tf.TensorSpec]:
    """The copies' inputs, from the Keras model's: each named input (token ids, padding mask,
    ... [B, L]) or the one image input as `pixels` [B, S, S, 3] float32."""
    inputs = model.input if isinstance(model.input, dict) else {PIXELS: model.input}
    return {name: tf.TensorSpec(t.shape, t.dtype, name=name) for name, t in inputs.items()}


def call(model: keras.Model, inputs: dict[str, Any]) -> Any:
    """`model` on the copies' named inputs (`tensor_specs`)."""
    return model(inputs if isinstance(model.input, dict) else inputs[PIXELS], training=False)


def accuracy(predict: Predictor, data: CheckData, copied: CopyOutputs | None = None) -> float:
    """The task's headline metric (single-label: accuracy) of `predict` on the test split; of
    a task's copy outputs, as its `Copies` part scores them."""
    assert data.test is not None
    if copied is not None:
        parts = [predict(x) for x in data.batches(data.test)]
        found = {key: np.concatenate([np.asarray(p[key]) for p in parts]) for key in parts[0]}
        return copied.copies.quality(found, data.test.labels, data.state, copied.classes,
                                     copied.size)
    outputs = np.concatenate([_rows(predict(x), _size(x)) for x in data.batches(data.test)])
    return (data.feed.task or default_task()).quality(outputs, data.test.labels, data.state)


@dataclass(frozen=True)
class CopyOutputs:
    """A task's `Copies` part for one model: its class count, state and input side (pixels;
    0 for other inputs)."""

    copies: Copies
    classes: int
    state: dict[str, Any]
    size: int

    def model(self, model: keras.Model, runtime: str) -> keras.Model:
        """`model` with the part's outputs for `runtime` (a format's name), by name."""
        head = _CopyHead(self, runtime, name=f"{runtime}_outputs")
        return keras.Model(model.input, head(model.output))


class _CopyHead(keras.layers.Layer):
    """The task's copy outputs on the model's output (Keras infers their shapes by tracing)."""

    def __init__(self, copied: CopyOutputs, runtime: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.copied, self.runtime = copied, runtime

    def call(self, outputs: Any) -> Any:
        found = self.copied
        return found.copies.outputs(outputs, found.classes, found.state, self.runtime)


def _rows(outputs: Any, size: int) -> np.ndarray:
    """Outputs as [size, ...]: a copy's [size] or flat outputs as rows; a detector's [size, A,
    W] kept as it is."""
    outputs = np.asarray(outputs)
    return outputs if outputs.ndim > 2 else np.reshape(outputs, (size, -1))


def _size(batch: Any) -> int:
    return len(next(iter(batch.values())) if isinstance(batch, dict) else batch)


def check(name: str, score: float, reference: float, cfg: ExportConfig) -> dict[str, Any]:
    """The figures of one conversion; a drop beyond --max_accuracy_drop fails or warns."""
    drop = reference - score
    entry = {"accuracy": score, "drop": drop, "within_limit": drop <= cfg.max_accuracy_drop}
    if drop > cfg.max_accuracy_drop:
        message = (f"the {name} model scores {score:.4f} on the test split, "
                   f"{drop:.4f} below the Keras model's {reference:.4f} (limit "
                   f"--max_accuracy_drop={cfg.max_accuracy_drop})")
        if cfg.on_accuracy_drop == "fail":
            raise KtransferError(f"--max_accuracy_drop: {message}; nothing was exported (pass "
                                 "--on_accuracy_drop=warn to export it anyway)")
        log.warning("WARNING: %s; exported anyway (--on_accuracy_drop=warn)", message)
    return entry


def convert(folder: Path, model: keras.Model, signature: str, cfg: ExportConfig,
            data: CheckData | None, key: str = "probabilities",
            copied: CopyOutputs | None = None) -> dict[str, Any]:
    """Writes the copies `cfg` asks for (FOLDER/model.tflite, model.onnx, ...), scores them
    (and the Keras model) on `data.test`, writes FOLDER/conversions.json and returns its
    content. With `copied`, each format converts the model with the task's copy outputs
    (signature "", key "": every output, by name)."""
    checked = data if data is not None and data.test is not None else None
    report: dict[str, Any] = {"test_examples": len(checked.test) if checked and checked.test
                              else 0}
    reference = 0.0
    if checked is not None:
        reference = accuracy(lambda x: model.predict(x, verbose=0), checked)
        report["keras"] = {"accuracy": reference}
    for name in wanted(cfg):
        fmt = FORMATS.get(name)
        source, used, out = ((model, signature, key) if copied is None else
                             (copied.model(model, name), "", ""))
        content, about = fmt.convert(folder, source, used, cfg, data, out)
        entry = {"file": fmt.filename, "bytes": len(content), **about}
        if checked is not None:
            predict = fmt.predictor(content, used, out)
            entry |= check(name, accuracy(predict, checked, copied), reference, cfg)
        (folder / fmt.filename).write_bytes(content)
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
    splits = clf.modality.load_splits(run_config(clf.run_dir))
    test = (splits.test if splits.test is not None else splits.val).align(clf.class_names,
                                                                          clf.task)
    rng = np.random.default_rng(0)
    pick = rng.permutation(len(splits.train))[:CALIBRATION_EXAMPLES]
    return CheckData(clf.feed, test, splits.train.subset(np.sort(pick)), clf.state)
