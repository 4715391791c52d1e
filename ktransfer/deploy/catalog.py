"""The export registries, importable without TensorFlow: `--formats` (copies beside the
SavedModel, one module each under `deploy/formats/`) and `--tflite` conversions."""

from __future__ import annotations

from ktransfer.registry import Registry

# name -> ExportFormat (how to convert, check and run one copy)
FORMATS: Registry = Registry("export format", "formats", {
    "tflite": "ktransfer.deploy.formats.tflite:FORMAT",
    "onnx": "ktransfer.deploy.formats.onnx:FORMAT",
})

# --tflite: name -> how to configure tf.lite.TFLiteConverter
TFLITE: Registry = Registry("TFLite conversion", "tflite", {
    kind: f"ktransfer.deploy.formats.tflite:{kind}_conversion"
    for kind in ("float32", "float16", "dynamic", "int8")})
