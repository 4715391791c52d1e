"""`single_label`: one class per example. Softmax over the classes, (focal) cross-entropy,
accuracy and top-5, stratified splits, a confusion matrix, the top-k classes as answers."""

from __future__ import annotations

import logging
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from ktransfer.config import ModelConfig, RunConfig
from ktransfer.data.splits import per_class_sample, stratified_split
from ktransfer.errors import ConfigError, DataError
from ktransfer.tasks.calibration import LOGITS_LAYER
from ktransfer.tasks.task import (
    Probabilities,
    Rows,
    Task,
    head_dense,
    loss_value,
    names_where,
    read_weights,
    relabelled,
)
from ktransfer.tasks.uncertainty import (
    abstain_scores,
    fit_abstain,
    fit_sets,
    set_scores,
    sets_of,
    unknown_score,
)

log = logging.getLogger(__name__)
TINY = 1e-12  # probabilities are clipped here before a logarithm


def _numbers_not_classes(names: tuple[str, ...]) -> bool:
    """Whether class names look like a numeric target: all numbers, and some not whole or
    more than 20 of them."""
    try:
        numbers = [float(n) for n in names]
    except ValueError:
        return False
    return len(names) > 20 or any(not float(v).is_integer() for v in numbers)


def top_k_hits(probabilities: np.ndarray, labels: np.ndarray, k: int,
               chunk: int = 4096) -> np.ndarray:
    """bool [N]: the true class is among the `k` most probable, a tie at the boundary not
    counted as a hit (fewer than `k` other classes have at least its probability). Memory is
    linear in examples and classes (worked through `chunk` rows at a time)."""
    hits = np.empty(len(labels), dtype=bool)
    for start in range(0, len(labels), chunk):
        p, y = probabilities[start:start + chunk], labels[start:start + chunk]
        true = p[np.arange(len(p)), y][:, None]
        hits[start:start + chunk] = (p >= true).sum(axis=1) - 1 < k
    return hits


def per_class_rows(class_names: list[str], labels: np.ndarray, predicted: np.ndarray
               ) -> tuple[list[dict[str, Any]], float, list[list[int]]]:
    """(rows of precision / recall / F1 / support, macro F1 over present classes, confusion)."""
    ids = list(range(len(class_names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=ids, zero_division=0)
    rows = [{"class": name, "precision": float(p), "recall": float(r), "f1": float(f),
             "support": int(n)}
            for name, p, r, f, n in zip(class_names, precision, recall, f1, support, strict=True)]
    macro = float(np.mean(f1[support > 0])) if (support > 0).any() else 0.0
    return rows, macro, confusion_matrix(labels, predicted, labels=ids).tolist()


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson's score interval of a proportion k / n (95 % by default): sound for small n and
    for k near 0 or n, where the normal approximation is not."""
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


class SingleLabel(Task):
    """One class per example (see the module docstring)."""

    name = "single_label"
    headline = "accuracy"
    objective = "accuracy"
    quality_name = "accuracy"
    monitors = ("accuracy", "top5_accuracy")
    losses = ("auto", "focal")
    distribution = True
    takes = ("class_weights", "coverage", "abstain_rate")
    presentation_entry = "ktransfer.tasks.single_label.presentation:SingleLabelPresentation"
    probe_entry = "ktransfer.tasks.single_label.probe:PROBE"
    probabilities_entry = "ktransfer.tasks.single_label.core:SOFTMAX"

    def parse(self, values: list[Any], where: list[str], options: Any, flag: str,
              column: str = "label") -> tuple[tuple[str, ...], np.ndarray]:
        listed = next((i for i, v in enumerate(values) if isinstance(v, list)), None)
        if listed is not None:
            raise DataError(f"--{flag}: {where[listed]}: {column} holds a list "
                            f"{values[listed]!r}; for several labels per example use "
                            "--task=multi_label")
        strings = [str(v).strip() for v in values]
        names = tuple(sorted(set(strings)))
        if _numbers_not_classes(names):
            log.warning("--%s: the %s column holds %d different numbers, each read as a "
                        "class; for a number per example pass --task=regression", flag,
                        column, len(names))
        index = {name: i for i, name in enumerate(names)}
        return names, np.array([index[s] for s in strings], dtype=np.int32)

    def from_class_ids(self, class_names: tuple[str, ...], ids: np.ndarray, flag: str
                       ) -> np.ndarray:
        return np.asarray(ids, dtype=np.int32)

    def relabel(self, targets: np.ndarray, names: tuple[str, ...], wanted: tuple[str, ...],
                strict: bool) -> tuple[np.ndarray, np.ndarray]:
        return relabelled(targets, names, wanted, strict)

    def target_text(self, target: np.ndarray, names: tuple[str, ...]) -> str:
        return names[int(target)]

    def split(self, targets: np.ndarray, fraction: float, seed: int
              ) -> tuple[np.ndarray, np.ndarray]:
        return stratified_split(targets, fraction, seed)

    def sample(self, targets: np.ndarray, per_class: int, seed: int) -> np.ndarray:
        return per_class_sample(targets, per_class, seed)

    def check_splits(self, train: np.ndarray, val: np.ndarray, names: tuple[str, ...]) -> None:
        if len(names) < 2:
            raise DataError(f"--data: found one class only ({names[0]!r}); a classifier needs "
                            "at least 2 classes")
        missing = [c for i, c in enumerate(names) if not np.any(train == i)]
        if missing:
            raise DataError(f"--data: class {missing[0]!r} has no training examples (after bad "
                            "ones were skipped and the splits were made); add examples of it or "
                            "leave it out with --classes")

    def counts(self, targets: np.ndarray, names: tuple[str, ...]) -> dict[str, int]:
        found = np.bincount(targets, minlength=len(names))
        return {name: int(n) for name, n in zip(names, found, strict=True)}

    def class_weights(self, targets: np.ndarray, names: tuple[str, ...], spec: str
                      ) -> dict[int, float] | None:
        """balanced: n / (k * count_c) (classes absent from `targets` get 0); explicit: the
        weights given by name, 1 for a class not named."""
        if spec != "balanced":
            given = read_weights(spec)
            unknown = [n for n in given if n not in names]
            if unknown:
                raise ConfigError("class_weights", f"{unknown[0]!r} is not a class of the "
                                  f"data (it has {', '.join(names[:20])})")
            return {i: float(given.get(name, 1.0)) for i, name in enumerate(names)}
        counts = np.bincount(targets, minlength=len(names)).astype(np.float64)
        present = counts > 0
        weights = np.zeros(len(names))
        weights[present] = len(targets) / (present.sum() * counts[present])
        return {i: float(w) for i, w in enumerate(weights)}

    def output(self, features: Any, outputs: int, cfg: ModelConfig) -> Any:
        logits = head_dense(features, outputs, cfg, LOGITS_LAYER)
        return keras.layers.Activation("softmax", dtype="float32", name="probabilities")(logits)

    def encode(self, targets: tf.Tensor, outputs: int) -> tf.Tensor:
        return tf.one_hot(tf.cast(targets, tf.int32), outputs)

    def loss(self, cfg: RunConfig) -> Any:
        smoothing, options = cfg.model.label_smoothing, cfg.group("task")
        if options.loss == "focal":
            return keras.losses.CategoricalFocalCrossentropy(
                gamma=options.focal_gamma, alpha=1.0, label_smoothing=smoothing)
        return keras.losses.CategoricalCrossentropy(label_smoothing=smoothing)

    def metrics(self, outputs: int) -> list[Any]:
        found: list[Any] = [keras.metrics.CategoricalAccuracy(name="accuracy")]
        if outputs > 5:
            found.append(keras.metrics.TopKCategoricalAccuracy(k=5, name="top5_accuracy"))
        return found

    def scores(self, outputs: np.ndarray, targets: np.ndarray, model: keras.Model,
               cfg: RunConfig, state: dict[str, Any]) -> dict[str, float]:
        """What `model.evaluate` reports (the loss, with the model's regularisation losses;
        accuracy; top-5 with more than 5 classes)."""
        n = outputs.shape[1]
        out = {"loss": loss_value(self.loss(cfg), np.eye(n)[targets], outputs, model),
               "accuracy": self.quality(outputs, targets, state)}
        if n > 5:
            out["top5_accuracy"] = float(top_k_hits(outputs, targets, 5).mean())
        return {**out, **uncertainty_scores(outputs, targets, state)}

    def quality(self, outputs: np.ndarray, targets: np.ndarray, state: dict[str, Any]) -> float:
        return float(np.mean(outputs.argmax(axis=1) == targets)) if len(targets) else 0.0

    def quality_interval(self, outputs: np.ndarray, targets: np.ndarray,
                         state: dict[str, Any]) -> tuple[float, float] | None:
        """Wilson's 95 % score interval of the accuracy: k right of n."""
        n = len(targets)
        if not n:
            return None
        return wilson(int(np.sum(outputs.argmax(axis=1) == targets)), n)

    def fit(self, outputs: np.ndarray, targets: np.ndarray, options: Any) -> dict[str, Any]:
        """The conformal sets' threshold (--coverage) and the abstain threshold
        (--abstain_rate), from the validation probabilities."""
        state: dict[str, Any] = {}
        if options.coverage:
            state["conformal"] = fit_sets(outputs, targets, options.coverage)
        if options.abstain_rate:
            state["abstain"] = fit_abstain(outputs, options.abstain_rate)
        return state

    def baseline(self, train: np.ndarray, val: np.ndarray) -> tuple[float, str]:
        majority = float(np.bincount(val).max() / len(val)) if len(val) else 0.0
        return majority, "always predicting the most common class"

    def answers(self, outputs: np.ndarray, names: list[str], k: int, state: dict[str, Any]
                ) -> Rows:
        k = max(1, min(k, len(names)))
        order = np.argsort(-outputs, axis=1, kind="stable")[:, :k]
        return [[(names[j], float(p[j])) for j in row] for p, row in zip(outputs, order,
                                                                          strict=True)]

    def extras(self, outputs: np.ndarray, names: list[str], state: dict[str, Any]
               ) -> list[dict[str, Any]]:
        """The conformal set (class names, most probable first) and the unknown-input score
        and abstain decision, where the model has them."""
        found: list[dict[str, Any]] = [{} for _ in outputs]
        if "conformal" in state:
            inside, order = sets_of(outputs, state["conformal"]), np.argsort(-outputs, axis=1)
            for row, kept, ranked in zip(found, inside, order, strict=True):
                row["set"] = [names[j] for j in ranked if kept[j]]
        if "abstain" in state:
            score = unknown_score(outputs)
            for row, value in zip(found, score, strict=True):
                row["unknown_score"] = round(float(value), 6)
                row["abstain"] = bool(value > state["abstain"]["threshold"])
        return found

    def serving(self, outputs: tf.Tensor, names: list[str], k: int, state: dict[str, Any]
                ) -> dict[str, tf.Tensor]:
        """`probabilities` [B, C], `top_k_ids`, `top_k_scores` and `top_k_names` [B, k];
        with --coverage `in_set` [B, C] (bool), `set_names` [B, C] (the class's name where in
        the set, else "") and `set_size` [B]; with --abstain_rate `unknown_score` [B] and
        `abstain` [B] (bool)."""
        k = max(1, min(k, len(names)))
        probabilities = tf.cast(outputs, tf.float32)
        scores, top = tf.math.top_k(probabilities, k=k)
        found = {"probabilities": probabilities, "top_k_ids": top, "top_k_scores": scores,
                 "top_k_names": tf.gather(tf.constant(names), top)}
        if "conformal" in state:
            inside = probabilities >= state["conformal"]["threshold"]
            found.update(in_set=inside, set_size=tf.reduce_sum(tf.cast(inside, tf.int32), 1),
                         set_names=names_where(inside, names))
        if "abstain" in state:
            score = 1.0 - tf.reduce_max(probabilities, axis=1)
            found.update(unknown_score=score, abstain=score > state["abstain"]["threshold"])
        return found


def uncertainty_scores(outputs: np.ndarray, targets: np.ndarray, state: dict[str, Any]
                 ) -> dict[str, float]:
    """The conformal sets' coverage and size, and the abstain rule's share, where the model
    has them."""
    found: dict[str, float] = {}
    if "conformal" in state:
        found.update(set_scores(outputs, targets, state["conformal"]))
    if "abstain" in state:
        found.update(abstain_scores(outputs, targets, state["abstain"]))
    return found


class Softmax(Probabilities):
    """Softmax over the classes: what --calibrate scales, the calibration error reads."""

    def rescale(self, outputs: np.ndarray, factor: float) -> np.ndarray:
        logits = np.log(np.clip(outputs, TINY, 1.0)) * factor
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)

    def nll(self, outputs: np.ndarray, targets: np.ndarray) -> float:
        picked = outputs[np.arange(len(targets)), targets]
        return float(-np.mean(np.log(np.clip(picked, TINY, 1.0)))) if len(targets) else 0.0

    def confidence(self, outputs: np.ndarray, targets: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
        """The top class's probability, and whether it is the true class."""
        return outputs.max(axis=1), outputs.argmax(axis=1) == targets


SOFTMAX = Softmax()
