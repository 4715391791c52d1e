"""Loading models written by ktransfer: registers its custom objects, Keras safe mode by default."""

from __future__ import annotations

import os
import zipfile

import keras

# Imported for their registered serializable classes (Preprocess, HubBackbone, Warmup, ...).
from ktransfer import backbones, hub, optimizers, schedules  # noqa: F401
from ktransfer.errors import KtransferError


def load_model(path: str | os.PathLike, *, unsafe: bool = False, flag: str = "model",
               compile: bool = True) -> keras.Model:
    """Loads a `.keras` model. Safe mode (no code from the file runs) unless `unsafe`."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise KtransferError(f"--{flag}: file {path!r} does not exist")
    if not zipfile.is_zipfile(path):
        raise KtransferError(f"--{flag}: {path!r} is not a .keras model file (not a zip archive)")
    try:
        return keras.saving.load_model(path, safe_mode=not unsafe, compile=compile)
    except ValueError as exc:
        if "safe_mode" in str(exc) or "Lambda" in str(exc):
            raise KtransferError(f"--{flag}: {path!r} contains code (a Lambda layer); load it "
                                 "only if you trust it, with --unsafe_load") from None
        raise
