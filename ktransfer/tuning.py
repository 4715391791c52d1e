"""Keras Tuner search over the head (hidden layers and units, dropout, L2, learning rate,
schedule, label smoothing) on a frozen backbone.

With the feature cache (`--cache_features`, augmentation off) the backbone runs once and every
trial trains a small head on cached feature vectors; otherwise each trial runs the frozen
backbone every epoch. A stopped search resumes where it was (Keras Tuner `overwrite=False`):
finished trials are kept and a trial that was cut short runs again.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

from ktransfer import atomic, features
from ktransfer.backbones import build_backbone, resolve_spec
from ktransfer.classifier import build_classifier
from ktransfer.config import RunConfig, option, require, to_flagfile
from ktransfer.data.pipeline import make_dataset
from ktransfer.data.sources import load_splits
from ktransfer.freezing import freeze
from ktransfer.heads import build_head
from ktransfer.schedules import make_schedule
from ktransfer.training import compile_model, feature_datasets, feature_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TuneConfig:
    """The search: which tuner, how many trials, where its state lives, and the search space.
    Each trial trains for --epochs (the head phase) with --batch_size."""

    tuner: str = option("random", "Search algorithm.", ("random", "hyperband", "bayesian"))
    max_trials: int = option(10, "Trials to run (random, bayesian); hyperband sizes itself "
                            "from --epochs.")
    directory: str = option("tuning", "Folder of the search state, trials.csv and best.cfg.")
    project: str = option("head", "Name of the search inside --directory; the same command "
                         "resumes it.")
    hp_layers: int = option(2, "Search 0 to this many hidden layers.")
    hp_units: tuple[int, ...] = option((64, 128, 256), "Hidden layer sizes to try.")
    hp_dropout: tuple[float, ...] = option((0.0, 0.5), "Dropout range (min,max), step 0.05.")
    hp_l2: tuple[float, ...] = option((0.0, 1e-5, 1e-4, 1e-3), "L2 penalties to try.")
    hp_lr: tuple[float, ...] = option((1e-4, 1e-1), "Learning-rate range (min,max), log scale.")
    hp_schedules: tuple[str, ...] = option(("constant", "cosine", "exponential"),
                                          "Learning-rate schedules to try.")
    hp_label_smoothing: tuple[float, ...] = option((0.0, 0.2), "Label smoothing range "
                                                  "(min,max), step 0.05.")

    def __post_init__(self) -> None:
        require(self.max_trials >= 1, "max_trials", "must be >= 1")
        require(bool(self.directory), "directory", "is required")
        require(self.hp_layers >= 0, "hp_layers", "must be >= 0")
        require(bool(self.hp_units) and min(self.hp_units) >= 1, "hp_units",
              "give sizes >= 1, e.g. 64,128")
        for name, low in (("hp_dropout", 0.0), ("hp_label_smoothing", 0.0), ("hp_lr", 1e-12)):
            pair = getattr(self, name)
            require(len(pair) == 2 and low <= pair[0] <= pair[1], name,
                  f"give min,max with {low} <= min <= max, got {','.join(map(str, pair))}")
        require(self.hp_dropout[1] < 1.0 and self.hp_label_smoothing[1] < 1.0, "hp_dropout",
              "dropout and label smoothing must stay below 1")
        require(bool(self.hp_l2) and min(self.hp_l2) >= 0.0, "hp_l2", "give penalties >= 0")
        known = ("constant", "exponential", "cosine", "step")
        require(bool(self.hp_schedules) and set(self.hp_schedules) <= set(known), "hp_schedules",
              f"choose from {', '.join(known)}")


@dataclass
class SearchResult:
    """The finished search: trials (best first), the best flagfile and timing."""

    trials: list[dict[str, Any]]
    best_flagfile: Path
    seconds: float
    cached: bool


def apply_hyperparameters(cfg: RunConfig, values: dict[str, Any]) -> RunConfig:
    """`cfg` with a trial's head hyperparameters filled in."""
    layers = int(values.get("layers", 0))
    model = dataclasses.replace(
        cfg.model, head_hidden=tuple([int(values["units"])] * layers) if layers else (),
        dropout=float(values["dropout"]), l2=float(values["l2"]),
        label_smoothing=float(values["label_smoothing"]))
    train = dataclasses.replace(cfg.train, lr=float(values["lr"]),
                                lr_schedule=str(values["lr_schedule"]))
    return dataclasses.replace(cfg, model=model, train=train)


def _space(hp, tc: TuneConfig) -> dict[str, Any]:
    values = {
        "layers": hp.Int("layers", 0, tc.hp_layers) if tc.hp_layers else 0,
        "units": hp.Choice("units", list(tc.hp_units)),
        "dropout": hp.Float("dropout", tc.hp_dropout[0], tc.hp_dropout[1], step=0.05)
        if tc.hp_dropout[1] > tc.hp_dropout[0] else hp.Fixed("dropout", tc.hp_dropout[0]),
        "l2": hp.Choice("l2", list(tc.hp_l2)),
        "lr": hp.Float("lr", tc.hp_lr[0], tc.hp_lr[1], sampling="log")
        if tc.hp_lr[1] > tc.hp_lr[0] else hp.Fixed("lr", tc.hp_lr[0]),
        "lr_schedule": hp.Choice("lr_schedule", list(tc.hp_schedules)),
        "label_smoothing": hp.Float("label_smoothing", tc.hp_label_smoothing[0],
                                    tc.hp_label_smoothing[1], step=0.05)
        if tc.hp_label_smoothing[1] > tc.hp_label_smoothing[0]
        else hp.Fixed("label_smoothing", tc.hp_label_smoothing[0]),
    }
    return values


def _atomic_tuner_state() -> None:
    """Keras Tuner writes its state (oracle, tuner, trial JSON) in place, so a kill mid-write
    can leave a file the resumed search cannot parse; route those writes through a temporary
    file and a rename. Relies on keras_tuner.src.utils.save_json (covered by the resume test).
    """
    from keras_tuner.src import utils as kt_utils

    def save_json(path, obj):
        text = json.dumps(obj)
        atomic.write_text(path, text)
        return text

    kt_utils.save_json = save_json


def _make_tuner(tc: TuneConfig, build, cfg: RunConfig):
    import keras_tuner as kt

    _atomic_tuner_state()
    common = {"objective": kt.Objective("val_accuracy", "max"), "seed": cfg.train.seed,
              "directory": tc.directory, "project_name": tc.project, "overwrite": False}
    if tc.tuner == "random":
        return kt.RandomSearch(build, max_trials=tc.max_trials, **common)
    if tc.tuner == "bayesian":
        return kt.BayesianOptimization(build, max_trials=tc.max_trials, **common)
    return kt.Hyperband(build, max_epochs=max(2, cfg.train.epochs), factor=3, **common)


def trial_table(tuner) -> list[dict[str, Any]]:
    """Every trial with its status, score (best validation accuracy) and hyperparameters,
    best first."""
    rows = []
    for trial in tuner.oracle.trials.values():
        rows.append({"trial": trial.trial_id, "status": str(trial.status),
                     "val_accuracy": None if trial.score is None else float(trial.score),
                     **trial.hyperparameters.values})
    return sorted(rows, key=lambda r: -(r["val_accuracy"] if r["val_accuracy"] is not None
                                        else -math.inf))


def format_table(rows: list[dict[str, Any]]) -> str:
    """The trials as an aligned text table."""
    if not rows:
        return "(no trials)"
    keys = list(dict.fromkeys(k for r in rows for k in r))

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return "" if v is None else str(v)

    widths = {k: max(len(k), *(len(cell(r.get(k))) for r in rows)) for k in keys}
    lines = ["  ".join(k.ljust(widths[k]) for k in keys)]
    lines += ["  ".join(cell(r.get(k)).ljust(widths[k]) for k in keys) for r in rows]
    return "\n".join(lines)


def search(cfg: RunConfig, tc: TuneConfig) -> SearchResult:
    """Runs (or resumes) the search and writes DIRECTORY/PROJECT/{trials.csv, best.cfg}."""
    started = time.time()
    keras.utils.set_random_seed(cfg.train.seed)
    spec = resolve_spec(cfg.model)
    image_size = cfg.data.image_size or spec.default_size
    splits = load_splits(cfg.data)
    backbone = build_backbone(spec, cfg.model.weights, image_size, cfg.model.backbone_layer)
    freeze(backbone)
    num_classes = len(splits.class_names)
    steps = math.ceil(len(splits.train) / cfg.data.batch_size)
    project_dir = Path(tc.directory) / tc.project
    reason = features.why_not_cacheable(cfg.augment.enabled) if cfg.train.cache_features \
        else "--cache_features is off"
    cached = reason is None
    if cached:
        probe = build_classifier(spec, backbone, num_classes, image_size, cfg.model)
        extractor, _ = features.split_classifier(probe)
        key = feature_key(cfg, image_size)
        t0 = time.time()
        train_x = features.cached(extractor, splits.train, project_dir / "cache",
                                  [*key, "train"], cfg.data.batch_size)
        val_x = features.cached(extractor, splits.val, project_dir / "cache", [*key, "val"],
                                cfg.data.batch_size)
        log.info("feature cache: on; the frozen backbone ran once (%d + %d images, %.1f s) "
                 "and every trial trains a head on %d-d feature vectors", len(train_x),
                 len(val_x), time.time() - t0, train_x.shape[1])
        train_ds, val_ds = feature_datasets(train_x, splits.train.labels, val_x,
                                            splits.val.labels, num_classes,
                                            cfg.data.batch_size, cfg.train.seed)
    else:
        log.info("feature cache: off (%s); every trial runs the frozen backbone each epoch",
                 reason)
        common = {"image_size": image_size, "batch_size": cfg.data.batch_size,
                  "cache": cfg.data.cache, "shuffle_buffer": cfg.data.shuffle_buffer,
                  "seed": cfg.train.seed, "cache_path": project_dir / "cache" / "images"}
        train_ds = make_dataset(splits.train, training=True, augment=cfg.augment, **common)
        val_ds = make_dataset(splits.val, training=False, **{
            **common, "cache_path": project_dir / "cache" / "images-val"})

    def build(hp) -> keras.Model:
        trial_cfg = apply_hyperparameters(cfg, _space(hp, tc))
        if cached:
            inputs = keras.Input((train_x.shape[1],), name="features")
            model = keras.Model(inputs, build_head(inputs, num_classes, trial_cfg.model))
        else:
            model = build_classifier(spec, backbone, num_classes, image_size, trial_cfg.model)
        compile_model(model, trial_cfg, make_schedule(trial_cfg.train, trial_cfg.train.lr, steps,
                                                      trial_cfg.train.epochs))
        return model

    tuner = _make_tuner(tc, build, cfg)
    done = sum(1 for t in tuner.oracle.trials.values() if str(t.status) == "COMPLETED")
    if done:
        log.info("resuming %s: %d trial(s) already finished", project_dir, done)
    tuner.search(train_ds, validation_data=val_ds, epochs=cfg.train.epochs,
                 verbose=cfg.train.verbose, shuffle=False)
    rows = trial_table(tuner)
    best_values = tuner.get_best_hyperparameters(1)[0].values
    best_cfg = apply_hyperparameters(cfg, best_values)
    # A trial scores its best epoch (Keras Tuner takes the best val_accuracy of its epochs);
    # keeping the best epoch's weights (EarlyStopping restores them at the end) makes the
    # retrained model the one that was scored. Patience of all epochs: it never stops early.
    best_cfg = dataclasses.replace(best_cfg, train=dataclasses.replace(
        best_cfg.train, run_dir="", overwrite=False, monitor="val_accuracy",
        early_stopping=best_cfg.train.early_stopping or best_cfg.train.epochs))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
    writer.writeheader()
    writer.writerows(rows)
    atomic.write_text(project_dir / "trials.csv", buffer.getvalue())
    best_path = project_dir / "best.cfg"
    header = (f"Best of {len(rows)} trials of {project_dir} (val_accuracy "
              f"{rows[0]['val_accuracy']:.4f}); retrain with:\n"
              f"python -m ktransfer.train --flagfile={best_path}")
    atomic.write_text(best_path, to_flagfile(best_cfg, header))
    return SearchResult(rows, best_path, time.time() - started, cached)

