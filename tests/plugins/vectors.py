"""A toy modality, written the way a new input kind is added: this file (its examples, feed,
network, signatures, presentation and its own config group) plus one `register_modality` call
(`register()`). Examples are rows of 8 numbers; the backbone a small MLP. tests/test_modality.py
shows that training, resume state, evaluation, prediction and export take it unchanged."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from sklearn.datasets import make_blobs

from ktransfer.config import PredictConfig, RunConfig, groups, option, require
from ktransfer.data.examples import Examples
from ktransfer.errors import ConfigError, DataError
from ktransfer.modality import (
    BACKBONE_CHECKS,
    DEFAULT_BACKBONES,
    KERAS_CLASSES,
    MODALITIES,
    Feed,
    Modality,
    Network,
    Presentation,
    register_modality,
)
from ktransfer.network.heads import build_head
from ktransfer.registry import Registry
from ktransfer.tasks import task_of

WIDTH = 8


@dataclass(frozen=True)
class VectorOptions:
    """Vector inputs (--modality=vectors): the MLP's width and the bad-row policy."""

    mlp_units: int = option(16, "Units of the MLP backbone.")
    on_bad_row: str = option("fail", "A row that is not 8 numbers: stop, or skip it.",
                             ("fail", "skip"), reading=True)

    def __post_init__(self) -> None:
        require(self.mlp_units >= 1, "mlp_units", "must be >= 1")


@dataclass(frozen=True)
class VectorSet(Examples):
    values: np.ndarray | None = None  # float32 [N, WIDTH]


def blobs() -> dict[str, VectorSet]:
    x, y = make_blobs(n_samples=300, n_features=WIDTH, centers=3, cluster_std=2.0,
                      random_state=0)
    return {"all": VectorSet(("a", "b", "c"), y.astype(np.int32), x.astype(np.float32))}


@dataclass
class VectorFeed(Feed):
    task: Any = None

    def dataset(self, examples, *, batch_size, training=False, seed=0, repeat=False,
                cache_path=None):
        assert isinstance(examples, VectorSet) and examples.values is not None
        encode = self.encoder(examples)
        ds = tf.data.Dataset.from_tensor_slices((examples.values, examples.labels)).map(
            lambda x, y: (x, encode(y)))
        if training:
            ds = ds.shuffle(len(examples), seed=seed, reshuffle_each_iteration=True)
        ds = ds.repeat() if repeat else ds
        return ds.batch(batch_size)


class VectorPresentation(Presentation):
    noun = "vector"
    input_key = "row"

    def list_backbones(self) -> str:
        return "mlp   a Dense layer of 16 units"

    def gallery(self, model, feed, examples, mistakes, out_dir: str | os.PathLike) -> str:
        return ""

    def read_inputs(self, args: list[str], cfg: PredictConfig) -> Examples:
        parsed = []
        for arg in args:
            try:
                row = [float(v) for v in arg.split(",")]
            except ValueError:
                row = []
            if len(row) == WIDTH:
                parsed.append(row)
            elif cfg.group("vectors").on_bad_row == "fail":
                raise DataError(f"{arg!r} is not {WIDTH} numbers (--on_bad_row=skip skips it)")
        rows = np.array(parsed, dtype=np.float32).reshape(-1, WIDTH)
        return VectorSet(("",), np.zeros(len(rows), np.int32), rows)

    def from_values(self, values: list[str]) -> Examples:
        rows = np.array([[float(v) for v in value.split(",")] for value in values],
                        dtype=np.float32).reshape(-1, WIDTH)
        return VectorSet(("",), np.zeros(len(rows), np.int32), rows)


class VectorModality(Modality):
    name = "vectors"
    presentation = VectorPresentation()
    builtin: Registry[Any] = Registry("built-in vector set", "data", {"blobs": blobs})

    def check(self, cfg: RunConfig) -> None:
        if cfg.model.backbone != "mlp":
            raise ConfigError("backbone", "vector models take --backbone=mlp")

    def check_path(self, path: str, flag: str) -> None:
        raise ConfigError(flag, "vectors come from builtin:blobs only")

    def open_source(self, spec: str, cfg: RunConfig, flag: str) -> dict[str, Examples]:
        return dict(self.builtin.get(spec.split(":", 1)[1], flag)())

    def build(self, cfg: RunConfig, num_classes: int) -> Network:
        units = cfg.group("vectors").mlp_units
        backbone = keras.Sequential([keras.Input((WIDTH,)), keras.layers.Dense(units, "relu")],
                                    name="backbone")
        inputs = keras.Input((WIDTH,), name="values")
        model = keras.Model(inputs, build_head(backbone(inputs), num_classes, cfg.model,
                                               task=task_of(cfg)))
        return Network(model, backbone, {"backbone": "mlp"})

    def feed(self, cfg: RunConfig, network: Network) -> Feed:
        return VectorFeed(task=task_of(cfg))

    def feed_for(self, model: keras.Model, location: str | None) -> Feed:
        return VectorFeed()

    def accepts(self, model: keras.Model) -> bool:
        return tuple(model.input_shape) == (None, WIDTH)

    def endpoints(self, model, feed, answer) -> dict[str, Any]:
        @tf.function(input_signature=[tf.TensorSpec([None, WIDTH], tf.float32, name="values")])
        def serve(values):
            return answer(model(values, training=False))

        return {"serving_default": serve}

    def serving_inputs(self, examples: Examples, n: int) -> dict[str, np.ndarray]:
        assert isinstance(examples, VectorSet) and examples.values is not None
        return {"values": examples.values[:n]}


VECTORS = VectorModality()


def check_backbone_name(name: str) -> None:
    """The light name check pre-flight runs before TensorFlow loads: mlp is the only one."""
    if name != "mlp":
        raise ConfigError("backbone", "vector models take --backbone=mlp")


def register() -> None:
    """The one registration, with the modality's own config group."""
    register_modality("vectors", VECTORS, default_backbone="mlp",
                      backbone_check="plugins.vectors:check_backbone_name",
                      options="plugins.vectors:VectorOptions")


def unregister() -> None:
    """Takes the registration back, so that other tests see the shipped modalities only."""
    MODALITIES.unregister("vectors")
    for table in (DEFAULT_BACKBONES, BACKBONE_CHECKS, KERAS_CLASSES,
                  groups._DECLARED):
        table.pop("vectors", None)
