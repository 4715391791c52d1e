"""`multi_label`: any set of labels per example (tags of a photo, topics of a text).

A sigmoid per label with (focal) binary cross-entropy; splits by iterative stratification
(Sechidis et al. 2011), so every label with two or more examples lands in both parts; after
training one threshold per label is chosen on the validation split (the one of best F1) and kept
with the model (`task.json`, and built into the export). Metrics: macro and micro F1 at those
thresholds, mean average precision (threshold-free), subset accuracy, and per label precision,
recall, F1 and average precision. Labels come from a table column as `a|b|c` (CSV / TSV,
`--label_separator`) or a JSON list (JSON lines).
"""

from __future__ import annotations

import logging
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from sklearn.metrics import average_precision_score, f1_score

from ktransfer.config import ModelConfig, RunConfig
from ktransfer.errors import ConfigError, DataError
from ktransfer.tasks.calibration import LOGITS_LAYER
from ktransfer.tasks.losses import AsymmetricLoss
from ktransfer.tasks.task import (
    Probabilities,
    Rows,
    Task,
    head_dense,
    loss_value,
    names_where,
)

log = logging.getLogger(__name__)
DEFAULT_THRESHOLD = 0.5  # of a label the validation split has no example of
TINY = 1e-7  # probabilities are clipped to [TINY, 1 - TINY] before a logit


def label_lists(values: list[Any], where: list[str], separator: str, flag: str
                ) -> list[list[str]]:
    """The labels of each value: a JSON list of strings, or a string split at `separator`;
    an empty set, a repeated label, a label that is not a string, holds the separator or a
    control character is a one-line DataError naming file and line. Strings that all look
    split by another character (`;` under the default `|`) are refused with the flag to pass."""
    if separator == DEFAULT_SEPARATOR:
        _check_separator(values, where, flag)
    out = []
    for value, place in zip(values, where, strict=True):
        if isinstance(value, list):
            _check_json_labels(value, place, separator, flag)
        parts = ([v.strip() for v in value] if isinstance(value, list)
                 else [p.strip() for p in str(value).split(separator)])
        if not parts or any(not p for p in parts):
            raise DataError(f"--{flag}: {place}: empty label in {value!r}; give one or more "
                            f"labels separated by {separator!r} (--label_separator)")
        if len(set(parts)) != len(parts):
            raise DataError(f"--{flag}: {place}: label {_repeated(parts)!r} given twice in "
                            f"{value!r}")
        control = next((p for p in parts if any(ord(c) < 32 for c in p)), None)
        if control is not None:
            raise DataError(f"--{flag}: {place}: label {control!r} holds a line break, tab or "
                            "other control character; remove it (it would break labels.txt)")
        out.append(parts)
    return out


DEFAULT_SEPARATOR = "|"
OTHER_SEPARATORS = (";", ",", "/")


def _check_json_labels(value: list[Any], place: str, separator: str, flag: str) -> None:
    wrong = [v for v in value if not isinstance(v, str)]
    if wrong:
        wrong = wrong[0]
        raise DataError(f"--{flag}: {place}: label {wrong!r} in {value!r} is not a string; a "
                        'JSON list of labels holds strings, e.g. ["cat", "indoor"]')
    if any(separator in v for v in value):
        raise DataError(f"--{flag}: {place}: a label holds the separator {separator!r} "
                        "(--label_separator); rename it or choose another separator")


def _check_separator(values: list[Any], where: list[str], flag: str) -> None:
    """Refuses strings none of which holds `|` while most hold one other separator: a table
    written with `;` would train as classes such as "neg;plot;acting"."""
    strings = [(v, place) for v, place in zip(values, where, strict=True) if isinstance(v, str)]
    if not strings or any(DEFAULT_SEPARATOR in v for v, _ in strings):
        return
    for other in OTHER_SEPARATORS:
        holding = [(v, place) for v, place in strings if other in v]
        if 2 * len(holding) > len(strings):
            value, place = holding[0]
            raise DataError(
                f"--{flag}: {place}: {len(holding)} of {len(strings)} labels hold {other!r} and "
                f"none {DEFAULT_SEPARATOR!r} (e.g. {value!r}): pass --label_separator='{other}' "
                f"(or, if {other!r} is part of your label names, name the separator you use, "
                "e.g. --label_separator=/)")


def _repeated(parts: list[str]) -> str:
    return next(p for p in parts if parts.count(p) > 1)


def iterative_split(targets: np.ndarray, fraction: float, seed: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out) positions of label sets [N, C], about `fraction` held out, by
    iterative stratification: the rarest label's examples are placed first, each where its
    labels are most wanted; every label with two or more examples gets one on each side."""
    rng = np.random.default_rng(seed)
    n = len(targets)
    y = targets > 0.5
    counts = y.sum(axis=0)
    want = np.stack([counts * (1 - fraction), counts * fraction]).astype(np.float64)
    want[1] = np.where(counts >= 2, np.clip(np.round(want[1]), 1, counts - 1), want[1])
    want[0] = counts - want[1]
    room = np.array([n * (1 - fraction), n * fraction])
    side = np.full(n, -1)
    order = rng.permutation(n)
    while (side[order] < 0).any():
        left = y[side < 0].sum(axis=0)
        label = int(np.argmin(np.where(left > 0, left, np.inf))) if left.any() else -1
        chosen = [i for i in order if side[i] < 0 and (label < 0 or y[i, label])]
        for i in chosen:
            k = int(np.argmax(want[:, label] + 1e-6 * room)) if label >= 0 else \
                int(np.argmax(room))
            side[i] = k
            want[k] -= y[i]
            room[k] -= 1
        if label < 0:
            break
    return np.flatnonzero(side == 0), np.flatnonzero(side == 1)


def best_thresholds(outputs: np.ndarray, targets: np.ndarray) -> list[float]:
    """Per label, the score threshold of best F1 on these examples (DEFAULT_THRESHOLD for a
    label without a positive example)."""
    found = []
    for c in range(targets.shape[1]):
        y, p = targets[:, c] > 0.5, outputs[:, c]
        if not y.any():
            found.append(DEFAULT_THRESHOLD)
            continue
        order = np.argsort(-p, kind="stable")
        hits = np.cumsum(y[order])
        f1 = 2 * hits / (np.arange(1, len(p) + 1) + y.sum())
        best = int(np.argmax(f1))
        below = p[order[best + 1]] if best + 1 < len(p) else 0.0
        found.append(float((p[order[best]] + below) / 2))  # midway to the next score
    return found


def decisions(outputs: np.ndarray, state: dict[str, Any]) -> np.ndarray:
    thresholds = np.asarray(state.get("thresholds") or [DEFAULT_THRESHOLD] * outputs.shape[1])
    return outputs >= thresholds[None, :]


def _mean_ap(outputs: np.ndarray, targets: np.ndarray) -> float:
    present = targets.sum(axis=0) > 0
    if not present.any():
        return 0.0
    return float(average_precision_score(targets[:, present], outputs[:, present],
                                         average="macro"))


class MultiLabel(Task):
    """Any set of labels per example (see the module docstring)."""

    name = "multi_label"
    headline = "macro_f1"
    objective = "map"
    quality_name = "macro F1"
    monitors = ("macro_f1", "micro_f1", "map")
    losses = ("auto", "focal", "asymmetric")
    answer_fields = ("labels", "label", "probability")
    presentation_entry = "ktransfer.tasks.multi_label.presentation:MultiLabelPresentation"
    probe_entry = "ktransfer.tasks.multi_label.probe:PROBE"
    probabilities_entry = "ktransfer.tasks.multi_label.core:SIGMOID"

    def parse(self, values: list[Any], where: list[str], options: Any, flag: str,
              column: str = "label") -> tuple[tuple[str, ...], np.ndarray]:
        lists = label_lists(values, where, options.label_separator, flag)
        names = tuple(sorted({label for labels in lists for label in labels}))
        index = {name: i for i, name in enumerate(names)}
        targets = np.zeros((len(lists), len(names)), np.float32)
        for row, labels in enumerate(lists):
            targets[row, [index[label] for label in labels]] = 1.0
        return names, targets

    def relabel(self, targets: np.ndarray, names: tuple[str, ...], wanted: tuple[str, ...],
                strict: bool) -> tuple[np.ndarray, np.ndarray]:
        index = {name: i for i, name in enumerate(names)}
        if strict:
            unknown = [c for c, i in index.items() if c not in wanted and targets[:, i].any()]
            if unknown:
                raise DataError(f"label {unknown[0]!r} is not a label of the model "
                                f"(labels.txt: {', '.join(wanted[:20])})")
        else:
            missing = [c for c in wanted if c not in index]
            if missing:
                raise DataError(f"label {missing[0]!r} is not in the data; it has: "
                                f"{', '.join(names)}")
        out = np.zeros((len(targets), len(wanted)), np.float32)
        for j, name in enumerate(wanted):
            if name in index:
                out[:, j] = targets[:, index[name]]
        return out, np.arange(len(targets))

    def target_text(self, target: np.ndarray, names: tuple[str, ...]) -> str:
        return "|".join(n for n, t in zip(names, target, strict=True) if t > 0.5)

    def split(self, targets: np.ndarray, fraction: float, seed: int
              ) -> tuple[np.ndarray, np.ndarray]:
        return iterative_split(targets, fraction, seed)

    def sample(self, targets: np.ndarray, per_class: int, seed: int) -> np.ndarray:
        """Examples until every label has `per_class` of them (rarest labels first)."""
        rng = np.random.default_rng(seed)
        chosen: set[int] = set()
        for label in np.argsort(targets.sum(axis=0), kind="stable"):
            have = sum(targets[i, label] > 0.5 for i in chosen)
            for i in rng.permutation(np.flatnonzero(targets[:, label] > 0.5)):
                if have >= per_class:
                    break
                if int(i) not in chosen:
                    chosen.add(int(i))
                    have += 1
        return np.array(sorted(chosen), dtype=np.int64)

    def check_splits(self, train: np.ndarray, val: np.ndarray, names: tuple[str, ...]) -> None:
        if not names:
            raise DataError("--data: no labels; a multi-label table needs labels per row")
        everywhere = [c for i, c in enumerate(names) if train[:, i].all()]
        if len(everywhere) == len(names):
            raise DataError(f"--data: every training example carries every label "
                            f"({', '.join(everywhere[:10])}): there is nothing to learn; check "
                            "--label_column and --label_separator")
        if everywhere:
            log.warning("--data: label(s) on every training example, which the model learns to "
                        "always give: %s", ", ".join(everywhere[:10]))
        missing = [c for i, c in enumerate(names) if not train[:, i].any()]
        if missing:
            raise DataError(f"--data: label {missing[0]!r} has no training examples (after the "
                            "splits were made); add examples of it or leave it out with "
                            "--classes")
        unseen = [c for i, c in enumerate(names) if not val[:, i].any()]
        if unseen:
            log.warning("labels without a validation example keep the threshold %.1f: %s",
                        DEFAULT_THRESHOLD, ", ".join(unseen[:10]))

    def target_words(self, names: tuple[str, ...]) -> str:
        return f"{len(names)} {'label' if len(names) == 1 else 'labels'}"

    def counts(self, targets: np.ndarray, names: tuple[str, ...]) -> dict[str, int]:
        found = (targets > 0.5).sum(axis=0) if len(targets) else np.zeros(len(names))
        return {name: int(n) for name, n in zip(names, found, strict=True)}

    def check(self, cfg: RunConfig) -> None:
        super().check(cfg)
        if cfg.adapt.target_data:
            raise ConfigError("target_data", "domain adaptation aligns classes; it is for "
                              "--task=single_label")
        if cfg.group("task").loss == "asymmetric" and cfg.model.label_smoothing:
            raise ConfigError("label_smoothing", "--loss=asymmetric does not smooth labels "
                              "(its margin --asl_clip plays that part); leave it out")

    def output(self, features: Any, outputs: int, cfg: ModelConfig) -> Any:
        logits = head_dense(features, outputs, cfg, LOGITS_LAYER)
        return keras.layers.Activation("sigmoid", dtype="float32", name="probabilities")(logits)

    def encode(self, targets: tf.Tensor, outputs: int) -> tf.Tensor:
        return tf.cast(targets, tf.float32)

    def loss(self, cfg: RunConfig) -> Any:
        smoothing, options = cfg.model.label_smoothing, cfg.group("task")
        if options.loss == "focal":
            return keras.losses.BinaryFocalCrossentropy(gamma=options.focal_gamma,
                                                        label_smoothing=smoothing)
        if options.loss == "asymmetric":
            return AsymmetricLoss(gamma_neg=options.asl_gamma_neg, clip=options.asl_clip)
        return keras.losses.BinaryCrossentropy(label_smoothing=smoothing)

    def metrics(self, outputs: int) -> list[Any]:
        return [keras.metrics.F1Score(average="macro", threshold=DEFAULT_THRESHOLD,
                                      name="macro_f1"),
                keras.metrics.F1Score(average="micro", threshold=DEFAULT_THRESHOLD,
                                      name="micro_f1"),
                keras.metrics.AUC(curve="PR", multi_label=True, num_labels=outputs,
                                  name="map")]

    def scores(self, outputs: np.ndarray, targets: np.ndarray, model: keras.Model,
               cfg: RunConfig, state: dict[str, Any]) -> dict[str, float]:
        """The loss (with the model's regularisation), F1 at the chosen thresholds, mean
        average precision and subset accuracy."""
        return {"loss": loss_value(self.loss(cfg), targets, outputs, model),
                **self.metrics_of(outputs, targets, state)}

    def metrics_of(self, outputs: np.ndarray, targets: np.ndarray, state: dict[str, Any]
                 ) -> dict[str, float]:
        decided, truth = decisions(outputs, state), targets > 0.5
        return {"macro_f1": self.quality(outputs, targets, state),
                "micro_f1": float(f1_score(truth, decided, average="micro", zero_division=0)),
                "map": _mean_ap(outputs, targets),
                "subset_accuracy": float(np.mean((decided == truth).all(axis=1)))}

    def quality(self, outputs: np.ndarray, targets: np.ndarray, state: dict[str, Any]) -> float:
        """Macro F1 over the labels present, at the chosen thresholds."""
        truth = targets > 0.5
        present = truth.any(axis=0)
        if not present.any():
            return 0.0
        decided = decisions(outputs, state)[:, present]
        truth = truth[:, present]
        hits = (decided & truth).sum(axis=0)  # counted here, not by sklearn: the model card's
        wrong = (decided != truth).sum(axis=0)  # bootstrap calls this 1,000 times
        return float(np.mean(2 * hits / (2 * hits + wrong)))  # > 0: each label is present

    def baseline(self, train: np.ndarray, val: np.ndarray) -> tuple[float, str]:
        rate = (val > 0.5).mean(axis=0)
        present = rate > 0
        f1 = 2 * rate[present] / (1 + rate[present])
        return float(f1.mean()) if present.any() else 0.0, "giving every example every label"

    def fit(self, outputs: np.ndarray, targets: np.ndarray, options: Any) -> dict[str, Any]:
        return {"thresholds": best_thresholds(outputs, targets)}

    def answers(self, outputs: np.ndarray, names: list[str], k: int, state: dict[str, Any]
                ) -> Rows:
        """The labels at or above their thresholds, most probable first."""
        decided = decisions(outputs, state)
        return [[(names[j], float(p[j])) for j in np.argsort(-p, kind="stable") if d[j]]
                for p, d in zip(outputs, decided, strict=True)]

    def extras(self, outputs: np.ndarray, names: list[str], state: dict[str, Any]
               ) -> list[dict[str, Any]]:
        """Each answered label's threshold (chosen on the validation split), in the answers'
        order: a label at 0.30 is predicted when its threshold is lower."""
        limits = np.asarray(state.get("thresholds") or [DEFAULT_THRESHOLD] * len(names))
        return [{"thresholds": [round(float(limits[j]), 4) for j in np.argsort(-p, kind="stable")
                                if d[j]]}
                for p, d in zip(outputs, decisions(outputs, state), strict=True)]

    def serving(self, outputs: tf.Tensor, names: list[str], k: int, state: dict[str, Any]
                ) -> dict[str, tf.Tensor]:
        """`probabilities` [B, C]; `predicted` [B, C] (at or above the label's threshold);
        `predicted_names` [B, C] (the label's name where predicted, else ""); and the `k`
        most probable labels: `top_k_ids`, `top_k_scores`, `top_k_names` [B, k]."""
        probabilities = tf.cast(outputs, tf.float32)
        thresholds = tf.constant(state.get("thresholds") or [DEFAULT_THRESHOLD] * len(names),
                                 tf.float32)
        predicted = probabilities >= thresholds[None, :]
        scores, top = tf.math.top_k(probabilities, k=max(1, min(k, len(names))))
        return {"probabilities": probabilities, "predicted": predicted,
                "predicted_names": names_where(predicted, names),
                "top_k_ids": top, "top_k_scores": scores,
                "top_k_names": tf.gather(tf.constant(names), top)}


class Sigmoid(Probabilities):
    """One sigmoid probability per label: what --calibrate scales, the calibration error reads."""

    def rescale(self, outputs: np.ndarray, factor: float) -> np.ndarray:
        p = np.clip(outputs, TINY, 1.0 - TINY)
        return (1.0 / (1.0 + np.exp(-np.log(p / (1.0 - p)) * factor))).astype(np.float32)

    def nll(self, outputs: np.ndarray, targets: np.ndarray) -> float:
        """Binary cross-entropy summed over the labels, averaged over the examples."""
        p = np.clip(outputs, TINY, 1.0 - TINY)
        bce = targets * np.log(p) + (1.0 - targets) * np.log(1.0 - p)
        return float(-bce.sum(axis=1).mean()) if len(targets) else 0.0

    def confidence(self, outputs: np.ndarray, targets: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
        """Every label's probability, and whether the label is there."""
        return outputs.ravel(), targets.ravel() > 0.5


SIGMOID = Sigmoid()
