"""`regression`: one number per example (a score, a grade, a rating, a price).

The head's last layer predicts the standardised target; a fixed layer (`target_scale`, set from
the training targets before training and saved with the weights) turns it into the target's
units, so the model, its export and `predict` all answer in those units. MSE (or Huber) loss,
MAE and RMSE while training; R² (the quality: 1 is perfect, 0 is predicting the training mean),
Pearson and Spearman correlations at the end. Splits are stratified by target quantile so that
every part covers the range.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from scipy import stats

from ktransfer.config import ModelConfig, RunConfig
from ktransfer.data.splits import stratified_split
from ktransfer.errors import ConfigError, DataError
from ktransfer.tasks.task import Rows, Task, head_dense, loss_value
from ktransfer.tasks.uncertainty import fit_interval, interval_scores

SCALE_LAYER = "target_scale"
BINS = 10  # quantile bins the splits are stratified by
SHOWN = 500  # (true, predicted) pairs kept in evaluation.json for the scatter plot


LARGEST = 1e15  # |target| beyond this overflows the float32 squared error (errors ~1e19)


def numbers(values: list[Any], where: list[str], flag: str, column: str) -> np.ndarray:
    """float32 [N] of label values; a value that is not a finite number, or too large for the
    float32 loss (|x| > LARGEST), is a DataError naming its place."""
    out = np.empty(len(values), np.float32)
    for i, (value, place) in enumerate(zip(values, where, strict=True)):
        try:
            number = float(str(value).strip()) if not isinstance(value, bool) else math.nan
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise DataError(f"--{flag}: {place}: {column} {value!r} is not a finite number; "
                            "--task=regression needs a number in every row")
        if abs(number) > LARGEST:
            raise DataError(f"--{flag}: {place}: {column} {value!r} is too large to train on "
                            f"(at most {LARGEST:.0e} either side of 0: the loss squares errors "
                            "in float32); rescale the column, e.g. to thousands or millions")
        out[i] = number
    return out


def quantile_bins(targets: np.ndarray, bins: int = BINS) -> np.ndarray:
    """int [N]: the quantile bin of each target (equal-count bins by rank)."""
    count = max(1, min(bins, len(targets) // 2))
    ranks = np.argsort(np.argsort(targets, kind="stable"), kind="stable")
    return (ranks * count // max(1, len(targets))).astype(np.int64)


def r_squared(predicted: np.ndarray, targets: np.ndarray, mean: float | None = None) -> float:
    """1 - SSE / SS around `mean` (the targets' own mean by default); 0 for no spread."""
    centre = float(np.mean(targets)) if mean is None else mean
    total = float(np.sum((targets - centre) ** 2))
    return 1.0 - float(np.sum((targets - predicted) ** 2)) / total if total > 0 else 0.0


class Regression(Task):
    """One number per example (see the module docstring)."""

    name = "regression"
    headline = "mae"
    objective = "mae"
    quality_name = "R²"
    monitors = ("mae", "rmse")
    minimize = ("loss", "mae", "rmse")
    losses = ("auto", "huber")
    smooths = False
    answer_fields = ("values", "target", "value")
    output_key = "value"
    takes = ("coverage",)
    presentation_entry = "ktransfer.tasks.regression.presentation:RegressionPresentation"
    probe_entry = "ktransfer.tasks.regression.probe:PROBE"

    def parse(self, values: list[Any], where: list[str], options: Any, flag: str,
              column: str = "label") -> tuple[tuple[str, ...], np.ndarray]:
        return (column,), numbers(values, where, flag, column)

    def target_words(self, names: tuple[str, ...]) -> str:
        return f"target {names[0]}" if names else "a target"

    def relabel(self, targets: np.ndarray, names: tuple[str, ...], wanted: tuple[str, ...],
                strict: bool) -> tuple[np.ndarray, np.ndarray]:
        """Targets as they are: a number needs no class order (a model's target column may
        be named differently in new data)."""
        return targets, np.arange(len(targets))

    def target_text(self, target: np.ndarray, names: tuple[str, ...]) -> str:
        return repr(float(target))

    def split(self, targets: np.ndarray, fraction: float, seed: int
              ) -> tuple[np.ndarray, np.ndarray]:
        return stratified_split(quantile_bins(targets), fraction, seed)

    def check_splits(self, train: np.ndarray, val: np.ndarray, names: tuple[str, ...]) -> None:
        if len(train) < 2 or float(np.std(train)) == 0.0:
            raise DataError(f"--data: the training targets ({names[0]}) are all "
                            f"{train[0] if len(train) else 'missing'}; regression needs "
                            "targets that differ")

    def check(self, cfg: RunConfig) -> None:
        """Refuses what needs classes: --classes, --class_weights, --train_per_class,
        --label_smoothing and domain adaptation (which aligns classes)."""
        super().check(cfg)
        refused = {"classes": bool(cfg.data.classes),
                   "class_weights": cfg.data.class_weights != "none",
                   "train_per_class": bool(cfg.data.train_per_class),
                   "label_smoothing": bool(cfg.model.label_smoothing),
                   "target_data": bool(cfg.adapt.target_data)}
        for flag, given in refused.items():
            if given:
                raise ConfigError(flag, "is for classes; --task=regression predicts a number "
                                  "(leave the flag out)")

    def outputs(self, names: tuple[str, ...]) -> int:
        return 1

    def output(self, features: Any, outputs: int, cfg: ModelConfig) -> Any:
        """Dense(1) predicting the standardised target, then the fixed `target_scale`
        (value * std + mean), float32 [B, 1] in the target's units."""
        standardized = head_dense(features, 1, cfg, "standardized")
        scale = keras.layers.Dense(1, kernel_initializer="ones", bias_initializer="zeros",
                                   dtype="float32", name=SCALE_LAYER)
        scale.trainable = False
        return scale(standardized)

    def prepare(self, model: keras.Model, train: np.ndarray) -> None:
        """Sets `target_scale` to the training targets' spread and mean."""
        layer = model.get_layer(SCALE_LAYER)
        spread = float(np.std(train)) or 1.0
        layer.set_weights([np.full((1, 1), spread, np.float32),
                           np.full((1,), float(np.mean(train)), np.float32)])

    def encode(self, targets: tf.Tensor, outputs: int) -> tf.Tensor:
        return tf.reshape(tf.cast(targets, tf.float32), [-1, 1])

    def loss(self, cfg: RunConfig) -> Any:
        options = cfg.group("task")
        if options.loss == "huber":
            return keras.losses.Huber(delta=options.huber_delta)
        return keras.losses.MeanSquaredError()

    def metrics(self, outputs: int) -> list[Any]:
        return [keras.metrics.MeanAbsoluteError(name="mae"),
                keras.metrics.RootMeanSquaredError(name="rmse")]

    def scores(self, outputs: np.ndarray, targets: np.ndarray, model: keras.Model,
               cfg: RunConfig, state: dict[str, Any]) -> dict[str, float]:
        """The loss (with the model's regularisation), MAE, RMSE and R²."""
        predicted = outputs[:, 0]
        return {"loss": loss_value(self.loss(cfg), targets[:, None], outputs, model),
                **errors_of(predicted, targets), **intervals_of(predicted, targets, state)}

    def fit(self, outputs: np.ndarray, targets: np.ndarray, options: Any) -> dict[str, Any]:
        """The conformal interval's half-width (--coverage), from the validation residuals."""
        if not options.coverage:
            return {}
        return {"conformal": fit_interval(outputs[:, 0], targets, options.coverage)}

    def quality(self, outputs: np.ndarray, targets: np.ndarray, state: dict[str, Any]) -> float:
        """R² of the predictions."""
        return r_squared(outputs[:, 0], targets) if len(targets) else 0.0

    def baseline(self, train: np.ndarray, val: np.ndarray) -> tuple[float, str]:
        mean = float(np.mean(train))
        return (r_squared(np.full(len(val), mean), val) if len(val) else 0.0,
                f"always predicting the training mean {mean:.4g}")

    def answers(self, outputs: np.ndarray, names: list[str], k: int, state: dict[str, Any]
                ) -> Rows:
        return [[(names[0], float(value))] for value in outputs[:, 0]]

    def extras(self, outputs: np.ndarray, names: list[str], state: dict[str, Any]
               ) -> list[dict[str, Any]]:
        """The conformal interval [low, high] of each prediction, where the model has one."""
        if "conformal" not in state:
            return [{} for _ in outputs]
        half = state["conformal"]["half_width"]
        return [{"interval": [round(float(v) - half, 6), round(float(v) + half, 6)]}
                for v in outputs[:, 0]]

    def serving(self, outputs: tf.Tensor, names: list[str], k: int, state: dict[str, Any]
                ) -> dict[str, tf.Tensor]:
        """`value` [B]: the prediction in the target's units; with --coverage `lower` and
        `upper` [B], its conformal interval."""
        value = tf.cast(outputs[:, 0], tf.float32)
        if "conformal" not in state:
            return {"value": value}
        half = tf.constant(state["conformal"]["half_width"], tf.float32)
        return {"value": value, "lower": value - half, "upper": value + half}


def errors_of(predicted: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """MAE, RMSE, R² and the Pearson and Spearman correlations (0 where undefined: fewer
    than 2 examples or no spread)."""
    if not len(targets):
        return {"mae": 0.0, "rmse": 0.0, "r2": 0.0, "pearson": 0.0, "spearman": 0.0}
    error = predicted - targets
    spread = len(targets) > 1 and np.std(predicted) > 0 and np.std(targets) > 0
    return {"mae": float(np.mean(np.abs(error))), "rmse": float(np.sqrt(np.mean(error ** 2))),
            "r2": r_squared(predicted, targets),
            "pearson": float(stats.pearsonr(predicted, targets)[0]) if spread else 0.0,
            "spearman": float(stats.spearmanr(predicted, targets)[0]) if spread else 0.0}


def intervals_of(predicted: np.ndarray, targets: np.ndarray, state: dict[str, Any]
               ) -> dict[str, float]:
    if "conformal" not in state:
        return {}
    return interval_scores(predicted, targets, state["conformal"])

