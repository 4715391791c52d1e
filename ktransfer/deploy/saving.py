"""Loading models written by ktransfer: registers its custom objects, Keras safe mode by default;
and opening a trained classifier with everything needed to use it (class names, its run, its
modality and input pipeline, its task and the task's state)."""

from __future__ import annotations

import json
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras

from ktransfer.config import RunConfig, read_run_flags
from ktransfer.errors import ConfigError, KtransferError, first_line
from ktransfer.modality import Feed, Modality, for_model

# Imported for their registered serializable classes (HubBackbone, Warmup, ...); the
# modalities' own (Preprocess) register when `import ktransfer` sees Keras imported.
from ktransfer.network import heads, hub  # noqa: F401
from ktransfer.optim import optimizers, schedules  # noqa: F401
from ktransfer.registry import import_on_demand
from ktransfer.runs.rundir import FLAGFILE
from ktransfer.tasks import TASKS, default_task
from ktransfer.tasks.task import Task, read_state


def load_model(path: str | os.PathLike, *, unsafe: bool = False, flag: str = "model",
               compile: bool = True) -> keras.Model:
    """Loads a `.keras` model. Safe mode (no code from the file runs) unless `unsafe`."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise KtransferError(f"--{flag}: file {path!r} does not exist")
    if not zipfile.is_zipfile(path):
        raise KtransferError(f"--{flag}: {path!r} is not a .keras model file (not a zip archive)")
    config = _read_config(path, flag)
    import_on_demand(config)
    code = [] if unsafe else code_layers(config)
    if code:
        raise KtransferError(f"--{flag}: {path!r} contains code ({code[0]}); load it only if "
                             "you trust it, with --unsafe_load")
    try:
        return keras.saving.load_model(path, safe_mode=not unsafe, compile=compile)
    except (ValueError, TypeError) as exc:
        missing = _MISSING_FUNCTION.search(str(exc))
        if missing:
            raise KtransferError(
                f"--{flag}: {path!r} calls the Python function {missing.group(1)!r}, which the "
                "file does not hold: load it from Python after defining it with "
                "@keras.saving.register_keras_serializable()") from None
        raise _unreadable(path, flag, exc) from None
    except (zipfile.BadZipFile, KeyError, OSError, EOFError) as exc:
        raise _unreadable(path, flag, exc) from None


_MISSING_FUNCTION = re.compile(r"Could not locate function '([^']+)'")
# Layers whose config makes Keras run code or load a TensorFlow graph from elsewhere.
_CODE_LAYERS = {"Lambda": "a Lambda layer", "TFSMLayer": "a TFSMLayer, a SavedModel graph",
                "ktransfer>HubBackbone": "a TF Hub module, a TensorFlow graph"}


def _read_config(path: str, flag: str) -> Any:
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, OSError, EOFError, ValueError, RecursionError) as exc:
        raise _unreadable(path, flag, exc) from None


def code_layers(config: Any) -> list[str]:
    """What in a `.keras` file's config would run code when loaded or called: Lambda layers,
    TFSMLayers and TF Hub modules (each a SavedModel graph that can read and write files),
    described with the layer's name, in the order they appear (empty when there is none)."""
    found: list[str] = []
    stack = [config]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            kind = item.get("registered_name") or item.get("class_name")
            if kind in _CODE_LAYERS:
                name = (item.get("config") or {}).get("name", "?")
                found.append(f"{_CODE_LAYERS[kind]} named {name!r}")
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))
    return found


def _unreadable(path: str, flag: str, exc: BaseException) -> KtransferError:
    """One line for a truncated or corrupt model file (Keras' own message is many KB)."""
    return KtransferError(f"--{flag}: {path!r} is not a readable .keras model file (truncated "
                          f"or corrupt: {type(exc).__name__}: {first_line(exc)[:120]}); use "
                          "another copy, or the run's checkpoints/last.keras")


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
    folder = os.path.dirname(os.path.abspath(path))
    labels = os.path.join(folder, "labels.txt")
    if os.path.isfile(labels):
        names = [line.strip() for line in open(labels, encoding="utf-8") if line.strip()]
    else:
        count = model.output_shape[-1] if len(model.output_shape) == 2 else 0
        names = [str(i) for i in range(count or 0)]
    if run_dir is None and os.path.isfile(os.path.join(folder, "flags.cfg")):
        run_dir = folder
    return model, names, run_dir


@dataclass
class Classifier:
    """A trained model ready to use: the model, its class names, its run directory (or
    None for a bare .keras file), its modality, the input pipeline that feeds it, its task
    and what the task learned after training (`state`, from task.json beside the model)."""

    model: keras.Model
    class_names: list[str]
    run_dir: str | None
    modality: Modality
    feed: Feed
    task: Task = field(default_factory=default_task)
    state: dict[str, Any] = field(default_factory=dict)

    def run_config(self) -> RunConfig | None:
        """The flags its run was trained with (RUN/flags.cfg); None for a bare .keras file."""
        return None if self.run_dir is None else run_config(self.run_dir)


def run_config(run_dir: str | os.PathLike) -> RunConfig:
    """The `RunConfig` of a run directory's flags.cfg (ConfigError when it is unreadable)."""
    return read_run_flags(Path(run_dir) / FLAGFILE)


def open_classifier(path: str | os.PathLike, *, unsafe: bool = False, flag: str = "model"
                    ) -> Classifier:
    """`load_classifier`, plus the modality (its run's --modality, else told from the model's
    inputs) and the input pipeline (with what the run saved for it, e.g. a tokenizer)."""
    model, names, run_dir = load_classifier(path, unsafe=unsafe, flag=flag)
    run_modality = None
    if run_dir is not None:
        try:
            run_modality = run_config(run_dir).data.modality
        except ConfigError:
            run_modality = None
    modality = for_model(model, run_modality)
    folder = run_dir or os.path.dirname(os.path.abspath(os.fspath(path)))
    state = read_state(folder)
    task = TASKS.get(state.pop("task"))
    feed = modality.feed_for(model, folder)
    feed.task = task
    return Classifier(model, names, run_dir, modality, feed, task, state)
