"""`--da_select`: keep the epoch a validator without target labels likes best (see
`ktransfer.domain.validators`), instead of the last one.

After every epoch of an adaptation run the classifier predicts up to 1,000 unlabelled target
examples and the source validation split; every validator scores that (all are recorded), the
chosen one decides, and the best epoch's
weights are kept in RUN/resume/selected.weights.h5 beside selection.json (its score, and every
epoch's), so a resumed run goes on choosing among the same epochs. At the end of training
the selected weights go back into the classifier, before AdaBN and evaluation.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ktransfer.domain.catalog import VALIDATORS
from ktransfer.domain.validators import EpochOutputs
from ktransfer.network.features import feature_tensor
from ktransfer.runs import atomic

log = logging.getLogger(__name__)
WEIGHTS, STATE = "selected.weights.h5", "selection.json"


def feature_probe(classifier: keras.Model) -> Callable[[Any], Any]:
    """A batch of the classifier's inputs -> (features [B, D], probabilities [B, C]), in
    inference mode, as one traced graph (retraced at most twice, for a new batch shape): a pass
    of eager calls spends most of its time in Python, layer by layer (small_cnn on 899 images
    of 16 px: 0.55-0.64 s eagerly, 0.11-0.13 s traced, 0.29 s with its tracing)."""
    probe = keras.Model(classifier.input, [feature_tensor(classifier), classifier.output])
    return tf.function(lambda x: probe(x, training=False), reduce_retracing=True)


def probe_outputs(probe: Callable[[Any], Any], ds: tf.data.Dataset, limit: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(probabilities [N, C], features [N, D], labels [N]) of up to `limit` examples of
    (inputs, one-hot labels) batches, by a `feature_probe`."""
    probs, feats, labels, n = [], [], [], 0
    for x, y in ds:
        features, probabilities = probe(x)
        probs.append(np.asarray(probabilities, np.float64))
        feats.append(np.asarray(features, np.float64))
        labels.append(np.asarray(y).argmax(1))
        n += len(labels[-1])
        if n >= limit:
            break
    return (np.concatenate(probs)[:limit], np.concatenate(feats)[:limit],
            np.concatenate(labels)[:limit])


class CollapseGuard(keras.callbacks.Callback):
    """Stops an adaptation phase that is collapsing and puts back its last good epoch: after an
    epoch in which a class that the target predictions used (at least 1/(4C) of them, C
    classes) falls below 1/(10C), or the source validation accuracy falls more than `drop`
    below its best, the weights of the last epoch without either go back and the phase ends,
    with a warning saying which.

    Args:
        classifier: the classifier being adapted.
        target: batches of unlabelled target examples.
        drop: the largest fall of source validation accuracy tolerated (0.1: 10 points).
        limit: target examples to look at.
    """

    def __init__(self, classifier: keras.Model, target: tf.data.Dataset, drop: float = 0.1,
                 limit: int = 1000):
        super().__init__()
        self.classifier, self.target, self.drop, self.limit = classifier, target, drop, limit
        self.probe = feature_probe(classifier)
        self.used: np.ndarray | None = None  # classes the target predictions used
        self.good: list[np.ndarray] | None = None
        self.best_val = -math.inf
        self.tripped: str = ""

    def _shares(self) -> np.ndarray:
        p, _, _ = probe_outputs(self.probe, self.target, self.limit)
        return np.bincount(p.argmax(1), minlength=p.shape[1]) / len(p)

    def on_train_begin(self, logs=None):
        shares = self._shares()
        self.used = shares >= 1.0 / (4 * len(shares))
        self.good = self.classifier.get_weights()

    def on_epoch_end(self, epoch, logs=None):
        shares, val = self._shares(), float((logs or {}).get("val_accuracy", math.nan))
        assert self.used is not None
        vanished = [int(c) for c in np.flatnonzero(self.used & (shares < 1 / (10 * len(shares))))]
        fell = math.isfinite(val) and val < self.best_val - self.drop
        if not vanished and not fell:
            self.good, self.best_val = self.classifier.get_weights(), max(self.best_val, val)
            return
        self.tripped = (f"class(es) {vanished} vanished from the target predictions" if vanished
                        else f"source validation accuracy fell to {val:.3f} from "
                             f"{self.best_val:.3f}")
        log.warning("adaptation is collapsing after epoch %d (%s): the last good epoch's "
                    "weights are back and this phase stops; try a lower --mmd_weight or "
                    "--target_loss=im", epoch + 1, self.tripped)
        assert self.good is not None
        self.classifier.set_weights(self.good)
        self.model.stop_training = True


class EpochSelection(keras.callbacks.Callback):
    """Scores every epoch with the validator `name` and keeps the best one (module docstring).

    With `name` "last" nothing is chosen (the last epoch stays) but every validator's score and
    the true target accuracy are still recorded: a run with --target_eval_data shows how each
    validator would have chosen.

    Args:
        name: a `VALIDATORS` name, or "last".
        classifier: the classifier being adapted (its weights are what is kept).
        target: batches of unlabelled target examples (their labels are not used).
        source_val: batches of the source validation split.
        folder: where the selected weights and selection.json go (the run's resume folder).
        evaluation: labelled target batches (--target_eval_data), to record each epoch's true
            target accuracy beside its score (for judging validators), or None.
        limit: examples of each set to score.
    """

    def __init__(self, name: str, classifier: keras.Model, target: tf.data.Dataset,
                 source_val: tf.data.Dataset, folder: Path,
                 evaluation: tf.data.Dataset | None = None, limit: int = 1000):
        super().__init__()
        self.name, self.classifier, self.folder = name, classifier, Path(folder)
        self.target, self.source_val, self.evaluation, self.limit = (target, source_val,
                                                                     evaluation, limit)
        self.probe = feature_probe(classifier)
        saved = self.folder / STATE
        self.state: dict[str, Any] = (json.loads(saved.read_text()) if saved.is_file()
                                      else {"validator": name, "epochs": [], "best": None})

    def on_epoch_end(self, epoch, logs=None):
        target_p, target_f, _ = probe_outputs(self.probe, self.target, self.limit)
        source_p, source_f, source_y = probe_outputs(self.probe, self.source_val, self.limit)
        outputs = EpochOutputs(target_p, target_f, source_p, source_f, source_y)
        # Every validator's score is recorded (they are cheap beside an epoch), so one run
        # shows how each would have chosen; the flag's one decides.
        scores = {name: float(VALIDATORS.get(name)(outputs)) for name in VALIDATORS}
        score = float(epoch + 1) if self.name == "last" else scores[self.name]
        row: dict[str, Any] = {"epoch": epoch + 1, "score": score, "scores": scores}
        if self.evaluation is not None:
            p, _, y = probe_outputs(self.probe, self.evaluation, 10**9)
            row["target_accuracy"] = float(np.mean(p.argmax(1) == y))
        epochs = [r for r in self.state["epochs"] if r["epoch"] < epoch + 1] + [row]
        best = self.state["best"]
        if math.isfinite(score) and (best is None or score > best["score"]):
            if self.name != "last":  # the last epoch's weights are the model's own
                atomic.save_with(self.folder / WEIGHTS, self.classifier.save_weights)
            best = row
        self.state = {**self.state, "epochs": epochs, "best": best}
        atomic.write_json(self.folder / STATE, self.state)
        if self.name == "last":
            return
        log.info("--da_select=%s: epoch %d scores %.4g (best: epoch %s)", self.name, epoch + 1,
                 score, best["epoch"] if best else "-")

    def restore(self) -> dict[str, Any]:
        """Puts the selected epoch's weights back into the classifier; returns the selection
        for metrics.json."""
        best = self.state["best"]
        if best is not None and self.name != "last":
            with warnings.catch_warnings():  # the file holds no optimizer state, by design
                warnings.filterwarnings("ignore", message="Skipping variable loading for optim")
                self.classifier.load_weights(self.folder / WEIGHTS)
            log.info("--da_select=%s: kept epoch %d of %d", self.name, best["epoch"],
                     len(self.state["epochs"]))
        return self.state
