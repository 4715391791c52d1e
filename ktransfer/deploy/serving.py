"""SavedModel export for TF Serving: numbered versions written atomically, the modality's
signatures, labels, the task's state (`task.json`), a `models.config`, optional TFLite.

Every signature returns the task's outputs (single-label: `probabilities` [B, classes],
`top_k_ids` [B, k], `top_k_scores` [B, k] and `top_k_names` [B, k] (strings); see
`ktransfer.tasks`); the inputs are the modality's (encoded image bytes or pixels; raw text).
Preprocessing runs inside the graph exactly as in training.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras

from ktransfer import preflight
from ktransfer.config import ExportConfig
from ktransfer.deploy import conversion, quantize
from ktransfer.deploy.formats import tflite_metadata
from ktransfer.deploy.saving import open_classifier
from ktransfer.deploy.warmup import write_batching, write_warmup
from ktransfer.errors import DiskFullError, KtransferError
from ktransfer.modality import Answer, Feed, Modality
from ktransfer.runs import atomic
from ktransfer.runs.exportdir import ORIGIN, check_export_dir, versions
from ktransfer.runs.rundir import CARD_FILES
from ktransfer.tasks import default_task
from ktransfer.tasks.task import Task, save_state

TMP_PREFIX = ".tmp-"
WARMUP_EXAMPLES = 8  # real examples in the warm-up requests
log = logging.getLogger(__name__)


def check_classifier(model: keras.Model, class_names: list[str], flag: str = "model",
                     task: Task | None = None) -> int:
    """The width of a trained model's output ([..] -> [B, C]); KtransferError for a model
    without a head (e.g. a bare backbone) or labels that do not match it (`task`: the model's,
    default --task's default)."""
    task = task or default_task()
    out_shape = tuple(model.output_shape)
    if len(out_shape) != task.output_rank or not out_shape[-1]:
        raise KtransferError(f"--{flag}: {model.name} has no head (its output is {out_shape}, "
                             f"not what --task={task.name} gives); give a model trained by "
                             "ktransfer.train")
    if task.output_width(tuple(class_names)) != out_shape[-1]:
        raise KtransferError(f"--{flag}: the model has {out_shape[-1]} outputs but "
                             f"{len(class_names)} class names (labels.txt) for --task="
                             f"{task.name}")
    return int(out_shape[-1])


def answer(feed: Feed, class_names: list[str], top_k: int = 5,
           state: dict[str, Any] | None = None) -> Answer:
    """What every signature returns, from the model's output: the feed's task's outputs
    (single-label: probabilities and the top-k classes)."""
    task = feed.task or default_task()
    return lambda outputs: task.serving(outputs, list(class_names), top_k, state or {})


def build_archive(model: keras.Model, modality: Modality, feed: Feed, class_names: list[str],
                  top_k: int = 5, state: dict[str, Any] | None = None
                  ) -> keras.export.ExportArchive:
    """An ExportArchive of `model` (and what its input pipeline tracks) with the modality's
    signatures, returning the task's outputs."""
    check_classifier(model, class_names, task=feed.task)
    archive = keras.export.ExportArchive()
    archive.track(model)
    for trackable in feed.trackables():
        archive.track(trackable)
    respond = answer(feed, class_names, top_k, state)
    for name, fn in modality.endpoints(model, feed, respond).items():
        archive.add_endpoint(name, fn)
    _share_tracked_variables(archive)
    return archive


def _share_tracked_variables(archive: keras.export.ExportArchive) -> None:
    """Makes the archive save each weight once, not twice.

    `track()` lists the Keras variable wrappers while the endpoints capture the tf.Variables
    inside them; TensorFlow's checkpoint de-duplicates by object, so it wrote every weight
    under both (keras-team/keras#23553: a 91 MB MiniLM exported as 173 MB, and loaded twice by
    TF Serving). Listing the tf.Variables themselves makes the two collections one.
    """
    trackable = archive._tf_trackable
    for name in ("variables", "trainable_variables", "non_trainable_variables"):
        held = getattr(trackable, name, None)
        if held is not None:
            setattr(trackable, name, [v.value if isinstance(v, keras.Variable) else v
                                      for v in held])


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


def export(model: keras.Model, modality: Modality, feed: Feed, class_names: list[str],
           export_dir: str | os.PathLike, version: int = 0, top_k: int = 5,
           extras: Callable[[Path], Any] | None = None,
           origin: dict[str, Any] | None = None, state: dict[str, Any] | None = None,
           copies: tuple[Path, ...] = (), warmup: dict[str, Any] | None = None) -> Path:
    """Writes `export_dir/VERSION` (next free number when `version` is 0) and returns it.

    The SavedModel is written to a hidden temporary folder next to it and renamed at the end,
    so a server watching `export_dir` (TF Serving polls for numeric folders) never sees a
    partial model; an interrupted export leaves no version folder. Exports running at the same
    time each take their own version (the rename fails on a taken one and the next is tried).
    Also writes `VERSION/labels.txt` and `VERSION/task.json` (the task and what it learned,
    e.g. multi-label thresholds, also built into the signatures), calls `extras(folder)` to
    add files (TFLite, ONNX) before
    the version is published, and adds the model to `export_dir/../models.config`, under a
    lock. `origin` (the exporting run) goes to `VERSION/origin.json`; the files `copies` (the
    run's model card) are copied in as they are; `warmup` (serving_default's inputs of a few
    real examples) becomes TF Serving's warm-up requests.
    """
    base = check_export_dir(export_dir, version)
    archive = build_archive(model, modality, feed, class_names, top_k, state)
    base.mkdir(parents=True, exist_ok=True)
    _remove_stale(base)
    tmp = base / f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        archive.write_out(str(tmp), verbose=False)
        (tmp / "labels.txt").write_text("\n".join(class_names) + "\n")
        save_state(tmp, feed.task or default_task(), state or {})
        feed.save(tmp)  # a tokenizer: for clients of the token signature and its copies
        if origin is not None:
            (tmp / ORIGIN).write_text(json.dumps(origin) + "\n")
        for path in copies:
            shutil.copyfile(path, tmp / path.name)
        if warmup:
            write_warmup(tmp, warmup)
        if extras is not None:
            extras(tmp)
        final = _claim_version(tmp, base, version)
    except Exception as exc:
        if atomic.is_disk_full(exc):
            raise DiskFullError(f"--export_dir: the disk holding {base} is full; free some "
                                "space and export again (no version was written)") from None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _register(base)
    return final


def _remove_stale(base: Path) -> None:
    """Removes temporary folders of exports whose process is gone (killed mid-export); those
    of exports still running are left alone."""
    for stale in base.glob(f"{TMP_PREFIX}*"):
        pid = stale.name[len(TMP_PREFIX):].split("-", 1)[0]
        try:
            os.kill(int(pid), 0)
        except (ValueError, ProcessLookupError):
            shutil.rmtree(stale, ignore_errors=True)
        except PermissionError:
            pass  # another user's live process


def _claim_version(tmp: Path, base: Path, version: int) -> Path:
    """Renames `tmp` to `base/VERSION` (atomic on one file system); without a fixed version,
    a number another export took meanwhile is skipped."""
    while True:
        number = version or max(versions(base), default=0) + 1
        final = base / str(number)
        try:
            if final.exists():
                raise FileExistsError(final)
            os.rename(tmp, final)  # fails if `final` appeared meanwhile (ENOTEMPTY)
            return final
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) and \
                    not isinstance(exc, FileExistsError):
                raise
            if version:
                raise KtransferError(f"--version: {final} already exists; versions are never "
                                     "overwritten (omit --version for the next free one)"
                                     ) from None


def _register(base: Path) -> None:
    """Adds `base` to ../models.config, read and rewritten under an exclusive lock so that
    exports of two models at once both stay listed."""
    config_path = base.parent / "models.config"
    with open(base.parent / ".models.config.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        entries = {**_read_models_config(config_path), base.name: str(base)}
        atomic.write_text(config_path, models_config(entries))
        write_batching(base.parent)




def export_saved(cfg: ExportConfig) -> Path:
    """`ktransfer.export`: exports a saved classifier (a run directory or a .keras file), with
    TFLite and ONNX copies checked on the run's test split when asked. Checks the flags first
    (pre-flight)."""
    preflight.check_export(cfg)
    conversion.check_installed(cfg)
    clf = open_classifier(cfg.source, unsafe=cfg.unsafe_load,
                          flag="run_dir" if cfg.run_dir else "model")
    if cfg.tflite_metadata and clf.task.copies is None:
        tflite_metadata.check(clf.model, clf.task.output_key)
    extras: Callable[[Path], Any] | None = None
    formats = conversion.wanted(cfg)
    data = _run_data(clf)
    model = clf.model
    if cfg.quantize != "none":
        model, report = quantize.quantize(clf.model, cfg.quantize, cfg, data)
        extras = functools.partial(_write_quantization, report)
    if formats:
        signature = clf.modality.tflite_signature
        if signature is None:
            flag = formats[0] if formats[0] in ("tflite", "onnx") else "formats"
            raise KtransferError(f"--{flag}: {', '.join(formats)} copies are not available for "
                                 f"{clf.modality.name} models")
        extras = functools.partial(conversion.convert, model=clf.model, signature=signature,
                                   cfg=cfg, data=data, key=clf.task.output_key,
                                   copied=_copied(clf))
    return export(model, clf.modality, clf.feed, clf.class_names, cfg.export_dir,
                  cfg.version, cfg.top_k, extras, state=clf.state,
                  copies=card_files(clf.run_dir), warmup=_warmup(clf, data))


def _copied(clf: Any) -> conversion.CopyOutputs | None:
    """The task's copy outputs for this model, if its task has a `Copies` part."""
    copies = clf.task.copies
    if copies is None:
        return None
    shape = clf.model.input_shape
    size = int(shape[1]) if not isinstance(shape, dict) and len(shape) == 4 else 0
    return conversion.CopyOutputs(copies, len(clf.class_names), clf.state, size)


def _write_quantization(report: dict[str, Any], folder: Path) -> None:
    report = {**report, "saved_variables_bytes": quantize.saved_bytes(folder)}
    (folder / quantize.REPORT).write_text(json.dumps(report, indent=2) + "\n")


def _run_data(clf: Any) -> conversion.CheckData | None:
    """The run's test examples (for the copies' check and the warm-up requests); None for a
    bare .keras file or data that is no longer there (the export goes on without)."""
    try:
        return conversion.check_data(clf)
    except KtransferError as exc:
        log.warning("WARNING: the run's data cannot be read (%s); exporting without warm-up "
                    "requests or checked copies", exc)
        return None


def _warmup(clf: Any, data: conversion.CheckData | None) -> dict[str, Any] | None:
    return None if data is None or data.test is None else \
        clf.modality.serving_inputs(data.test, WARMUP_EXAMPLES)


def card_files(run_dir: str | os.PathLike | None) -> tuple[Path, ...]:
    """The model card files a run directory has (none for a bare .keras file)."""
    if run_dir is None:
        return ()
    return tuple(p for p in (Path(run_dir) / name for name in CARD_FILES) if p.is_file())
