"""The task seam: what training and export need of the kind of target, in one interface.

A task is one package (`ktransfer/tasks/NAME/`): its core (this `Task`: reading, splitting,
the output layer, loss, metrics, scores, answers and serving outputs) and its optional parts,
loaded on first use: a `Presentation` (what evaluation shows), a `TaskProbe` (what the probe
does) and `Probabilities` (what --calibrate scales). A capability is the presence of a part.

Targets live in `Examples.labels`, in the task's own form (`Task.parse` makes them from the
label values a source holds): int32 class ids [N] (single-label), float32 label sets [N, C]
(multi-label), float32 values [N] (regression). Shared code hands them to the task to split,
encode for the loss, score and show; it never looks inside. What a task learns after training
(multi-label thresholds) is its `state`, a JSON dict saved beside the model (`task.json`) and
built into the export.
"""

from __future__ import annotations

import abc
import functools
import html
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import tensorflow as tf

from ktransfer.config.data import weight_pairs
from ktransfer.errors import ConfigError, DataError
from ktransfer.registry import import_object
from ktransfer.runs import atomic
from ktransfer.tasks.presentation import Plain, Presentation

if TYPE_CHECKING:  # annotations only
    from ktransfer.config import ModelConfig, RunConfig
    from ktransfer.tasks.annotations import Annotations
    from ktransfer.tasks.copies import Copies
    from ktransfer.tasks.geometry import Geometry
    from ktransfer.tasks.maps import MapHead
    from ktransfer.tasks.probe import TaskProbe

STATE_FILE = "task.json"  # in a run directory, beside labels.txt
# What each optional flag of the task group says to a task that does not take it.
REFUSED = {
    "class_weights": "class weights are for --task=single_label; with --task={task} use "
                     "--loss=focal",
    "coverage": "conformal sets are for single_label and regression; --task={task} has none "
                "(leave it out)",
    "abstain_rate": "is for single_label; --task={task} has no unknown-input score (leave it "
                    "out)",
}
Rows = list[list[tuple[str, float]]]  # per example: (name, score) pairs, best first


class Probabilities(abc.ABC):
    """The part of a task whose outputs are probabilities: --calibrate scales them by a
    temperature, the calibration error (ECE) reads how sure they are."""

    @abc.abstractmethod
    def rescale(self, outputs: np.ndarray, factor: float) -> np.ndarray:
        """The outputs the model would give with its logits multiplied by `factor`."""

    @abc.abstractmethod
    def nll(self, outputs: np.ndarray, targets: np.ndarray) -> float:
        """The mean negative log-likelihood of the targets (nats per example)."""

    @abc.abstractmethod
    def confidence(self, outputs: np.ndarray, targets: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
        """(confidence [M] in [0, 1], whether it was right [M]) for the calibration error."""


class Task(abc.ABC):
    """One kind of target (see the module docstring and `ktransfer.tasks`)."""

    name: str = ""
    headline: str = ""  # the metric printed first (a key of `scores`)
    objective: str = ""  # the validation metric (without val_) a tuner trial is scored by
    quality_name: str = ""  # what `quality` computes (higher is better), for messages
    monitors: tuple[str, ...] = ()  # what --monitor may name besides val_loss (with val_)
    # Of those, the ones scored on the whole validation split at each epoch's end
    # (`epoch_scores`), not averaged over batches by Keras: detection's mAP.
    epoch_metrics: tuple[str, ...] = ()
    minimize: tuple[str, ...] = ("loss",)  # metrics (without val_) where lower is better
    losses: tuple[str, ...] = ("auto",)  # --loss values this task takes
    smooths: bool = True  # whether --label_smoothing means anything (the tuner searches it)
    # predict's output: (the list's key, each item's name key, its score key)
    answer_fields: tuple[str, str, str] = ("top_k", "class", "probability")
    output_key: str = "probabilities"  # the serving output that is the model's output
    # The `extras` field that holds the answers as records (detection: one per box), which
    # predict writes one CSV / text row each and in place of the ranked list in JSON.
    answer_records: str = ""
    distribution: bool = False  # whether each output row sums to 1 (a max over parts rescales)
    # The optional flags of the task group it takes: class_weights, coverage (conformal sets
    # or intervals), abstain_rate (an unknown-input threshold); the others are refused.
    takes: tuple[str, ...] = ()
    # Its optional parts, each "package.module:ATTR" (loaded on first use): a `Presentation`
    # subclass (what evaluation shows; `Plain` without), a `TaskProbe` (what `probe` does;
    # the probe refuses the task without), a `Probabilities` (outputs --calibrate can scale),
    # a `Geometry` (targets in the image plane, which the image pipeline moves with pixels),
    # a `MapHead` (a head on feature maps, not one pooled vector), `Copies` (what its TFLite /
    # ONNX copies return, where not its output), `Annotations` (readers of
    # its own annotation files).
    presentation_entry: str = ""
    probe_entry: str = ""
    probabilities_entry: str = ""
    geometry_entry: str = ""
    map_head_entry: str = ""
    annotations_entry: str = ""
    copies_entry: str = ""

    @functools.cached_property
    def presentation(self) -> Presentation:
        """What evaluation, the report and the model card show of this task's outputs."""
        if not self.presentation_entry:
            return Plain(self)
        return import_object(self.presentation_entry)(self)

    @functools.cached_property
    def probe(self) -> TaskProbe | None:
        """The probe's part of this task (None: `ktransfer.probe` does not take it)."""
        return import_object(self.probe_entry) if self.probe_entry else None

    @functools.cached_property
    def probabilities(self) -> Probabilities | None:
        """The part that scales and scores probabilities (None: --calibrate is refused)."""
        return import_object(self.probabilities_entry) if self.probabilities_entry else None

    @functools.cached_property
    def geometry(self) -> Geometry | None:
        """How the targets follow the image's pixels (None: one target per whole example)."""
        return import_object(self.geometry_entry) if self.geometry_entry else None

    @functools.cached_property
    def copies(self) -> Copies | None:
        """What its TFLite / ONNX copies return (None: the model's output, `output_key`)."""
        return import_object(self.copies_entry) if self.copies_entry else None

    @functools.cached_property
    def map_head(self) -> MapHead | None:
        """The head on the backbone's feature maps (None: the pooled head, `output`)."""
        return import_object(self.map_head_entry) if self.map_head_entry else None

    @functools.cached_property
    def annotations(self) -> Annotations | None:
        """Readers of the task's own annotation files (None: tables and folders only)."""
        return import_object(self.annotations_entry) if self.annotations_entry else None

    # Reading and splitting -------------------------------------------------------------

    @abc.abstractmethod
    def parse(self, values: list[Any], where: list[str], options: Any, flag: str,
              column: str = "label") -> tuple[tuple[str, ...], np.ndarray]:
        """(names, targets) of the label values of a source (strings of a table, lists of a
        JSON-lines file) read from its `column`; `where[i]` names value i ("file.csv:3") for
        one-line errors; `options`: the task group (`cfg.group("task")`)."""

    def from_class_ids(self, class_names: tuple[str, ...], ids: np.ndarray, flag: str
                       ) -> np.ndarray:
        """Targets of examples whose source names one class each (class folders, built-in
        sets); a task whose targets are not one class per example refuses them."""
        raise DataError(f"--{flag}: this source gives one class per example (class folders or "
                        f"a built-in classification set); --task={self.name} needs a table "
                        "with a label column (CSV, TSV, JSON lines)")

    @abc.abstractmethod
    def relabel(self, targets: np.ndarray, names: tuple[str, ...], wanted: tuple[str, ...],
                strict: bool) -> tuple[np.ndarray, np.ndarray]:
        """(targets in the order of `wanted`, positions kept): `--classes` (not `strict`:
        examples outside are left out) or a model's order (`strict`: a name the model does
        not know is an error, DataError)."""

    @abc.abstractmethod
    def target_text(self, target: np.ndarray, names: tuple[str, ...]) -> str:
        """One example's target as text (the run's manifest): a class name, labels joined
        by |, a number."""

    @abc.abstractmethod
    def split(self, targets: np.ndarray, fraction: float, seed: int
              ) -> tuple[np.ndarray, np.ndarray]:
        """(kept, held out) positions, about `fraction` held out, stratified as the targets
        allow."""

    def sample(self, targets: np.ndarray, per_class: int, seed: int) -> np.ndarray:
        """Positions of a few-label subset (--train_per_class)."""
        raise ConfigError("train_per_class", f"is for classes; --task={self.name} has none")

    @abc.abstractmethod
    def check_splits(self, train: np.ndarray, val: np.ndarray, names: tuple[str, ...]) -> None:
        """DataError when the training (and validation) targets cannot train this task."""

    def target_words(self, names: tuple[str, ...]) -> str:
        """What the targets are, for log lines: "10 classes", "4 labels", "target score"."""
        return f"{len(names)} {'class' if len(names) == 1 else 'classes'}"

    def counts(self, targets: np.ndarray, names: tuple[str, ...]) -> dict[str, int]:
        """{class (label): examples that have it}, for the report's data section; none for a
        task without classes."""
        return {}

    def class_weights(self, targets: np.ndarray, names: tuple[str, ...], spec: str
                      ) -> dict[int, float] | None:
        """Keras class weights of --class_weights (`spec`: balanced, or explicit weights as
        `read_weights` reads them); only a task that `takes` the flag is asked (check)."""
        raise ConfigError("class_weights", REFUSED["class_weights"].format(task=self.name))

    # The network ------------------------------------------------------------------------

    output_rank: int = 2  # of the model's output: [B, outputs]; a detector's is [B, A, W]

    def outputs(self, names: tuple[str, ...]) -> int:
        """Width of the model's output (a map head's: what it is built for, the classes)."""
        return len(names)

    def output_width(self, names: tuple[str, ...]) -> int:
        """The last dimension of the model's output."""
        return self.outputs(names)

    @abc.abstractmethod
    def output(self, features: Any, outputs: int, cfg: ModelConfig) -> Any:
        """The last layers on the head's features [B, D]: the model's output [B, outputs]
        (float32 under mixed precision)."""

    def prepare(self, model: keras.Model, train: np.ndarray) -> None:  # noqa: B027
        """Sets what the output layers take from the training targets (regression: their
        mean and spread), before training."""

    @abc.abstractmethod
    def encode(self, targets: tf.Tensor, outputs: int) -> tf.Tensor:
        """A batch of targets as the loss takes them: float32 [B, outputs]."""

    @abc.abstractmethod
    def loss(self, cfg: RunConfig) -> Any:
        """The Keras loss of --loss."""

    @abc.abstractmethod
    def metrics(self, outputs: int) -> list[Any]:
        """The Keras metrics training reports (names as in `monitors`)."""

    def check(self, cfg: RunConfig) -> None:
        """Pre-flight: flags that make no sense with this task (ConfigError naming one)."""
        options = cfg.group("task")
        if options.loss not in self.losses:
            raise ConfigError("loss", f"{options.loss} is not a loss of --task={self.name} "
                              f"(it takes {', '.join(self.losses)})")
        weights = cfg.data.class_weights
        asked = {"class_weights": weights != "none", "coverage": bool(options.coverage),
                 "abstain_rate": bool(options.abstain_rate)}
        for flag in (f for f, on in asked.items() if on and f not in self.takes):
            raise ConfigError(flag, REFUSED[flag].format(task=self.name))
        if weights not in ("none", "balanced"):
            read_weights(weights)  # the file and its pairs, before any work
        if options.calibrate != "none" and self.probabilities is None:
            raise ConfigError("calibrate", f"is for probabilities; --task={self.name} gives "
                              "none (leave it out)")
        monitor = cfg.train.monitor.removeprefix("val_")
        if monitor != "loss" and monitor not in self.monitors:
            raise ConfigError("monitor", f"--task={self.name} reports val_loss"
                              f"{''.join(', val_' + m for m in self.monitors)}; got "
                              f"{cfg.train.monitor}")

    def higher_is_better(self, metric: str) -> bool:
        """Whether a larger value of `metric` (e.g. val_macro_f1) is better."""
        return metric.removeprefix("val_") not in self.minimize

    # Scores, evaluation, answers ---------------------------------------------------------

    @abc.abstractmethod
    def scores(self, outputs: np.ndarray, targets: np.ndarray, model: keras.Model,
               cfg: RunConfig, state: dict[str, Any]) -> dict[str, float]:
        """What metrics.json reports of a split (loss and the task's metrics), from outputs
        already predicted."""

    @abc.abstractmethod
    def quality(self, outputs: np.ndarray, targets: np.ndarray, state: dict[str, Any]) -> float:
        """One number, higher is better (single-label: accuracy), for an export's accuracy
        check and the trivial-predictor warning."""

    interval_method = "count"  # how `quality_interval` finds its interval, for metrics.json

    def quality_interval(self, outputs: np.ndarray, targets: np.ndarray,
                         state: dict[str, Any]) -> tuple[float, float] | None:
        """A 95 % interval of `quality` from the count (e.g. Wilson's for an accuracy); None
        leaves it to a bootstrap over the examples (`reporting.model_card.interval`)."""
        return None

    @abc.abstractmethod
    def baseline(self, train: np.ndarray, val: np.ndarray) -> tuple[float, str]:
        """(`quality` of a trivial predictor on `val`, what it is): a run no better than it
        ends with a warning."""

    def fit(self, outputs: np.ndarray, targets: np.ndarray, options: Any) -> dict[str, Any]:
        """What the task learns from the validation outputs after training (its state), as
        the task group `options` asks (conformal sets, the abstain threshold)."""
        return {}

    def epoch_scores(self, outputs: np.ndarray, targets: np.ndarray, state: dict[str, Any]
                     ) -> dict[str, float]:
        """{name: value} of `epoch_metrics` on one validation pass's outputs [N, ...]."""
        return {}

    def answering(self, state: dict[str, Any], options: Any) -> dict[str, Any]:
        """The state `predict` answers with: the saved `state`, with what the reading options
        of the task group given to predict change (`options`: detection's --min_score); as
        saved by default."""
        return state

    def extras(self, outputs: np.ndarray, names: list[str], state: dict[str, Any]
               ) -> list[dict[str, Any]]:
        """`predict`'s fields beside the answers, per example (a conformal set, whether to
        abstain), as its state asks; none by default."""
        return [{} for _ in outputs]

    @abc.abstractmethod
    def answers(self, outputs: np.ndarray, names: list[str], k: int, state: dict[str, Any]
                ) -> Rows:
        """`predict`'s rows: per example (name, score) pairs, best first."""

    @abc.abstractmethod
    def serving(self, outputs: tf.Tensor, names: list[str], k: int, state: dict[str, Any]
                ) -> dict[str, tf.Tensor]:
        """The outputs every exported signature returns, from the model's output."""


def read_weights(spec: str) -> dict[str, float]:
    """{class name: weight} of explicit --class_weights: name=weight pairs, or a file of them
    (one per line, # comments) or a JSON object (.json); a bad one is a ConfigError."""
    path = Path(spec)
    if "=" in spec and not path.is_file():
        return weight_pairs(spec, "class_weights")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("class_weights", f"cannot read {spec!r} ({exc}); give balanced, "
                          "name=weight pairs or a file of them") from None
    if path.suffix.lower() != ".json":
        return weight_pairs(text, "class_weights", spec)
    try:
        found = json.loads(text)
    except ValueError as exc:
        raise ConfigError("class_weights", f"{spec}: not JSON ({exc})") from None
    if not isinstance(found, dict):
        raise ConfigError("class_weights", f"{spec}: give a JSON object {{name: weight}}")
    return weight_pairs("\n".join(f"{k}={v}" for k, v in found.items()), "class_weights",
                        spec)


def relabelled(labels: np.ndarray, names: tuple[str, ...], wanted: tuple[str, ...],
               strict: bool) -> tuple[np.ndarray, np.ndarray]:
    """Class ids in the order of `wanted` and the positions kept (see `Task.relabel`)."""
    index = {name: i for i, name in enumerate(wanted)}
    if strict:
        unknown = [c for c in names if c not in index]
        if unknown:
            raise DataError(f"class {unknown[0]!r} is not a class of the model "
                            f"(labels.txt: {', '.join(wanted[:20])})")
    else:
        missing = [c for c in wanted if c not in names]
        if missing:
            raise DataError(f"class {missing[0]!r} is not in the data; it has: "
                            f"{', '.join(names)}")
    mapping = np.array([index.get(c, -1) for c in names], dtype=np.int32)
    mapped = mapping[labels] if len(labels) else labels.astype(np.int32)
    keep = np.flatnonzero(mapped >= 0)
    return mapped[keep], keep


def names_where(mask: tf.Tensor, names: list[str]) -> tf.Tensor:
    """string [B, C]: each class's name where `mask` [B, C] (bool) is on, else "". Built from
    gathers of integers only, which TFLite converts (a string `tf.where` it does not)."""
    ids = tf.broadcast_to(tf.range(1, len(names) + 1)[None, :], tf.shape(mask))
    return tf.gather(tf.constant(["", *names]), tf.where(mask, ids, 0))


def head_dense(features: Any, units: int, cfg: ModelConfig, name: str) -> Any:
    """The head's last Dense layer on `features` [B, D]: float32 [B, units], with the run's
    initializer and --l2."""
    regularizer = keras.regularizers.L2(cfg.l2) if cfg.l2 else None
    return keras.layers.Dense(units, kernel_initializer=cfg.initializer,
                              kernel_regularizer=regularizer, dtype="float32",
                              name=name)(features)


def loss_value(loss: Any, encoded: np.ndarray, outputs: np.ndarray, model: keras.Model) -> float:
    """`loss` of the encoded targets and outputs of a split (0 for none), plus the model's
    regularisation losses: what `model.evaluate` reports as the loss."""
    value = float(keras.ops.convert_to_numpy(loss(encoded, outputs))) if len(outputs) else 0.0
    return value + float(sum(float(keras.ops.convert_to_numpy(x)) for x in model.losses))


def save_state(folder: str | os.PathLike, task: Task, state: dict[str, Any]) -> None:
    """Writes FOLDER/task.json: the task's name and state."""
    atomic.write_json(Path(folder) / STATE_FILE, {"task": task.name, **state})


def read_state(folder: str | os.PathLike) -> dict[str, Any]:
    """FOLDER/task.json ({"task": "single_label"} for a model saved without one)."""
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        return {"task": "single_label"}
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable ({exc}); copy it from the run again") from None
    if not isinstance(state, dict) or not isinstance(state.get("task"), str):
        raise DataError(f"{path}: not a ktransfer task file")
    return state


def table(head: list[str], rows: list[list[Any]]) -> str:
    """An HTML table; floats with 3 decimals, the first column as text."""
    def cell(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else html.escape(str(v))

    return ("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>"
                      for row in rows) + "</table>")
