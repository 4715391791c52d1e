"""`export --quantize`: Keras' own post-training quantisation of the served model
(`Model.quantize`), checked against the float32 model on the run's test split.

int8 and int4 store the kernels of Dense, EinsumDense and Embedding layers as 8- or 4-bit
integers with a float scale per output channel; activations stay float. Convolutions are not
among them (Keras 3.15): a convnet's export shrinks by its head alone, which the log and
quantization.json say (`quantized_share`); `--tflite=int8` is the way to a small convnet.
float8 is Keras' FP8 *training* mode: it keeps float32 kernels and adds scaling state (larger,
not smaller), for GPUs with FP8 units. docs/guides/export.md has measured sizes and latencies.
"""

from __future__ import annotations

import logging
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ktransfer.deploy import conversion
from ktransfer.errors import KtransferError

log = logging.getLogger(__name__)
REPORT = "quantization.json"
LATENCY_CALLS = 30


def copy_model(model: keras.Model) -> keras.Model:
    """An independent copy of `model` (same architecture, its weights copied)."""
    twin = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model))
    twin.set_weights(model.get_weights())
    return twin


def quantized(model: keras.Model, mode: str) -> keras.Model:
    """A copy of `model` with every layer Keras can quantize in `mode` quantized (the others,
    e.g. normalisation and depthwise convolutions, as they were)."""
    twin = copy_model(model)
    with warnings.catch_warnings():  # one per layer without a quantized form
        warnings.filterwarnings("ignore", message=".*does not have a `quantize` method")
        warnings.filterwarnings("ignore", message=".*Invalid quantization mode")
        twin.quantize(mode)
    if not any(getattr(layer, "quantization_mode", None) == mode
               for layer in twin._flatten_layers()):
        raise KtransferError(f"--quantize={mode}: no layer of this model can be quantized "
                             f"to {mode} by Keras")
    return twin


def quantized_share(model: keras.Model) -> float:
    """The share of the weights (by count, scales left out) in the layers that were
    quantized."""
    def count(variables: list[keras.Variable]) -> int:
        return sum(int(np.prod(v.shape)) for v in variables
                   if "scale" not in v.name and "amax" not in v.name)
    done = [v for layer in model._flatten_layers(include_self=False)
            if getattr(layer, "quantization_mode", None) for v in layer.weights]
    return count(done) / max(count(model.weights), 1)


def weight_bytes(model: keras.Model) -> int:
    """Bytes of the model's weights as stored (int8 kernels count one byte each)."""
    return sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in model.weights)


def latency_ms(model: keras.Model, example: Any) -> float:
    """Median milliseconds of one forward pass of one example (a traced function, after
    three warm-up calls), on this machine's CPU."""
    call = tf.function(lambda x: model(x, training=False))
    for _ in range(3):
        call(example)
    times = []
    for _ in range(LATENCY_CALLS):
        start = time.perf_counter()
        call(example)
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def _first(data: conversion.CheckData) -> Any:
    assert data.test is not None
    batch = next(data.batches(data.test, batch_size=1))
    return tf.nest.map_structure(tf.constant, batch)


def quantize(model: keras.Model, mode: str, cfg: Any, data: conversion.CheckData | None
             ) -> tuple[keras.Model, dict[str, Any]]:
    """(the quantized model, its report): weight bytes and CPU latency per example of both
    models, and the test-split accuracy with `--max_accuracy_drop`'s check (which raises on
    a larger drop unless `--on_accuracy_drop=warn`)."""
    small = quantized(model, mode)
    report: dict[str, Any] = {"mode": mode, "float32_weight_bytes": weight_bytes(model),
                              "weight_bytes": weight_bytes(small),
                              "quantized_share": quantized_share(small)}
    if report["quantized_share"] < 0.5:
        log.warning("WARNING: --quantize=%s: only %.0f %% of the weights are in layers Keras "
                    "quantizes to %s (Dense and EinsumDense; Embedding for int8 and int4; never "
                    "convolutions); for a convnet, --tflite=int8 quantizes every layer", mode,
                    100 * report["quantized_share"], mode)
    if data is None or data.test is None:
        report["note"] = "not checked: no labelled test data (export from a run directory)"
        return small, report
    example = _first(data)
    report["float32_latency_ms"] = latency_ms(model, example)
    report["latency_ms"] = latency_ms(small, example)
    reference = conversion.accuracy(lambda x: model.predict(x, verbose=0), data)
    report["keras"] = {"accuracy": reference}
    report |= conversion.check(f"--quantize={mode}", conversion.accuracy(
        lambda x: small.predict(x, verbose=0), data), reference, cfg)
    log.info("--quantize=%s: weights %.1f MB -> %.1f MB, %.2f -> %.2f ms per example, test "
             "%.4f -> %.4f", mode, report["float32_weight_bytes"] / 1e6,
             report["weight_bytes"] / 1e6, report["float32_latency_ms"], report["latency_ms"],
             reference, report["accuracy"])
    return small, report


def saved_bytes(folder: Path) -> int:
    """Bytes of a SavedModel's variables (what the quantisation shrinks)."""
    return sum(p.stat().st_size for p in (folder / "variables").glob("*"))
