"""A toy export format, added the way docs/extending.md says: this module (an `ExportFormat`
that copies the model as a `.keras` file and reads it back with Keras) plus one line in
`FORMATS` (`register()`). `export --formats=keras_copy` then converts, checks and reports it."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import keras

from ktransfer.deploy.catalog import FORMATS
from ktransfer.deploy.conversion import ExportFormat


def convert(folder: Any, model: keras.Model, signature: str, cfg: Any, data: Any,
            key: str) -> tuple[bytes, dict[str, Any]]:
    """The model's `.keras` bytes, and a fact for conversions.json."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "copy.keras"
        model.save(path)
        return path.read_bytes(), {"kind": "keras_copy"}


def predictor(content: bytes, signature: str, key: str = "probabilities") -> Any:
    """Pixels -> the copy's output, read back from its bytes with Keras."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "read.keras"
        path.write_bytes(content)
        return keras.saving.load_model(path).predict


FORMAT = ExportFormat("model.copy.keras", lambda cfg: "keras_copy" in cfg.formats, convert,
                      predictor)


def register() -> None:
    """The one registration."""
    FORMATS.register("keras_copy", "plugins.keras_copy:FORMAT", "the model again, as .keras")


def unregister() -> None:
    """Takes it back, so that other tests see the shipped formats only."""
    FORMATS.unregister("keras_copy")
