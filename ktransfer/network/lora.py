"""LoRA (Hu et al. 2021) on a backbone, through Keras' own `enable_lora`: the fine-tuning phase
trains a low-rank update `alpha/r * A @ B` of chosen Dense / EinsumDense / convolution / Embedding
kernels and nothing else of the backbone (its kernels, biases and norms stay as they were).

Keras writes a LoRA layer's merged kernel `W + alpha/r * A @ B` when it saves and sets A and B
to zero when it loads (both then zero: training could not continue from them). So the resume
state keeps the adapters in a file of their own and `restore` takes them back out of the merged
kernel; `merged` gives the finished network without the adapters (what model.keras and every
export hold), and `save_adapters` / `apply_adapters` keep and re-apply the adapters alone.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import keras
import numpy as np

from ktransfer.config import ModelConfig
from ktransfer.errors import ConfigError, TrainingError, first_line

log = logging.getLogger("ktransfer.network")

# keras-hub's `Backbone.enable_lora` default: the attention query and value projections.
AUTO_TARGETS = ("query", "value", "query_dense", "value_dense")
ADAPTERS_FILE = "lora_adapters.npz"
_BASE = {"kernel": "_kernel", "embeddings": "_embeddings"}  # merged property -> base variable


def adaptable_layers(backbone: keras.Model) -> list[keras.layers.Layer]:
    """The backbone's layers Keras can put adapters on (Dense, EinsumDense, Conv1D/2D/3D and
    Embedding; not depthwise convolutions), input to output, nested layers included."""
    return [layer for layer in backbone._flatten_layers(include_self=False)
            if hasattr(layer, "enable_lora") and layer.weights]


def targets(backbone: keras.Model, cfg: ModelConfig) -> list[keras.layers.Layer]:
    """The layers `--lora_targets` names: auto (the attention query and value projections, or
    every adaptable layer when there are none) or name / path regexes matched at the start."""
    layers = adaptable_layers(backbone)
    if not layers:
        raise ConfigError("lora_rank", f"{cfg.backbone} has no Dense, EinsumDense, convolution "
                          "or Embedding layer, the Keras layers LoRA adapts (a TF Hub module "
                          "has none); use --lora_rank=0 to fine-tune its weights")
    if cfg.lora_targets == "auto":
        return [layer for layer in layers if layer.name in AUTO_TARGETS] or layers
    chosen = []
    for pattern in (p.strip() for p in cfg.lora_targets.split(",") if p.strip()):
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise ConfigError("lora_targets", f"bad pattern {pattern!r}: {exc}") from None
        hits = [layer for layer in layers if regex.match(layer.name) or regex.match(layer.path)]
        if not hits:
            names = ", ".join(dict.fromkeys(layer.name for layer in layers))
            raise ConfigError("lora_targets", f"{pattern!r} matches no adaptable layer of the "
                              f"backbone; their names are: {names[:300]}")
        chosen += hits
    return [layer for layer in layers if any(layer is hit for hit in chosen)]


def planned(backbone: keras.Model, cfg: ModelConfig) -> str:
    """What `--lora_rank` will train, said before the adapters exist (`--print_model`): every
    adapted kernel K gets A [*K[:-1], R] and B [R, K[-1]], as Keras builds them."""
    layers = targets(backbone, cfg)
    shapes = [tuple(_base(layer)[0].shape) for layer in layers]
    count = sum(int(np.prod(k[:-1])) * cfg.lora_rank + cfg.lora_rank * k[-1] for k in shapes)
    names = ", ".join(dict.fromkeys(layer.name for layer in layers))
    return (f"LoRA rank {cfg.lora_rank} on {len(layers)} layers ({names[:120]}): phase 2 "
            f"trains {count:,} adapter weights and the head, not the backbone weights the "
            "table marks as training")


def adapters(backbone: keras.Model) -> list[keras.layers.Layer]:
    """The backbone's layers that carry adapters now."""
    return [layer for layer in adaptable_layers(backbone) if getattr(layer, "lora_enabled", False)]


def enable(backbone: keras.Model, cfg: ModelConfig) -> int:
    """Puts rank `--lora_rank` adapters on the `--lora_targets` layers (the first time) and
    leaves only the adapters of trainable layers trainable: call it after every change of which
    layers train (Keras' `layer.trainable = True` makes the layer's kernel trainable again).
    Returns the number of adapter weights (0: LoRA is off)."""
    if not cfg.lora_rank:
        return 0
    fresh = not adapters(backbone)
    if fresh:
        for layer in targets(backbone, cfg):
            layer.enable_lora(cfg.lora_rank, lora_alpha=cfg.lora_alpha or None)
    adapted = adapters(backbone)
    for variable in backbone.weights:
        variable.trainable = False
    for layer in adapted:
        for variable in _pair(layer):
            variable.trainable = layer.trainable
    count = sum(int(np.prod(v.shape)) for layer in adapted for v in _pair(layer))
    if fresh:
        total = sum(int(np.prod(v.shape)) for v in backbone.weights) - count
        log.info("LoRA rank %d on %d layers: %s adapter weights (%.2f %% of the backbone's "
                 "%s), nothing else of the backbone trains", cfg.lora_rank, len(adapted),
                 f"{count:,}", 100 * count / max(total, 1), f"{total:,}")
    return count


def _pair(layer: keras.layers.Layer) -> tuple[keras.Variable, keras.Variable]:
    """(A, B) of an adapted layer."""
    kind = "embeddings" if hasattr(layer, "lora_embeddings_a") else "kernel"
    return getattr(layer, f"lora_{kind}_a"), getattr(layer, f"lora_{kind}_b")


def _base(layer: keras.layers.Layer) -> tuple[keras.Variable, str]:
    """(the base weight, the property that returns it merged with the adapters)."""
    for merged, base in _BASE.items():
        if hasattr(layer, base):
            return getattr(layer, base), merged
    raise TrainingError(f"LoRA: {layer.path} has neither a kernel nor embeddings")


def save_adapters(backbone: keras.Model, path: str | Path) -> None:
    """Writes the adapters alone (A and B of each layer by path, with rank and alpha) to an
    .npz file (3.6 MB at rank 16 for MiniLM, whose weights are 87 MB) that `apply_adapters`
    puts back on the pretrained backbone."""
    arrays: dict[str, np.ndarray] = {}
    meta = []
    for layer in adapters(backbone):
        a, b = _pair(layer)
        arrays[f"{layer.path}|a"] = keras.ops.convert_to_numpy(a)
        arrays[f"{layer.path}|b"] = keras.ops.convert_to_numpy(b)
        meta.append({"path": layer.path, "rank": layer.lora_rank, "alpha": layer.lora_alpha})
    arrays["__meta__"] = np.array(json.dumps(meta))
    with open(path, "wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]


def _read(path: str | Path) -> tuple[list[dict], dict[str, np.ndarray]]:
    try:
        with np.load(path) as data:
            return json.loads(str(data["__meta__"])), {k: data[k] for k in data.files}
    except (OSError, ValueError, KeyError) as exc:
        raise TrainingError(f"cannot read the LoRA adapters {path}: {first_line(exc)[:160]}; "
                            "pass --overwrite to start the run again") from None


def _by_path(backbone: keras.Model, meta: list[dict], path: str | Path
             ) -> list[tuple[keras.layers.Layer, dict]]:
    layers = {layer.path: layer for layer in adaptable_layers(backbone)}
    missing = [m["path"] for m in meta if m["path"] not in layers]
    if missing:
        raise TrainingError(f"the LoRA adapters {path} are for another backbone: it has no "
                            f"layer {missing[0]}")
    return [(layers[m["path"]], m) for m in meta]


def restore(backbone: keras.Model, path: str | Path) -> None:
    """After loading weights Keras saved from this LoRA backbone (merged kernels, adapters set
    to zero): puts the saved adapters back and the kernels they were merged into back to their
    base values, so training continues exactly where it was."""
    meta, arrays = _read(path)
    for layer, m in _by_path(backbone, meta, path):
        a, b = _pair(layer)
        a.assign(arrays[f"{m['path']}|a"])
        b.assign(arrays[f"{m['path']}|b"])
        base, merged = _base(layer)
        base.assign(2 * base - getattr(layer, merged))  # merged = base + delta


def apply_adapters(backbone: keras.Model, path: str | Path) -> None:
    """Puts the adapters `save_adapters` wrote on a backbone built with the same pretrained
    weights: the fine-tuned backbone, without storing its 100x larger weights."""
    meta, arrays = _read(path)
    for layer, m in _by_path(backbone, meta, path):
        if not getattr(layer, "lora_enabled", False):
            layer.enable_lora(int(m["rank"]), lora_alpha=m["alpha"])
        a, b = _pair(layer)
        a.assign(arrays[f"{m['path']}|a"])
        b.assign(arrays[f"{m['path']}|b"])


def _strip(config: object) -> object:
    if isinstance(config, dict):
        return {k: _strip(v) for k, v in config.items() if k not in ("lora_rank", "lora_alpha")}
    if isinstance(config, list):
        return [_strip(v) for v in config]
    return config


def merged(model: keras.Model) -> keras.Model:
    """`model` itself when it has no adapters; else the same network without them, each
    adapted kernel replaced by `W + alpha/r * A @ B`: what model.keras and the exports hold
    (no extra work per example, and loadable without ktransfer's LoRA flags)."""
    layers = list(model._flatten_layers())
    if not any(getattr(layer, "lora_enabled", False) for layer in layers):
        return model
    plain = keras.saving.deserialize_keras_object(
        _strip(keras.saving.serialize_keras_object(model)))
    for source, target in zip(layers, plain._flatten_layers(), strict=True):
        store: dict[str, np.ndarray] = {}
        source.save_own_variables(store)  # Keras merges the adapters here
        target.load_own_variables(store)
    return plain
