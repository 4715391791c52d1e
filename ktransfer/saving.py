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


def load_classifier(path: str | os.PathLike, *, unsafe: bool = False, flag: str = "model"
                    ) -> tuple[keras.Model, list[str], str | None]:
    """(model, class names, run directory or None) from a run directory or a `.keras` file.

    Class names come from `labels.txt` in the run directory or beside the file.
    """
    path = os.fspath(path)
    run_dir = None
    if os.path.isdir(path):
        run_dir, path = path, os.path.join(path, "model.keras")
        if not os.path.isfile(path):
            raise KtransferError(f"--{flag}: {run_dir!r} has no model.keras; give a finished "
                                 "run directory or a .keras file")
    model = load_model(path, unsafe=unsafe, flag=flag, compile=False)
    labels = os.path.join(os.path.dirname(os.path.abspath(path)), "labels.txt")
    if os.path.isfile(labels):
        names = [line.strip() for line in open(labels, encoding="utf-8") if line.strip()]
    else:
        count = model.output_shape[-1] if len(model.output_shape) == 2 else 0
        names = [str(i) for i in range(count or 0)]
    if run_dir is None and os.path.isfile(os.path.join(os.path.dirname(os.path.abspath(path)),
                                                       "flags.cfg")):
        run_dir = os.path.dirname(os.path.abspath(path))
    return model, names, run_dir
