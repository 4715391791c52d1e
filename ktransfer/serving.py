"""SavedModel export for TF Serving: numbered versions written atomically, two signatures,
labels, a `models.config`, optional TFLite.

`serving_default` takes encoded images (JPEG/PNG/BMP/GIF bytes; TF Serving's REST API turns
`{"image_bytes": {"b64": "..."}}` into such bytes because the input name ends in `_bytes`) and
`predict_pixels` takes float RGB pixels [B, S, S, 3] in [0, 255]. Both return `probabilities`
[B, classes], `top_k_ids` [B, k], `top_k_scores` [B, k] and `top_k_names` [B, k] (strings).
Decoding and resizing run inside the graph exactly as in training (`data.pipeline.resize`).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import keras
import tensorflow as tf

from ktransfer import atomic
from ktransfer.data.pipeline import resize
from ktransfer.errors import KtransferError

TMP_PREFIX = ".tmp-"


def classifier_shape(model: keras.Model, flag: str = "model") -> tuple[int, int]:
    """(input size S, number of classes) of a ktransfer classifier: [B, S, S, 3] -> [B, C].

    Raises KtransferError for a model without a classification head (e.g. a bare backbone).
    """
    in_shape, out_shape = tuple(model.input_shape), tuple(model.output_shape)
    if len(in_shape) != 4 or in_shape[3] != 3 or in_shape[1] is None or in_shape[1] != in_shape[2]:
        raise KtransferError(f"--{flag}: {model.name} takes inputs {in_shape}; a ktransfer "
                             "classifier takes square RGB images [B, S, S, 3]")
    if len(out_shape) != 2 or not out_shape[1] or out_shape[1] < 2:
        raise KtransferError(f"--{flag}: {model.name} has no classification head (its output "
                             f"is {out_shape}, not [batch, classes]); give a model trained by "
                             "ktransfer.train")
    return int(in_shape[1]), int(out_shape[1])


def _outputs(probabilities: tf.Tensor, names: tf.Tensor, top_k: int) -> dict[str, tf.Tensor]:
    scores, ids = tf.math.top_k(probabilities, k=top_k)
    return {"probabilities": probabilities, "top_k_ids": ids, "top_k_scores": scores,
            "top_k_names": tf.gather(names, ids)}


def build_archive(model: keras.Model, class_names: list[str], top_k: int = 5
                  ) -> keras.export.ExportArchive:
    """An ExportArchive of `model` with the `serving_default` (bytes) and `predict_pixels`
    signatures."""
    size, num_classes = classifier_shape(model)
    if len(class_names) != num_classes:
        raise KtransferError(f"--model: the model has {num_classes} outputs but "
                             f"{len(class_names)} class names (labels.txt)")
    k = max(1, min(top_k, num_classes))
    names = tf.constant(list(class_names))

    def decode(data: tf.Tensor) -> tf.Tensor:
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        return resize(tf.ensure_shape(image, [None, None, 3]), size)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_bytes(image_bytes):
        pixels = tf.map_fn(decode, image_bytes, fn_output_signature=tf.TensorSpec(
            [size, size, 3], tf.float32))
        return _outputs(tf.cast(model(pixels, training=False), tf.float32), names, k)

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32,
                                                 name="pixels")])
    def serve_pixels(pixels):
        return _outputs(tf.cast(model(pixels, training=False), tf.float32), names, k)

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", serve_bytes)
    archive.add_endpoint("predict_pixels", serve_pixels)
    return archive


def versions(base: Path) -> list[int]:
    """The numbered version folders under `base`, ascending."""
    if not base.is_dir():
        return []
    return sorted(int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit())


def models_config(entries: dict[str, str]) -> str:
    """TF Serving's model config file (text protobuf) for {model name: absolute base path}."""
    body = "".join(f'  config {{\n    name: "{name}"\n    base_path: "{path}"\n'
                   f'    model_platform: "tensorflow"\n  }}\n' for name, path in entries.items())
    return f"model_config_list {{\n{body}}}\n"


def _read_models_config(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    text = path.read_text()
    pairs = re.findall(r'name:\s*"([^"]+)"\s*base_path:\s*"([^"]+)"', text)
    return dict(pairs)


def export(model: keras.Model, class_names: list[str], export_dir: str | os.PathLike,
           version: int = 0, top_k: int = 5, tflite: bool = False) -> Path:
    """Writes `export_dir/VERSION` (next free number when `version` is 0) and returns it.

    The SavedModel is written to a hidden temporary folder next to it and renamed at the end,
    so a server watching `export_dir` (TF Serving polls for numeric folders) never sees a
    partial model; an interrupted export leaves no version folder. Also writes
    `VERSION/labels.txt`, `VERSION/model.tflite` (with `tflite`) and adds the model to
    `export_dir/../models.config`.
    """
    base = Path(export_dir).resolve()
    if not base.name or not re.fullmatch(r"[A-Za-z0-9_.-]+", base.name):
        raise KtransferError(f"--export_dir: {export_dir!r} must end in a model name made of "
                             "letters, digits, '_', '.' or '-' (e.g. exports/digits)")
    if base.exists() and not base.is_dir():
        raise KtransferError(f"--export_dir: {base} exists and is not a folder")
    existing = versions(base)
    if version and version in existing:
        raise KtransferError(f"--version: {base / str(version)} already exists; versions are "
                             "never overwritten (omit --version for the next free one)")
    number = version or (existing[-1] + 1 if existing else 1)
    archive = build_archive(model, class_names, top_k)
    base.mkdir(parents=True, exist_ok=True)
    for stale in base.glob(f"{TMP_PREFIX}*"):  # left by an export that was killed
        shutil.rmtree(stale, ignore_errors=True)
    tmp = base / f"{TMP_PREFIX}{number}-{os.getpid()}"
    try:
        archive.write_out(str(tmp), verbose=False)
        (tmp / "labels.txt").write_text("\n".join(class_names) + "\n")
        if tflite:
            (tmp / "model.tflite").write_bytes(_tflite_bytes(str(tmp)))
        final = base / str(number)
        os.rename(tmp, final)  # atomic on one file system; fails if `final` appeared meanwhile
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    config_path = base.parent / "models.config"
    entries = {**_read_models_config(config_path), base.name: str(base)}
    atomic.write_text(config_path, models_config(entries))
    return final


def _tflite_bytes(saved_model_dir: str) -> bytes:
    """A float TFLite model of the `predict_pixels` signature."""
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir,
                                                         signature_keys=["predict_pixels"])
    return converter.convert()
