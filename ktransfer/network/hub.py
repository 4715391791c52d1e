"""TF Hub modules as Keras 3 layers that can be frozen or really fine-tuned.

`hub.KerasLayer` is a tf_keras layer and cannot go into a Keras 3 model; `keras.layers.TFSMLayer`
cannot be fine-tuned (its variables keep ':0' names the optimizer rejects). `HubBackbone` loads the
module with `hub.load` and tracks each of the module's own tf.Variables as a Keras variable with a
clean name (no copy), so gradients and optimizer updates reach the module, and `.keras` saving
stores their values.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import socket
import urllib.parse
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras.src.saving import serialization_lib

from ktransfer.errors import WeightsError, first_line

log = logging.getLogger(__name__)


def hub_cache_dir() -> str:
    """Where tensorflow_hub caches downloaded modules ($TFHUB_CACHE_DIR or its default)."""
    import tempfile

    return os.environ.get("TFHUB_CACHE_DIR") or os.path.join(tempfile.gettempdir(),
                                                              "tfhub_modules")


def _is_url(handle: str) -> bool:
    return handle.startswith(("http://", "https://", "gs://"))


def _cached_path(handle: str) -> str:
    return os.path.join(hub_cache_dir(), hashlib.sha1(handle.encode("utf8")).hexdigest())


def _reachable(url: str, timeout: float = 3.0) -> bool:
    parsed = urllib.parse.urlparse(url)
    port = parsed.port or (443 if parsed.scheme in ("https", "gs") else 80)
    host = parsed.hostname or ""
    if parsed.scheme == "gs":
        host = "storage.googleapis.com"
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _flag(flag: str, handle: str) -> str:
    """How the user named the module: --backbone=hub:HANDLE or --FLAG=HANDLE."""
    return f"--backbone=hub:{handle}" if flag == "backbone" else f"--{flag}={handle}"


def _offline_message(handle: str, flag: str = "backbone") -> str:
    return (f"{_flag(flag, handle)}: cannot download the module (no network?). Download "
            f"{handle}?tf-hub-format=compressed elsewhere, extract the .tar.gz into a folder and "
            f"pass {_flag(flag, '/path/to/that/folder')}, or extract it into "
            f"{_cached_path(handle)} (tensorflow_hub's cache, $TFHUB_CACHE_DIR)")


def load_module(handle: str, flag: str = "backbone") -> Any:
    """`hub.load(handle)` with fast, clear errors (naming `flag`) for a missing folder or no
    network."""
    import tensorflow_hub as hub

    if _is_url(handle):
        cached = _cached_path(handle)
        if not (os.path.isdir(cached) and os.listdir(cached)) and not _reachable(handle):
            raise WeightsError(_offline_message(handle, flag))
    elif not os.path.isdir(handle):
        raise WeightsError(f"{_flag(flag, handle)}: no such folder; give a TF Hub URL or a "
                           "folder holding a TF2 SavedModel (saved_model.pb + variables/)")
    elif not os.path.isfile(os.path.join(handle, "saved_model.pb")):
        raise WeightsError(f"{_flag(flag, handle)}: the folder has no saved_model.pb; extract "
                           "the downloaded module (.tar.gz) there")
    try:
        return hub.load(handle)
    except Exception as exc:  # network errors, corrupt modules: one line, the cause named
        first = first_line(exc)
        if _is_url(handle):
            raise WeightsError(f"{_offline_message(handle, flag)}; the error was: {first}"
                              ) from None
        raise WeightsError(f"{_flag(flag, handle)}: cannot load the module: {first}"
                          ) from None


def _has_training_argument(fn: Any) -> bool:
    """Whether a restored tf.function accepts `training` (as tensorflow_hub checks it)."""
    from tensorflow.python.util import tf_inspect

    try:
        spec = tf_inspect.getfullargspec(fn)
    except (TypeError, ValueError):
        return False
    return "training" in spec.args or "training" in spec.kwonlyargs


@keras.saving.register_keras_serializable(package="ktransfer")
class HubBackbone(keras.layers.Layer):
    """A TF2 hub module (`__call__(inputs[, training])`) as a Keras 3 layer.

    Input: float images [B, H, W, 3] in the range the module expects (TF Hub image modules:
    [0, 1]), or a dict of int32 token inputs [B, L] (TF Hub text encoders: input_word_ids,
    input_mask, input_type_ids). Output: the module's output, or `output_key` of a dict output
    ([B, C] feature vectors, [B, h, w, C] maps, [B, L, D] token vectors).

    `trainable=False` (frozen): no module variable changes. When trainable, the module is called
    with `training=True` only if `module_training` is set (it then updates its BatchNorm
    statistics and uses dropout); by default fine-tuning updates the weights while BatchNorm stays
    in inference mode, as ktransfer does for keras.applications backbones.
    """

    def __init__(self, handle: str, output_key: str = "", module_training: bool = False,
                 output_shape: tuple[int | None, ...] | None = None, **kwargs):
        deferred = kwargs.pop("_deferred", False)
        super().__init__(**kwargs)
        self.handle = handle
        self.output_key = output_key
        self.module_training = module_training
        self._output_shape = tuple(output_shape) if output_shape else None
        self._source: str | None = None  # the folder the module was loaded from
        self._stash: list[np.ndarray] | None = None
        self._module: Any = None
        if not deferred:
            self._attach(load_module(handle), handle)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> HubBackbone:
        """A saved model: when the module is no longer where it was (moved, or offline), the
        layer waits for the copy the `.keras` file carries (`load_assets`).

        Refused in Keras' safe mode, as Keras refuses its own `TFSMLayer`: the module is a
        TensorFlow graph named by the file, and a graph can read and write files when it runs.
        """
        if serialization_lib.in_safe_mode() is True:
            raise ValueError(
                f"Requested the deserialization of a TF Hub module ({config.get('handle')!r}), "
                "a TensorFlow graph that can read and write files; this is disallowed in "
                "safe_mode: if you trust the file, pass `safe_mode=False` (ktransfer: "
                "--unsafe_load)")
        try:
            return cls(**config)
        except WeightsError:
            return cls(**config, _deferred=True)

    def _attach(self, module: Any, source: str) -> None:
        """Uses `module`: its call function, and each of its variables as a Keras variable."""
        if not callable(module) and "default" not in getattr(module, "signatures", {}):
            raise WeightsError(f"--backbone=hub:{self.handle}: the module is neither callable "
                               "nor has a 'default' signature; ktransfer needs a TF2 "
                               "feature-vector module")
        self._module, self._source = module, source
        self._call_fn = module if callable(module) else module.signatures["default"]
        self._takes_training = callable(module) and _has_training_argument(module.__call__)
        if not getattr(module, "variables", None):
            log.warning("--backbone=hub:%s: the module lists no `variables` (TF Hub's reusable "
                        "SavedModel attributes), so its weights cannot be saved or fine-tuned; "
                        "it works frozen", self.handle)
        trainable_refs = {v.ref() for v in getattr(module, "trainable_variables", [])}
        seen = set()
        locked = self._tracker.locked  # a layer rebuilt from a file is locked once built
        self._tracker.unlock()
        for v in getattr(module, "variables", []):
            if v.ref() in seen:
                continue
            seen.add(v.ref())
            name = re.sub(r"[^A-Za-z0-9_.-]", "_", v.name.split(":")[0])
            self._track_variable(keras.Variable(initializer=v, trainable=v.ref() in trainable_refs,
                                                dtype=v.dtype, shape=v.shape, name=name))
        if locked:
            self._tracker.lock()
        self.built = True

    def compute_output_spec(self, inputs, training=False):
        if self._module is None and self._output_shape:  # deferred: the shape when saved
            batch = keras.tree.flatten(inputs)[0].shape[0]
            return keras.KerasTensor((batch, *self._output_shape[1:]), dtype=self.compute_dtype)
        return super().compute_output_spec(inputs, training=training)

    def save_assets(self, dir_path: str) -> None:
        """A copy of the module folder goes into the `.keras` file (its `assets`), so the model
        loads where the module's original path does not exist."""
        if self._source and os.path.isdir(self._source):
            shutil.copytree(self._source, os.path.join(dir_path, "module"))

    def load_own_variables(self, store: Any) -> None:
        if self._module is None:  # the variables exist once the module is attached
            self._stash = [np.asarray(store[key]) for key in sorted(store.keys(), key=int)]
            return
        super().load_own_variables(store)

    def load_assets(self, dir_path: str) -> None:
        if self._module is not None:
            return
        folder = os.path.join(dir_path, "module")
        if not os.path.isdir(folder):
            raise WeightsError(f"the model's TF Hub module {self.handle} is missing and the "
                               "model file holds no copy: put the module back at that path")
        keep = os.path.join(hub_cache_dir(), "ktransfer-" + hashlib.sha1(
            self.handle.encode()).hexdigest())  # the file's copy is deleted after loading
        if not os.path.isdir(keep):
            shutil.copytree(folder, keep)
        self._attach(load_module(keep), keep)
        if self._stash is not None:  # the weights came first (the usual order)
            for variable, value in zip(self.variables, self._stash, strict=True):
                variable.assign(value)

    def call(self, inputs, training=False):
        # Images: float pixels; text: a dict of int32 token inputs, passed as they are.
        x = ({k: tf.cast(v, tf.int32) for k, v in inputs.items()} if isinstance(inputs, dict)
             else tf.cast(inputs, tf.float32))
        if self._takes_training:
            run_training = bool(training) and self.trainable and self.module_training
            out = self._call_fn(x, training=run_training)
        else:
            out = self._call_fn(x)
        if isinstance(out, dict):
            key = self.output_key or ("default" if "default" in out else
                                      sorted(out)[0] if len(out) == 1 else "")
            if key not in out:
                raise WeightsError(f"--backbone=hub:{self.handle}: the module returns "
                                   f"{sorted(out)}; pick one with --hub_output_key")
            out = out[key]
        return tf.cast(out, self.compute_dtype)

    def get_config(self) -> dict[str, Any]:
        shape = self._output_shape
        if shape is None and self._inbound_nodes:
            shape = tuple(keras.tree.flatten(self._inbound_nodes[0].outputs)[0].shape)
        return {**super().get_config(), "handle": self.handle, "output_key": self.output_key,
                "module_training": self.module_training,
                "output_shape": list(shape) if shape else None}
