"""The seam between what depends on the kind of input and what does not, in two parts.

A `Modality` (images, text) is what training, evaluation and export need: it checks its flags,
reads its examples, builds its networks, turns examples into model inputs (`Feed`) and writes
the serving signatures. Its `Presentation` is what the report and the command line need: how
examples are shown (gallery, explanations), read for `predict`, and named in messages. Shared
code only calls these methods; a new input kind is a package that implements both and one
registration in `MODALITIES` (see docs/extending.md and tests/test_modality.py).
"""

from __future__ import annotations

import abc
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ktransfer.config import PredictConfig, RunConfig, register_group, register_recipe
from ktransfer.data.examples import Examples, Splits
from ktransfer.data.splits import SourceOpener, load_splits
from ktransfer.errors import ConfigError, KtransferError
from ktransfer.registry import Registry
from ktransfer.tasks import default_task, task_of

if TYPE_CHECKING:  # in annotations only: knowing the modalities imports no TensorFlow
    import keras
    import numpy as np
    import tensorflow as tf

    from ktransfer.tasks.task import Task

# predict --explain: (examples, class id of each, the model's class names, folder) -> files
Explainer = Callable[[Examples, list[int], list[str], str | os.PathLike], list[Path]]
# an exported signature's outputs from the model's output: the task's (`Task.serving`)
Answer = Callable[[Any], dict[str, Any]]
# predict --draw: (an example as a picture, its answers placed on it) -> the picture drawn on
# (a PIL image for images: `tasks.geometry.Geometry.draw`)
Drawer = Callable[[Any, dict[str, Any]], Any]


@dataclass
class Network:
    """A classifier and what shared code needs to know of it.

    Args:
        model: inputs -> probabilities [B, classes]; its backbone is the layer named "backbone".
        backbone: that layer (a keras.Model), frozen and unfrozen by the training phases.
        info: facts for metrics.json and the report (e.g. {"backbone": ..., "image_size": ...}).
        preprocessor: what turns raw examples into the model's inputs when that is not part
            of the model (a tokenizer), for the modality's `feed`.
    """

    model: keras.Model
    backbone: keras.Model
    info: dict[str, Any] = field(default_factory=dict)
    preprocessor: Any = None


class Feed(abc.ABC):
    """Turns examples into model inputs: the modality's input pipeline (resize and augment
    images; tokenise text). Its targets are encoded by `task` (the run's; None: the default
    task), which the modality gives the feed it makes."""

    task: Task | None = None

    @abc.abstractmethod
    def dataset(self, examples: Examples, *, batch_size: int, training: bool = False,
                seed: int = 0, repeat: bool = False,
                cache_path: str | os.PathLike | None = None) -> tf.data.Dataset:
        """Batches (model inputs, targets float32 [B, outputs] as `encoder` makes them);
        `training` shuffles and augments, `repeat` repeats forever (for
        --steps_per_epoch)."""

    def encoder(self, examples: Examples) -> Callable[[Any], Any]:
        """A function from a batch of `examples`' targets to what the loss takes (the task's
        `encode`: one-hot class ids, label sets, values)."""
        task = self.task or default_task()
        outputs = task.outputs(examples.class_names)
        return lambda labels: task.encode(labels, outputs)

    @property
    def augments(self) -> bool:
        """Whether training batches are augmented (then the frozen phase cannot be cached)."""
        return False

    def inputs(self, examples: Examples, batch_size: int) -> tf.data.Dataset:
        """Batches of model inputs alone, in order (for prediction)."""
        return self.dataset(examples, batch_size=batch_size).map(lambda x, y: x)

    def views(self, tta: str) -> list[Callable[[Any], Any]]:
        """The test-time augmentation views of a batch of inputs (`--tta`); this modality has
        only the inputs as they are."""
        if tta != "none":
            raise ConfigError("tta", "test-time augmentation is for images; leave it at none")
        return [lambda inputs: inputs]

    def save(self, run_dir: str | os.PathLike) -> None:  # noqa: B027 (optional)
        """Writes what the model needs besides model.keras to read raw examples (e.g. a
        tokenizer) into the run directory."""

    def trackables(self) -> list[Any]:
        """Objects an exported SavedModel must track besides the model (e.g. a tokenizer)."""
        return []


class Presentation(abc.ABC):
    """What the report and the command line show of one kind of input."""

    noun: str = "example"  # for messages: "3 images", "3 texts"
    input_key: str = "example"  # predict's first column ("file", "text")

    @abc.abstractmethod
    def list_backbones(self) -> str:
        """A table of the backbones (encoders) `--backbone` can name."""

    @abc.abstractmethod
    def gallery(self, model: keras.Model, feed: Feed, examples: Examples,
                mistakes: list[dict[str, Any]], out_dir: str | os.PathLike) -> str:
        """HTML sections (with their <h2> headings) showing `mistakes` (rows of
        `evaluation.summarize`) with their examples, and what else the modality shows of how
        `model` decides; may write files into `out_dir`. Empty when there is nothing."""

    def explainer(self, model: keras.Model, feed: Feed, layer: str
                  ) -> Explainer:
        """`predict --explain`: a function that writes files showing what in each example
        supports a class (see `Explainer`). Raises ConfigError where the modality or the model
        has none (checked before predicting)."""
        raise ConfigError("explain", f"{self.noun} models have no explanations")

    def network_words(self, info: dict[str, Any]) -> str:
        """The network's facts (`Network.info`) for the report's summary line, e.g.
        "backbone small_cnn, 32 px"."""
        return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in info.items())

    def data_words(self, data: dict[str, Any]) -> list[str]:
        """The data notes of metrics.json (`Modality.data_notes`) that the report's summary
        line states, each a phrase ("cut to --max_length: 3 train"); none by default."""
        return []

    def shown(self, examples: Examples) -> list[str] | None:
        """What `predict` shows of each example (the text itself), or None: its name (a file
        path) says it."""
        return None

    def sizes(self, examples: Examples) -> list[tuple[int, int]] | None:
        """Each example's (width, height) in the pixels its answers are placed in (an
        image's), or None: the modality's examples have no plane."""
        return None

    def draw(self, examples: Examples, answers: list[dict[str, Any]], draw: Drawer,
             out_dir: str | os.PathLike) -> list[Path]:
        """`predict --draw`: writes each example with its answers (the task's `extras`,
        placed) drawn on it by `draw` into `out_dir`; the files written."""
        raise ConfigError("draw", f"{self.noun} models have nothing to draw answers on")

    @abc.abstractmethod
    def read_inputs(self, args: list[str], cfg: PredictConfig) -> Examples:
        """Unlabelled examples for `predict` from its positional arguments and flags (labels
        all 0, one class ''); `names()` identifies each in the output."""

    @abc.abstractmethod
    def from_values(self, values: list[str]) -> Examples:
        """Unlabelled examples from Python values, for `predict_run` in a notebook: the texts
        themselves, or image file paths."""


class Modality(abc.ABC):
    """Everything about one kind of input (see the module docstring)."""

    name: str = ""
    presentation: Presentation  # what the report and the command line show of it
    builtin: Registry[Any]  # built-in data sets: name -> () -> {split: examples}
    tflite_signature: str | None = None  # the signature `export --tflite` converts, if any

    @abc.abstractmethod
    def check(self, cfg: RunConfig) -> None:
        """Pre-flight: names and files this kind's flags give (sources, backbone, weights);
        raises ConfigError naming the flag. Runs before any work."""

    def check_features(self, cfg: RunConfig) -> None:  # noqa: B027 (optional)
        """Pre-flight of jobs that need one feature vector per example (tune, probe, domain
        adaptation): ConfigError naming the flag where this kind's inputs give several."""

    @abc.abstractmethod
    def check_path(self, path: str, flag: str) -> None:
        """Pre-flight: that a `--data` path (not builtin: / tfds:) is something this kind
        reads; raises ConfigError naming the flag."""

    @abc.abstractmethod
    def open_source(self, spec: str, cfg: RunConfig, flag: str) -> dict[str, Examples]:
        """The splits of a `--data` string ('all', or some of 'train' / 'val' / 'test'), read
        with the run's reading options (tfds folder, bad-example policy, table columns)."""

    def opener(self, cfg: RunConfig) -> SourceOpener:
        """`open_source` with the run's flags bound: (spec, flag) -> splits."""
        return lambda spec, flag: self.open_source(spec, cfg, flag)

    def load_splits(self, cfg: RunConfig) -> Splits:
        """The run's train / validation / test examples."""
        return load_splits(cfg.data, self.opener(cfg), task_of(cfg))

    def data_notes(self, splits: Splits, feed: Feed) -> dict[str, Any]:
        """Facts about the data for metrics.json and the report (e.g. texts skipped or
        truncated); empty by default."""
        return {}

    @abc.abstractmethod
    def build(self, cfg: RunConfig, num_classes: int) -> Network:
        """The classifier for `cfg` (backbone with its weights, new head)."""

    @abc.abstractmethod
    def feed(self, cfg: RunConfig, network: Network) -> Feed:
        """The training run's input pipeline (augmentation and caches as `cfg` says)."""

    @abc.abstractmethod
    def feed_for(self, model: keras.Model, location: str | None) -> Feed:
        """The input pipeline of a saved classifier; `location`: its run directory or the
        folder of its .keras file (where `Feed.save` wrote)."""

    @abc.abstractmethod
    def accepts(self, model: keras.Model) -> bool:
        """Whether `model` takes this kind's inputs (to tell the kind of a bare .keras file)."""

    @abc.abstractmethod
    def serving_inputs(self, examples: Examples, n: int) -> dict[str, np.ndarray]:
        """The `serving_default` signature's inputs for the first `n` of `examples`, as a
        client sends them (encoded image bytes, raw strings): the export's warm-up requests."""

    @abc.abstractmethod
    def endpoints(self, model: keras.Model, feed: Feed, answer: Answer) -> dict[str, Any]:
        """The SavedModel signatures, `serving_default` first: name -> tf.function of this
        kind's inputs, returning `answer(model output)` (the task's outputs)."""


MODALITIES: Registry[Modality] = Registry("input kind", "modality")
# The modules of each modality's own Keras classes (layers a saved model may hold), imported by
# `ktransfer.serializables` so that `keras.saving.load_model` reads every file ktransfer wrote.
KERAS_CLASSES: dict[str, tuple[str, ...]] = {}
DEFAULT_BACKBONES: dict[str, str] = {}  # what --backbone=auto means for each modality
# "module:function" of each modality's backbone-name check, (name) -> None or ConfigError;
# light (no TensorFlow), so pre-flight refuses a misspelt --backbone before TensorFlow loads.
BACKBONE_CHECKS: dict[str, str] = {}


def register_modality(name: str, entry: Modality | str, default_backbone: str,
                      backbone_check: str, keras_classes: tuple[str, ...] = (),
                      options: str = "", recipe: str = "") -> None:
    """The one registration of a modality: its entry (`"package.module:ATTR"`, imported on
    first use), the backbone `--backbone=auto` gives it, the light check of a backbone name
    (`"package.module:function"`, importable without TensorFlow), the modules holding its
    Keras classes, its own config group (`"package.module:Class"`, a frozen dataclass of
    `config.option` fields; flags of every run, read as `cfg.group(name)`) and its `recipe`
    (`"package.module:DICT"`, light):
    defaults of shared flags that work better for it, taken by every flag a run leaves out."""
    MODALITIES.register(name, entry)
    DEFAULT_BACKBONES[name] = default_backbone
    BACKBONE_CHECKS[name] = backbone_check
    KERAS_CLASSES[name] = tuple(keras_classes)
    if options:
        register_group(name, options)
    if recipe:
        register_recipe(name, recipe)


register_modality("image", "ktransfer.image.modality:IMAGE", "efficientnet_lite0",
                  "ktransfer.image.catalog:check_backbone_name",
                  keras_classes=("ktransfer.image.preprocess",),
                  options="ktransfer.image.options:ImageOptions")
register_modality("text", "ktransfer.text.modality:TEXT", "minilm",
                  "ktransfer.text.catalog:check_encoder_name",
                  keras_classes=("ktransfer.text.chunks",),
                  options="ktransfer.text.options:TextOptions",
                  recipe="ktransfer.text.options:RECIPE")


def for_model(model: keras.Model, run_modality: str | None = None) -> Modality:
    """The modality of a saved classifier: its run's --modality, else the one that accepts it."""
    if run_modality:
        return MODALITIES.get(run_modality)
    for name in MODALITIES:
        if MODALITIES.get(name).accepts(model):
            return MODALITIES.get(name)
    raise KtransferError(f"--model: {model.name} takes inputs {model.input_shape}, which no input "
                         f"kind ({', '.join(MODALITIES)}) reads; give a model trained by "
                         "ktransfer.train")
