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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ktransfer import preflight
from ktransfer.config import RunConfig, SearchConfig, TuneConfig, to_flagfile
from ktransfer.data.examples import Splits
from ktransfer.modality import Modality, Network
from ktransfer.network import features
from ktransfer.network.classifier import compile_classifier
from ktransfer.network.freezing import freeze
from ktransfer.network.heads import build_head
from ktransfer.optim.schedules import make_schedule
from ktransfer.runs import atomic
from ktransfer.tasks import task_of
from ktransfer.training import train
from ktransfer.tuning.catalog import ADAPTATION_ORACLES, SPACES, TUNERS

log = logging.getLogger(__name__)


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


def _space(hp, tc: TuneConfig, smooths: bool = True) -> dict[str, Any]:
    """The search space of --hp_* (label smoothing fixed at 0 for a task without it)."""
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
        if smooths and tc.hp_label_smoothing[1] > tc.hp_label_smoothing[0]
        else hp.Fixed("label_smoothing", tc.hp_label_smoothing[0] if smooths else 0.0),
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


# --tuner (tuning.catalog.TUNERS): (build, tune config, epochs, **common) -> a Keras Tuner tuner
def random_tuner(build: Any, tc: TuneConfig, epochs: int, **common: Any) -> Any:
    return _kt().RandomSearch(build, max_trials=tc.max_trials, **common)


def hyperband_tuner(build: Any, tc: TuneConfig, epochs: int, **common: Any) -> Any:
    return _kt().Hyperband(build, max_epochs=max(2, epochs), factor=3, **common)


def bayesian_tuner(build: Any, tc: TuneConfig, epochs: int, **common: Any) -> Any:
    return _kt().BayesianOptimization(build, max_trials=tc.max_trials, **common)


# --tuner for --space=adaptation (tuning.catalog.ADAPTATION_ORACLES): a Keras Tuner oracle
def random_oracle(**kw: Any) -> Any:
    return _kt().oracles.RandomSearchOracle(**kw)


def bayesian_oracle(**kw: Any) -> Any:
    return _kt().oracles.BayesianOptimizationOracle(**kw)


def _kt() -> Any:
    import keras_tuner

    return keras_tuner


def _make_tuner(tc: TuneConfig, build: Callable[[Any], keras.Model], cfg: RunConfig) -> Any:
    """The tuner of --tuner, scoring a trial by the task's objective (single-label: the best
    val_accuracy of its epochs)."""
    _atomic_tuner_state()
    task = task_of(cfg)
    score = f"val_{task.objective}"
    direction = "max" if task.higher_is_better(score) else "min"
    common = {"objective": _kt().Objective(score, direction), "seed": cfg.train.seed,
              "directory": tc.directory, "project_name": tc.project, "overwrite": False}
    tuner = TUNERS.get(tc.tuner)(build, tc, cfg.train.epochs, **common)
    retry_orphaned_trials(tuner.oracle)
    return tuner


def retry_orphaned_trials(oracle: Any) -> list[str]:
    """Sends a reloaded search's orphaned trials back to be run: Keras Tuner writes a new
    trial's trial.json (status RUNNING) before the oracle.json that lists it as ongoing, so a
    search killed between the two writes reloaded the trial as RUNNING but never retried it,
    and drew its values again as a new trial (a trials table with a RUNNING row and two rows of
    the same values). Returns the ids sent back."""
    queued = set(oracle._retry_queue)
    orphans = [trial_id for trial_id, trial in oracle.trials.items()
               if trial.status == "RUNNING" and trial_id not in queued]
    for trial_id in orphans:
        trial = oracle.trials[trial_id]
        oracle._retry_queue.append(trial_id)
        oracle._tried_so_far.add(oracle._compute_values_hash(trial.hyperparameters.values))
        if trial_id not in oracle.start_order:
            oracle.start_order.append(trial_id)
    return orphans


def trial_table(tuner, score: str = "val_accuracy", extra: tuple[str, ...] = (),
                lower_is_better: bool = False) -> list[dict[str, Any]]:
    """Every trial with its status, `score` (the objective's best value), the `extra` metrics
    it recorded and its hyperparameters, best first (ties by trial id)."""
    sign = -1.0 if lower_is_better else 1.0
    rows = []
    for trial in tuner.oracle.trials.values():
        recorded = {name: float(trial.metrics.get_last_value(name)) for name in extra
                    if trial.metrics.exists(name)}
        rows.append({"trial": trial.trial_id, "status": str(trial.status),
                     score: None if trial.score is None else float(trial.score), **recorded,
                     **trial.hyperparameters.values})
    # Ties (a validator that saturates) keep trial order, whatever order the tuner reloads in.
    return sorted(rows, key=lambda r: (-(sign * r[score] if r[score] is not None
                                         else -math.inf), r["trial"]))


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


@dataclass
class Trials:
    """What every trial trains on: batches of cached feature vectors (`cached`) or of raw
    examples through the frozen `extractor` (backbone and pooling, shared by all trials)."""

    train: tf.data.Dataset
    val: tf.data.Dataset
    extractor: keras.Model
    cached: bool
    num_classes: int  # the model's outputs
    steps: int
    targets: np.ndarray  # of the training split (what the task's output layers take)


def _trials(cfg: RunConfig, modality: Modality, splits: Splits, network: Network,
            project_dir: Path) -> Trials:
    extractor, _ = features.split_classifier(network.model)
    feed, batch = modality.feed(cfg, network), cfg.data.batch_size
    n = task_of(cfg).outputs(splits.class_names)
    steps = math.ceil(len(splits.train) / batch)
    reason = features.why_not_cacheable(cfg, feed, network.model)
    if reason is not None:
        log.info("feature cache: off (%s); every trial runs the frozen backbone each epoch",
                 reason)
        cache = project_dir / "cache"
        return Trials(feed.dataset(splits.train, batch_size=batch, training=True,
                                   seed=cfg.train.seed, cache_path=cache / "images"),
                      feed.dataset(splits.val, batch_size=batch, cache_path=cache / "images-val"),
                      extractor, False, n, steps, splits.train.labels)
    key = features.splits_key(cfg, str(network.info), splits)
    train, val = features.cached_datasets(cfg, extractor, feed, splits, project_dir / "cache", key)
    log.info("feature cache: on; every trial trains a head on the cached vectors")
    return Trials(train, val, extractor, True, n, steps, splits.train.labels)


def _trial_model(trials: Trials, cfg: RunConfig) -> keras.Model:
    """A new head (on cached vectors, or on the shared frozen extractor), compiled."""
    if trials.cached:
        inputs = keras.Input(trials.extractor.output_shape[1:], name="features")
        x = inputs
    else:
        inputs = trials.extractor.inputs
        x = trials.extractor(inputs)
    task = task_of(cfg)
    model = keras.Model(inputs, build_head(x, trials.num_classes, cfg.model, task=task))
    task.prepare(model, trials.targets)
    compile_classifier(model, cfg, make_schedule(cfg.train, cfg.train.lr, trials.steps,
                                                 cfg.train.epochs))
    return model


def search(search_cfg: SearchConfig) -> SearchResult:
    """Runs (or resumes) the search of --space and writes DIRECTORY/PROJECT/{trials.csv,
    best.cfg}."""
    started = time.time()
    search_cfg = dataclasses.replace(search_cfg,
                                     run=preflight.with_defaults(search_cfg.run, run_dir=False))
    modality = preflight.check_search(search_cfg)
    result = SPACES.get(search_cfg.tune.space)(search_cfg, modality)
    return dataclasses.replace(result, seconds=time.time() - started)


def head_search(search_cfg: SearchConfig, modality: Modality) -> SearchResult:
    """The head's hyperparameters, every trial a head on the frozen backbone's features."""
    cfg, tc = search_cfg.run, search_cfg.tune
    keras.utils.set_random_seed(cfg.train.seed)
    splits = modality.load_splits(cfg)
    task = task_of(cfg)
    network = modality.build(cfg, task.outputs(splits.class_names))
    freeze(network.backbone)
    project_dir = Path(tc.directory) / tc.project
    trials = _trials(cfg, modality, splits, network, project_dir)
    tuner = _make_tuner(
        tc, lambda hp: _trial_model(trials, apply_hyperparameters(
            cfg, _space(hp, tc, task.smooths))), cfg)
    done = sum(1 for t in tuner.oracle.trials.values() if str(t.status) == "COMPLETED")
    if done:
        log.info("resuming %s: %d trial(s) already finished", project_dir, done)
    tuner.search(trials.train, validation_data=trials.val, epochs=cfg.train.epochs,
                 verbose=cfg.train.verbose, shuffle=False)
    score = f"val_{task.objective}"
    rows = trial_table(tuner, score, lower_is_better=not task.higher_is_better(score))
    best_cfg = apply_hyperparameters(cfg, rows[0])
    # A trial scores its best epoch (Keras Tuner takes the best objective of its epochs);
    # keeping the best epoch's weights (EarlyStopping restores them at the end) makes the
    # retrained model the one that was scored. Patience of all epochs: it never stops early.
    best_cfg = dataclasses.replace(best_cfg, train=dataclasses.replace(
        best_cfg.train, monitor=score,
        early_stopping=best_cfg.train.early_stopping or best_cfg.train.epochs))
    best_path = _write_results(best_cfg, rows, score, project_dir)
    return SearchResult(rows, best_path, 0.0, trials.cached)


def apply_adaptation(cfg: RunConfig, values: dict[str, Any], objective: str) -> RunConfig:
    """`cfg` with a trial's alignment, MMD weight and (when searched) source run, keeping the
    epoch `objective` scores best (so the model a trial is scored by is the one it keeps)."""
    model = (dataclasses.replace(cfg.model, init_from=str(values["init_from"]))
             if values.get("init_from") else cfg.model)
    return dataclasses.replace(cfg, model=model, adapt=dataclasses.replace(
        cfg.adapt, mmd_alignment=str(values["mmd_alignment"]),
        mmd_weight=float(values["mmd_weight"]), da_select=objective))


def _adaptation_trial(cfg: RunConfig, run_dir: Path) -> dict[str, float]:
    """Trains one adaptation run into `run_dir`; the kept epoch's validator score (and the
    true target accuracy, with --target_eval_data, for judging the search only)."""
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(
        cfg.train, run_dir=str(run_dir), overwrite=True, export_dir=""))
    metrics = train(cfg).metrics["adaptation"]
    kept = metrics["selection"]["best"]
    out = {cfg.adapt.da_select: float(kept["scores"][cfg.adapt.da_select])}
    if "target_accuracy" in metrics:
        out["target_accuracy"] = float(metrics["target_accuracy"])
    return out


def adaptation_search(search_cfg: SearchConfig, modality: Modality) -> SearchResult:
    """--mmd_alignment, --mmd_weight and (--hp_init_from) the source run, every trial a whole
    adaptation run of the train flags (in DIRECTORY/PROJECT/runs/TRIAL), ranked by
    --objective's score without target labels."""
    cfg, tc = search_cfg.run, search_cfg.tune
    project_dir = Path(tc.directory) / tc.project
    kt = _kt()
    tuner_base: Any = kt.Tuner

    class AdaptationTuner(tuner_base):
        def run_trial(self, trial, *args, **kwargs):
            hp = trial.hyperparameters
            values = {"mmd_alignment": hp.Choice("mmd_alignment", list(tc.hp_alignments)),
                      "mmd_weight": hp.Choice("mmd_weight", list(tc.hp_mmd_weights))}
            if tc.hp_init_from:
                values["init_from"] = hp.Choice("init_from", list(tc.hp_init_from))
            return _adaptation_trial(apply_adaptation(cfg, values, tc.objective),
                                     project_dir / "runs" / trial.trial_id)

    _atomic_tuner_state()
    oracle = ADAPTATION_ORACLES.get(tc.tuner)(
        objective=kt.Objective(tc.objective, "max"), max_trials=tc.max_trials,
        seed=cfg.train.seed)
    tuner = AdaptationTuner(oracle=oracle, directory=tc.directory, project_name=tc.project,
                            overwrite=False)
    retry_orphaned_trials(tuner.oracle)
    tuner.search()
    rows = trial_table(tuner, tc.objective, ("target_accuracy",))
    best_cfg = apply_adaptation(cfg, rows[0], tc.objective)
    best_path = _write_results(best_cfg, rows, tc.objective, project_dir)
    return SearchResult(rows, best_path, 0.0, False)




def _write_results(best_cfg: RunConfig, rows: list[dict[str, Any]], score: str,
                   project_dir: Path) -> Path:
    """Writes trials.csv and best.cfg (a flagfile that retrains the winner, `best_cfg`);
    returns best.cfg."""
    best_cfg = dataclasses.replace(best_cfg, train=dataclasses.replace(
        best_cfg.train, run_dir="", overwrite=False))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
    writer.writeheader()
    writer.writerows(rows)
    atomic.write_text(project_dir / "trials.csv", buffer.getvalue())
    best_path = project_dir / "best.cfg"
    header = (f"Best of {len(rows)} trials of {project_dir} ({score} "
              f"{rows[0][score]:.4f}); retrain with:\n"
              f"python -m ktransfer.train --flagfile={best_path}")
    atomic.write_text(best_path, to_flagfile(best_cfg, header))
    return best_path
