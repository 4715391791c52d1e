"""`export --tflite=KIND --tflite_metadata`: the TFLite copy of an image classifier as MediaPipe
Tasks and the TFLite Task Library read it: one input (`pixels`, float32 RGB [1, S, S, 3] in
[0, 255]), one output (the probabilities [1, C]), and TFLite metadata naming the input's
normalisation (mean 0, std 1: the network scales the pixels itself) and the labels
(`labels.txt`, packed into the file).

The metadata is written and read by MediaPipe's own tools (`image_classifier.MetadataWriter`,
`MetadataDisplayer`; the `tflite-metadata` extra, mediapipe 1.2.3). That release's metadata
module still imports `mediapipe.tasks.cc.metadata.python._pywrap_metadata_version`, which its
wheel no longer ships; it asks that module for one thing, the lowest metadata parser version
that reads the file, and `_parser_version` answers it for what this writer puts in (1.0.0:
image properties, normalisation, statistics, a label file), refusing anything else.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from ktransfer.errors import KtransferError

MEDIAPIPE_VERSION_MODULE = "mediapipe.tasks.cc.metadata.python._pywrap_metadata_version"
# What the image classifier and object detector writers put in that metadata parser 1.0.0
# reads, and the fields they add that need a later parser (MediaPipe's metadata_version.cc).
KNOWN = {"name", "description", "subgraph_metadata", "input_tensor_metadata",
         "output_tensor_metadata", "content", "content_properties_type", "content_properties",
         "color_space", "process_units", "options_type", "options", "mean", "std", "stats",
         "max", "min", "associated_files", "type", "min_parser_version", "index", "range"}
LATER = {"output_tensor_groups": (1, 2, 0), "tensor_names": (1, 2, 0)}


def _keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


def _parser_version(metadata_buffer: bytes) -> str:
    """The lowest metadata parser version that reads `metadata_buffer` (what MediaPipe's
    missing compiled module computes), for the fields this writer uses."""
    from mediapipe.tasks.python.metadata import metadata

    keys = _keys(json.loads(metadata.convert_to_json(bytes(metadata_buffer))))
    unknown = keys - KNOWN - set(LATER)
    if unknown:
        raise KtransferError(f"--tflite_metadata: cannot tell the metadata parser version of "
                             f"fields {sorted(unknown)}")
    return ".".join(map(str, max([(1, 0, 0), *(LATER[k] for k in keys & set(LATER))])))


def _writers() -> tuple[Any, Any, Any]:
    """MediaPipe's (image_classifier, metadata_writer, metadata) modules (with the version
    module its metadata module imports)."""
    if MEDIAPIPE_VERSION_MODULE not in sys.modules:
        shim = types.ModuleType(MEDIAPIPE_VERSION_MODULE)
        shim.GetMinimumMetadataParserVersion = _parser_version  # type: ignore[attr-defined]
        parts = MEDIAPIPE_VERSION_MODULE.split(".")
        for depth in range(3, len(parts)):
            sys.modules.setdefault(".".join(parts[:depth]),
                                   types.ModuleType(".".join(parts[:depth])))
        sys.modules[MEDIAPIPE_VERSION_MODULE] = shim
    from mediapipe.tasks.python.metadata import metadata
    from mediapipe.tasks.python.metadata.metadata_writers import image_classifier, metadata_writer

    return image_classifier, metadata_writer, metadata


def check(model: keras.Model, key: str) -> None:
    """`model` is an image classifier (pixels in, class probabilities `key` out), the kind
    this metadata describes; before any export work."""
    if isinstance(model.input, dict) or key != "probabilities":
        raise KtransferError("--tflite_metadata: describes an image classifier (pixels in, "
                             "class probabilities out); leave it off for this model")


def one_output_model(model: keras.Model, key: str, folder: Path) -> None:
    """Writes a SavedModel of `model` with one signature, `serving_default`: `pixels` in,
    `key` out (what the converter turns into a one-input, one-output TFLite file)."""
    check(model, key)
    size = int(model.input_shape[1])
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serving_default", lambda pixels: {key: model(pixels, training=False)},
        input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="pixels")])
    archive.write_out(str(folder), verbose=False)


def all_outputs_model(model: keras.Model, folder: Path) -> None:
    """Writes a SavedModel of `model` with one signature, `serving_default`: `pixels` [1, S, S,
    3] in, every output of the model by its name out (one image per call, as MediaPipe runs
    a model and TFLite's detection post-processing takes)."""
    size = int(model.input_shape[1])
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serving_default", lambda pixels: model(pixels, training=False),
        input_signature=[tf.TensorSpec([1, size, size, 3], tf.float32, name="pixels")])
    archive.write_out(str(folder), verbose=False)


# The four outputs of MediaPipe's ObjectDetector, in the order it reads them.
DETECTOR_OUTPUTS = ("detection_boxes", "detection_classes", "detection_scores",
                    "num_detections")


def with_metadata_for(content: bytes, model: keras.Model, labels: list[str]
                      ) -> tuple[bytes, str]:
    """`content` with the metadata of MediaPipe's task for the model's outputs (its object
    detector's, for the four detection outputs), and what was written."""
    if tuple(sorted(model.output)) != DETECTOR_OUTPUTS:
        raise KtransferError(f"--tflite_metadata: MediaPipe has no task for the outputs "
                             f"{sorted(model.output)}; leave the flag off")
    _, metadata_writer, _ = _writers()
    from mediapipe.tasks.python.metadata.metadata_writers import object_detector

    writer = object_detector.MetadataWriter.create_for_models_with_nms(
        bytearray(content), input_norm_mean=[0.0], input_norm_std=[1.0],
        labels=metadata_writer.Labels().add(labels))
    written, _ = writer.populate()
    del writer  # as in `with_metadata`
    return bytes(written), ("MediaPipe object detector (labels.txt packed in; normalisation "
                            "mean 0, std 1; boxes after non-max suppression)")


def with_metadata(content: bytes, labels: list[str]) -> bytes:
    """`content` (a one-input, one-output image classifier) with MediaPipe's image classifier
    metadata: pixels in [0, 255] as they are (mean 0, std 1) and the label file."""
    image_classifier, metadata_writer, _ = _writers()
    writer = image_classifier.MetadataWriter.create(
        bytearray(content), input_norm_mean=[0.0], input_norm_std=[1.0],
        labels=metadata_writer.Labels().add(labels))
    model, _ = writer.populate()
    del writer  # its temporary folder goes now, not at interpreter exit (a noisy __del__)
    return bytes(model)


def read_metadata(content: bytes) -> dict[str, Any]:
    """{"metadata": the metadata as JSON (MediaPipe's displayer), "labels": the packed label
    file's lines} of a TFLite file."""
    _, _, metadata = _writers()
    shown = metadata.MetadataDisplayer.with_model_buffer(bytearray(content))
    labels = shown.get_associated_file_buffer("labels.txt").decode().splitlines()
    return {"metadata": json.loads(shown.get_metadata_json()), "labels": labels}
