"""The training job, in phases that read top to bottom:

    prepare      the data, the network, the input pipelines and the (locked) run directory
    head         phase 1: the new head on the frozen backbone (on cached features when it can)
    fine-tune    phase 2: the top of the backbone unfrozen, one stage per gradual-unfreezing step
    finish       AdaBN, evaluation, model files, metrics.json, the report and the export

A run saves its position after every epoch (`callbacks.ResumeState`), so the same command
continues a killed run: finished stages are skipped, the stage it was in goes on from its last
epoch, and the finishing steps (which are idempotent) run again. `train(cfg)` is what
`python -m ktransfer.train` calls; it is usable from a notebook as is.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ktransfer import (
    adaptation,
    atomic,
    config,
    distribute,
    features,
    prediction,
    preflight,
    rundir,
)
from ktransfer.callbacks import (
    AtomicCheckpoint,
    EMAWeights,
    HistoryWriter,
    NaNGuard,
    ResumeState,
    TensorBoard,
    load_resumed,
    weights_fingerprint,
)
from ktransfer.classifier import compile_classifier, inference_model
from ktransfer.config import FindLRConfig, LRFinderConfig, ModelConfig, RunConfig
from ktransfer.data import manifest
from ktransfer.data.examples import Splits
from ktransfer.data.splits import class_weights
from ktransfer.errors import ConfigError, TrainingError
from ktransfer.evaluation import evaluate, scores
from ktransfer.freezing import (
    describe,
    freeze,
    gradual_stages,
    layer_lr_multipliers,
    select,
    set_trainable,
)
from ktransfer.lr_finder import FLAG_OF_PHASE, find_lr
from ktransfer.modality import Feed, Modality, Network
from ktransfer.recording import ValidationRecorder
from ktransfer.report import write_report
from ktransfer.saving import load_classifier
from ktransfer.schedules import make_schedule
from ktransfer.serving import export, versions
from ktransfer.validators import VALIDATORS

log = logging.getLogger(__name__)
L2SP_ANCHOR = "l2sp_anchor.weights.h5"  # in the resume folder


@dataclass
class TrainResult:
    """What a finished run produced. `metrics` is the content of RUN_DIR/metrics.json."""

    run_dir: Path
    model: keras.Model
    metrics: dict[str, Any]


@dataclass(frozen=True)
class Stage:
    """One fit: the head phase, or one stage of the fine-tuning phase.

    Args:
        phase: "head" or "fine_tune".
        index: the gradual-unfreezing stage (0 for the head phase).
        layers: backbone layers that train (empty: the backbone is frozen).
        epochs: epochs the phase's schedule spans.
        stage_epochs: epochs of this stage.
        offset: epochs into the phase where this stage starts.
        peak_lr: the phase's peak learning rate.
    """

    phase: str
    index: int
    layers: list[keras.layers.Layer]
    epochs: int
    stage_epochs: int
    offset: int
    peak_lr: float


@dataclass(frozen=True)
class Fitted:
    """What the training phases leave for `finish`.

    Args:
        head_epochs: epochs of the head phase.
        epochs: epochs in all.
        recorder: the predictions of the last validation pass (`ktransfer.recording`).
    """

    head_epochs: int
    epochs: int
    recorder: ValidationRecorder


@dataclass
class Job:
    """Everything a run's phases share, made by `prepare`."""

    cfg: RunConfig
    modality: Modality
    splits: Splits
    network: Network
    stages: list[Stage]
    feed: Feed
    run: rundir.Run
    train_ds: tf.data.Dataset
    val_ds: tf.data.Dataset
    test_ds: tf.data.Dataset | None
    steps: int  # optimizer steps per epoch
    adapt: adaptation.Adaptation | None
    class_weights: dict[int, float] | None = None
    fingerprint: str = ""  # of the data (the split manifest)
    anchors: dict[str, np.ndarray] | None = None  # --l2sp's w0, by variable path
    started: float = field(default_factory=time.time)

    @property
    def run_dir(self) -> Path:
        return self.run.path

    @property
    def model(self) -> keras.Model:
        return self.network.model


def train(cfg: RunConfig) -> TrainResult:
    """Runs both phases as configured and fills the run directory; returns the trained model.

    Checks every flag first (pre-flight), then builds and trains under the configured
    tf.distribute strategy and precision policy (the previous global policy is restored
    afterwards). A non-chief multi-worker process runs the same steps but writes into a
    temporary folder it deletes at the end.
    """
    modality = preflight.check_train(cfg, run_dir=distribute.is_chief())
    with _distributed(cfg) as (cfg, chief_run):
        job = prepare(cfg, modality, chief_run)
        with job.run:
            metrics = finish(job, fit_stages(job))
    return TrainResult(run_dir=job.run_dir, model=job.model, metrics=metrics)


def adapt(run: str | Path, target: str, *, alignment: str = "class", weight: float = 0.3,
          adabn: bool = True, select: str = "source_val", epochs: int = 10, lr: float = 1e-3,
          run_dir: str = "", **flags: Any) -> TrainResult:
    """Adapts a finished run to unlabelled `target` data: its flags and every weight, then
    `epochs` of fine-tuning with the MMD `alignment` at `weight`, AdaBN and the epoch
    `select`ed without target labels (see ktransfer/validators.py).

    Args:
        run: the source run's directory (trained with labels, e.g. by `train`).
        target: unlabelled target data, any `--data` form.
        alignment, weight, adabn, select: --mmd_alignment, --mmd_weight, --adabn, --da_select.
        epochs, lr: fine-tuning epochs and peak learning rate.
        run_dir: where the adapted run goes (default: beside the source run, `-adapted`).
        **flags: any other flag, e.g. target_eval_data="builtin:digits_m", target_loss="im".

    Example:
        source = train(config.from_flagfile("configs/digits_m_source.cfg")).run_dir
        adapted = adapt(source, "builtin:digits_m", target_eval_data="builtin:digits_m")
        adapted.metrics["adaptation"]["target_accuracy"]
    """
    source = Path(run)
    values = {**config.parse_flagfile(source / rundir.FLAGFILE, skip_unknown=True),
              "init_from": str(source), "target_data": target, "mmd_alignment": alignment,
              "mmd_weight": weight, "adabn": adabn, "da_select": select, "epochs": 0,
              "fine_tune_epochs": epochs, "fine_tune_lr": lr, "warmup_epochs": 0.0,
              "run_dir": run_dir or f"{source}-adapted", "export_dir": "", "overwrite": False,
              **flags}
    return train(config.build(**values))


def adapt_best(runs: Sequence[str | Path], target: str, *, pick: str = "im",
               **kwargs: Any) -> TrainResult:
    """`adapt` from each of several source runs (typically the same source training with other
    `--seed` values) and the adapted run whose kept epoch the validator `pick` scores highest,
    without target labels. How well class alignment works depends mostly on the source model
    (README, "Adapting from several source runs"): on the digits benchmark, five source runs
    chosen among by `im` put every seed within 6 points of the mean.

    Args:
        runs: the source runs' directories; each adapted run goes beside its source
            (`-adapted`).
        target: unlabelled target data, any `--data` form.
        pick: a validator of `ktransfer.validators` (im, bnm, snd, dev, source_val).
        **kwargs: `adapt`'s keywords and flags (not run_dir).

    Example:
        best = adapt_best(["runs/src1", "runs/src2", "runs/src3"], "builtin:digits_m")
        best.run_dir, best.metrics["adaptation"]["selection"]["best"]["scores"]["im"]
    """
    VALIDATORS.check(pick, "pick")
    if len(runs) == 0 or "run_dir" in kwargs:
        raise ConfigError("runs", "give one or more source runs (each adapted run goes "
                          "beside its source, so run_dir is not taken)")
    adapted = [adapt(run, target, **kwargs) for run in runs]
    scores = [r.metrics["adaptation"]["selection"]["best"]["scores"][pick] for r in adapted]
    for result, score in zip(adapted, scores, strict=True):
        log.info("adapted into %s: %s %.4g", result.run_dir, pick, score)
    return adapted[int(np.argmax(scores))]


@contextlib.contextmanager
def _distributed(cfg: RunConfig) -> Iterator[tuple[RunConfig, Path | None]]:
    """Enters the strategy scope and precision policy; yields the config and, for a worker
    other than the chief, the chief's run directory to resume from (None with --overwrite).
    Such a worker gets a scratch run directory (and export folder) deleted afterwards."""
    strategy = distribute.make_strategy(cfg.distribute)
    if preflight.accumulation_untested(cfg, strategy.num_replicas_in_sync):  # auto on 2 GPUs
        raise ConfigError("accumulate", preflight.ACCUMULATE_UNTESTED)
    policy = distribute.precision_policy(cfg.distribute)
    previous_policy = keras.mixed_precision.global_policy()
    scratch = chief_run = None
    if not distribute.is_chief():
        chief_run = None if cfg.train.overwrite else rundir.run_path(cfg)
        scratch = Path(tempfile.mkdtemp(prefix="ktransfer-worker-"))
        export_dir = str(scratch / "export" / "model") if cfg.train.export_dir else ""
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(
            cfg.train, run_dir=str(scratch / "run"), overwrite=True, export_dir=export_dir))
    log.info("strategy %s: %s, %d replica(s); precision %s, XLA %s", cfg.distribute.strategy,
             type(strategy).__name__, strategy.num_replicas_in_sync, policy,
             cfg.distribute.jit_compile)
    keras.mixed_precision.set_global_policy(policy)
    try:
        with strategy.scope():
            yield cfg, chief_run
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


# ------------------------------------------------------------------------------------ prepare


def prepare(cfg: RunConfig, modality: Modality, chief_run: Path | None = None) -> Job:
    """Reads the data and builds the network (everything that can fail on the user's input),
    then opens the run directory (resuming from `chief_run`'s state for a non-chief
    multi-worker worker) and makes the input pipelines."""
    keras.utils.set_random_seed(cfg.train.seed)
    splits = modality.load_splits(cfg)
    network = modality.build(cfg, len(splits.class_names))
    if cfg.model.init_from:
        _init_from(network.model, cfg.model, list(splits.class_names))
    cfg, range_tests = _auto_rates(cfg)
    stages = plan(cfg, network)
    run = rundir.open_run(cfg, chief_run)
    try:
        if range_tests is not None:  # kept in the run: RUN/lr_find/{head,fine_tune}/
            shutil.copytree(range_tests, run.path / "lr_find", dirs_exist_ok=True)
            shutil.rmtree(range_tests, ignore_errors=True)
        return _open_job(cfg, modality, splits, network, stages, run)
    except BaseException:
        run.release()
        raise


def _open_job(cfg: RunConfig, modality: Modality, splits: Splits, network: Network,
              stages: list[Stage], run: rundir.Run) -> Job:
    data = manifest.describe(splits, manifest.sources(cfg.data))
    if run.resume:
        manifest.check_unchanged(run.path, data)
        log.info("resuming %s after epoch %d (%s phase)", run.path, run.resume["epoch"],
                 run.resume["phase"])
        for stale in (run.path / "cache").glob("*"):  # image caches may be half written
            if stale.is_file() and not stale.name.startswith("features-"):
                stale.unlink()
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, run_dir=str(run.path)))
    rundir.write_flagfile(run.path, cfg)
    manifest.write(run.path, data)
    class_names = list(splits.class_names)
    atomic.write_text(run.path / "labels.txt", "\n".join(class_names) + "\n")
    counts = splits.counts()
    log.info("data: %d train, %d val, %d test %ss, %d classes", counts["train"], counts["val"],
             counts["test"], modality.noun, len(class_names))
    feed = modality.feed(cfg, network)
    feed.save(run.path)
    batch, cache = cfg.data.batch_size, run.path / "cache"
    train_ds = feed.dataset(splits.train, batch_size=batch, training=True, seed=cfg.train.seed,
                            repeat=bool(cfg.train.steps_per_epoch), cache_path=cache / "train")
    val_ds = feed.dataset(splits.val, batch_size=batch, cache_path=cache / "val")
    test_ds = (feed.dataset(splits.test, batch_size=batch, cache_path=cache / "test")
               if splits.test is not None else None)
    adapt = adaptation.prepare(cfg, modality, splits, network.model, feed, (train_ds, val_ds),
                               cache)
    anchors = _l2sp_anchors(cfg, network.backbone, run)
    return Job(cfg, modality, splits, network, stages, feed, run, train_ds, val_ds, test_ds,
               steps=cfg.train.steps_per_epoch or math.ceil(len(splits.train) / batch),
               adapt=adapt, class_weights=class_weights(splits.train.labels, len(class_names))
               if cfg.data.class_weights == "balanced" else None,
               fingerprint=data["fingerprint"], anchors=anchors)


def _l2sp_anchors(cfg: RunConfig, backbone: keras.Model, run: rundir.Run
                  ) -> dict[str, np.ndarray] | None:
    """--l2sp's anchor w0 {variable path: value}: the backbone's weights as the run started
    (pretrained, or --init_from's), saved in the resume folder so that a resumed run pulls
    toward the same values (read back before the resume loads its later weights)."""
    if not cfg.train.l2sp:
        return None
    saved = run.resume_dir / L2SP_ANCHOR
    if run.resume and saved.is_file():
        backbone.load_weights(saved)
    else:
        atomic.save_with(run.path / rundir.RESUME_DIR / L2SP_ANCHOR, backbone.save_weights)
    return {v.path: keras.ops.convert_to_numpy(v) for v in backbone.weights}


def _auto_rates(cfg: RunConfig) -> tuple[RunConfig, Path | None]:
    """--lr=auto / --fine_tune_lr=auto as numbers: a resumed run's own (from its flags.cfg);
    else the valley rule of a learning-rate range test per phase, head first (the fine-tune
    test trains the head at that rate). Returns the config and the folder of the tests' files
    (None when none ran)."""
    phases = cfg.train.auto_phases()
    if not phases:
        return cfg, None
    if rundir.resume_state(cfg) is not None:
        saved = config.parse_flagfile(rundir.run_path(cfg) / rundir.FLAGFILE)
        rates: dict[str, Any] = {FLAG_OF_PHASE[p]: saved[FLAG_OF_PHASE[p]] for p in phases}
        return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **rates)), None
    folder = Path(tempfile.mkdtemp(prefix="ktransfer-lr-find-"))
    for phase in phases:
        result = find_lr(LRFinderConfig(cfg, FindLRConfig(phase=phase,
                                                           output_dir=str(folder / phase))))
        rate = result.suggestions["valley"]
        log.info("--%s=auto: %.3g (valley rule of a range test; steepest descent at %.3g; "
                 "plot in RUN/lr_find/%s/lr_find.png)", result.flag, rate,
                 result.suggestions["steepest"], phase)
        found: dict[str, Any] = {result.flag: rate}
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **found))
    return cfg, folder


def _init_from(model: keras.Model, cfg: ModelConfig, class_names: list[str]) -> None:
    """Copies every weight of the classifier at `cfg.init_from` into `model` (same network)."""
    source, names, _ = load_classifier(cfg.init_from, unsafe=cfg.unsafe_load, flag="init_from")
    if names != class_names:
        raise ConfigError("init_from", f"{cfg.init_from!r} was trained on classes "
                          f"{', '.join(names)[:200]}, the data has {', '.join(class_names)[:200]};"
                          " it can only start a run on the same classes")
    weights, ours = source.get_weights(), model.get_weights()
    if [w.shape for w in weights] != [w.shape for w in ours]:
        raise ConfigError("init_from", f"{cfg.init_from!r} is a different network (backbone, "
                          "input size or --head_hidden); give the flags it was trained with "
                          "(its run's flags.cfg)")
    model.set_weights(weights)
    log.info("--init_from: all weights from %s", cfg.init_from)


def plan(cfg: RunConfig, network: Network) -> list[Stage]:
    """The stages of the run, in order: the head phase, then the fine-tuning stages (with
    --print_model, prints which layers train in each)."""
    t, backbone = cfg.train, network.backbone
    stages = []
    if t.epochs:
        stages.append(Stage("head", 0, [], t.epochs, t.epochs, 0, t.lr))
    selected = select(backbone, t.unfreeze) if t.fine_tune_epochs else []
    if t.fine_tune_epochs and not selected:
        raise ConfigError("fine_tune_epochs", f"{cfg.model.backbone} has no weights that could "
                          "train (a TF Hub module without `variables`?); use "
                          "--fine_tune_epochs=0")
    layer_sets = gradual_stages(selected) if t.gradual_unfreeze else [selected] if selected else []
    offset = 0
    for k, layers in enumerate(layer_sets):
        last = k == len(layer_sets) - 1
        n = t.fine_tune_epochs - offset if last else min(t.gradual_unfreeze,
                                                         t.fine_tune_epochs - offset)
        if n <= 0:
            break
        stages.append(Stage("fine_tune", k, layers, t.fine_tune_epochs, n, offset,
                            t.fine_tune_lr))
        offset += n
    if t.print_model:
        print(describe(network.model, backbone, layer_sets, cfg.model.bn_trainable,
                       _multipliers(cfg, network)), flush=True)
    return stages


def _multipliers(cfg: RunConfig, network: Network) -> dict[str, float] | None:
    decay = cfg.train.lr_layer_decay
    return layer_lr_multipliers(network.backbone, decay) if decay < 1.0 else None


# ------------------------------------------------------------------------------------ phases


class Callbacks:
    """The callbacks every fit shares: NaN guard, history, best/last checkpoints, resume state
    and TensorBoard (one instance each, so bests and history span both phases)."""

    def __init__(self, job: Job):
        path, t, resume = job.run_dir, job.cfg.train, job.run.resume
        self.guard = NaNGuard()
        plain = inference_model(job.model)  # checkpoints hold no optimizer state
        self.history = HistoryWriter(path / "history.csv", self.guard,
                                     keep_until=resume["epoch"] if resume else 0)
        self.best = AtomicCheckpoint(path / "checkpoints" / "best.keras", monitor=t.monitor,
                                     target=plain, guard=self.guard, deferred=True)
        self.best.discard()  # of an epoch a killed run did not commit
        self.last = AtomicCheckpoint(path / "checkpoints" / "last.keras", target=plain,
                                     guard=self.guard, twin=self.best)
        if resume and resume.get("best") is not None:
            self.best.best = float(resume["best"])
        self.state = ResumeState(path / rundir.RESUME_DIR, self.guard, self.best)
        self.board = ([TensorBoard(log_dir=str(path / "tensorboard"))]
                      if t.tensorboard else [])
        self.recorder = ValidationRecorder(len(job.splits.val), len(job.splits.class_names))

    def for_fit(self, job: Job, stage: Stage, stage_model: keras.Model, adapting: bool,
                first: int, start: int) -> list[keras.callbacks.Callback]:
        """This fit's list: a stage that began at global epoch `first`, fitting `stage_model`
        from `start` (later after a resume, whose saved weights hold the --ema average)."""
        t = job.cfg.train
        steps_done = (start - first + stage.offset) * job.steps  # of this phase
        for board in self.board:  # this fit's optimizer counts from the stage's start
            board.step_offset = first * job.steps
        ema = [EMAWeights(average_in_model=start > first)] if t.ema else []
        # First: its fingerprint at the end of validation is of the weights validation saw.
        recorder = [self.recorder] if stage_model is job.model and self.recorder.install(
            job.model) else []
        adapt = (job.adapt.callbacks(stage.epochs, job.steps, steps_done)
                 if adapting and job.adapt is not None else [])
        # The resume state commits an epoch last, after everything that records it.
        out = [*recorder, self.guard, *ema, self.history, self.best, self.last, *adapt,
               self.state, *self.board]
        if t.early_stopping:
            out.append(keras.callbacks.EarlyStopping(
                monitor=t.monitor, patience=t.early_stopping, restore_best_weights=True,
                verbose=int(t.verbose > 0)))
        return out


def _resume_position(stages: list[Stage], resume: dict[str, Any] | None) -> int:
    """Index of the stage a resumed run was in (0 for a fresh run)."""
    if not resume:
        return 0
    keys = [(s.phase, s.index) for s in stages]
    return keys.index((resume["phase"], resume["stage"]))


def fit_stages(job: Job) -> Fitted:
    """Fits the run's stages in order, skipping those a resumed run finished and stopping
    after an early stop."""
    callbacks, stages = Callbacks(job), job.stages
    resume = job.run.resume
    position = _resume_position(stages, resume)
    backbone, bn_trainable = job.network.backbone, job.cfg.model.bn_trainable
    freeze(backbone)
    head_epochs = done = 0
    for i, stage in enumerate(stages):
        stopped = False
        if stage.phase == "fine_tune":
            n = set_trainable(backbone, stage.layers, bn_trainable)
        if i < position:  # finished before the restart (position > 0: resuming)
            done = int(resume["head_epochs"]) if resume and stage.phase == "head" else \
                done + stage.stage_epochs
        else:
            if stage.phase == "fine_tune":
                log.info("fine-tuning %d backbone layers%s", n,
                         f" (stage {stage.index + 1})" if job.cfg.train.gradual_unfreeze else "")
            reached = fit_stage(job, stage, callbacks, done,
                                resume if i == position else None)
            # An early stop ends the fine-tuning; after the head phase, fine-tuning still runs.
            stopped = stage.phase == "fine_tune" and reached - done < stage.stage_epochs
            done = reached
        if stage.phase == "head":
            head_epochs = done
            callbacks.state.extra = {"head_epochs": head_epochs}
        if stopped:
            break
    return Fitted(head_epochs, done, callbacks.recorder)


def fit_stage(job: Job, stage: Stage, callbacks: Callbacks, first: int,
              resume: dict[str, Any] | None) -> int:
    """Fits one stage from global epoch `first` (or from `resume`, the state of this stage
    when the run was killed in it); returns the global epoch count reached."""
    fitted, fit_train, fit_val, kind = _fit_target(job, stage)
    state, t = callbacks.state, job.cfg.train
    state.phase, state.stage, state.fitted = stage.phase, stage.index, kind
    if resume and resume["complete"]:
        load_resumed(fitted, job.run.resume_dir, resume, job.network.backbone)
        return int(resume["epoch"])
    schedule = make_schedule(t, stage.peak_lr, job.steps, stage.epochs, stage.offset)
    compile_classifier(fitted, job.cfg, schedule,
                       _multipliers(job.cfg, job.network) if stage.phase == "fine_tune"
                       else None, job.anchors)
    _check_ema(t.ema, stage.stage_epochs * job.steps // t.accumulate)
    start = first
    if resume:  # weights and optimizer state (its step count drives the schedule)
        fitted.optimizer.build(fitted.trainable_variables)
        load_resumed(fitted, job.run.resume_dir, resume, job.network.backbone)
        start = int(resume["epoch"])
    callbacks.history.phase = stage.phase
    _save_heads_only(job, stage, kind, fitted, callbacks)
    with warnings.catch_warnings():  # length-bucketed batches: Keras cannot count them
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        fit = fitted.fit(
            fit_train, validation_data=fit_val, initial_epoch=start,
            epochs=first + stage.stage_epochs,
            steps_per_epoch=job.steps if t.steps_per_epoch else None,
            class_weight=job.class_weights, verbose=t.verbose, shuffle=False,  # tf.data shuffles
            callbacks=callbacks.for_fit(job, stage, fitted, kind == "adaptation", first, start))
    if callbacks.guard.tripped:
        rundir.mark_nan_stop(job.run_dir)
        raise TrainingError(_nan_message(callbacks.guard, job.run_dir, stage.phase))
    reached = start + len(fit.epoch)
    for checkpoint in (callbacks.best, callbacks.last):
        checkpoint.materialize()  # whole-model files of a head-only phase, once
    state.set_model(fitted)
    state.commit(reached, complete=True)
    return reached


def _save_heads_only(job: Job, stage: Stage, kind: str, fitted: keras.Model,
                     callbacks: Callbacks) -> None:
    """In the head phase the frozen backbone (BatchNorm included) cannot change: the best/last
    checkpoints hold the head's weights alone (the whole model is written once, at the end of
    the phase), and the resume state leaves the backbone out (the resumed run rebuilds it and
    checks its fingerprint). Other phases save whole models."""
    frozen_backbone = kind == "model" and stage.phase == "head"  # in the fitted model
    head = None
    if kind == "head":  # the head on cached features
        head = fitted
    elif frozen_backbone:
        head = features.split_classifier(job.model)[1]
    for checkpoint in (callbacks.best, callbacks.last):
        checkpoint.head = head
    backbone = job.network.backbone
    callbacks.state.skip = backbone if frozen_backbone else None
    callbacks.state.skip_fingerprint = weights_fingerprint(backbone) if frozen_backbone else ""


def _fit_target(job: Job, stage: Stage
                ) -> tuple[keras.Model, tf.data.Dataset, tf.data.Dataset, str]:
    """(model to fit, training batches, validation batches, kind) of a stage: the head alone on
    cached features, the adaptation model on paired batches, or the classifier."""
    if job.adapt is not None and job.adapt.model is not None:
        if stage.phase == "head" and job.cfg.train.cache_features:
            log.info("--cache_features: off; adaptation trains on target examples too")
        return job.adapt.model, job.adapt.train, job.adapt.val, "adaptation"
    if stage.phase == "head" and job.cfg.train.cache_features:
        reason = features.why_not_cacheable(job.cfg)
        if reason is None:
            return (*_cached_head(job), "head")
        log.info("--cache_features: off; %s", reason)
    return job.model, job.train_ds, job.val_ds, "model"


def _cached_head(job: Job) -> tuple[keras.Model, tf.data.Dataset, tf.data.Dataset]:
    """(head, training, validation) on backbone features computed once (or reused)."""
    extractor, head = features.split_classifier(job.model)
    key = features.feature_key(job.cfg, str(job.network.info), job.fingerprint)
    train_ds, val_ds = features.cached_datasets(job.cfg, extractor, job.feed, job.splits,
                                                job.run_dir / "cache", key,
                                                repeat=bool(job.cfg.train.steps_per_epoch))
    return head, train_ds, val_ds


def _check_ema(decay: float, updates: int) -> None:
    """Warns when --ema averages over more optimizer updates than half of the stage's."""
    if decay and 1.0 / (1.0 - decay) > updates / 2:
        log.warning("--ema=%g averages over about %d updates, more than half of this stage's %d:"
                    " the average lags far behind training; a lower --ema (e.g. %g) suits a run"
                    " this short", decay, round(1.0 / (1.0 - decay)), updates,
                    1.0 - 10.0 / max(updates, 20))


def _nan_message(guard: NaNGuard, run_dir: Path, phase: str) -> str:
    assert guard.tripped is not None
    epoch, batch = guard.tripped
    last = run_dir / "checkpoints" / "last.keras"
    kept = (f"the last good checkpoint is {last} (epoch {epoch - 1})" if last.is_file()
            else "no epoch finished, so there is no checkpoint")
    return (f"the loss became NaN or infinite in epoch {epoch}, batch {batch} ({phase} phase); "
            f"training stopped and {kept}. Run the same command with a lower learning rate "
            "(--lr / --fine_tune_lr) or --warmup_epochs to resume from there, or check the data")


# ------------------------------------------------------------------------------------ finish


def finish(job: Job, trained: Fitted) -> dict[str, Any]:
    """After training: AdaBN, metrics, model files, metrics.json, report, export. Each step
    can run again (a run killed here is finished by the same command)."""
    cfg, model, path = job.cfg, job.model, job.run_dir
    if not model.compiled:  # fitted: a head on cached features, or the adaptation model
        compile_classifier(model, cfg, cfg.train.lr)
    metrics: dict[str, Any] = {
        "modality": job.modality.name,
        "network": job.network.info,
        "epochs": {"head": trained.head_epochs,
                   "fine_tune": trained.epochs - trained.head_epochs},
        "num_examples": job.splits.counts(),
        "class_names": list(job.splits.class_names),
    }
    notes = job.modality.data_notes(job.splits, job.feed)
    if notes:
        metrics["data"] = notes
    if job.adapt is not None:
        metrics["adaptation"] = job.adapt.finish(model, job.feed, job.val_ds,
                                                 cfg.data.batch_size)
    probabilities = _split_scores(job, trained.recorder, metrics)
    atomic.save_with(path / "model.keras", inference_model(model).save)
    atomic.save_with(path / "backbone.weights.h5", job.network.backbone.save_weights)
    metrics["seconds"] = round(time.time() - job.started, 1)
    atomic.write_json(path / "metrics.json", metrics)
    if cfg.train.report:
        _report(job, probabilities)
    if cfg.train.export_dir:
        metrics["export"] = str(_export(job))
        atomic.write_json(path / "metrics.json", metrics)
        log.info("exported a SavedModel to %s", metrics["export"])
    rundir.finish(path)
    return metrics


def _split_scores(job: Job, recorder: ValidationRecorder, metrics: dict[str, Any]
                  ) -> np.ndarray:
    """Fills metrics['val'] (and 'test') with what `model.evaluate` reports; returns the
    probabilities [N, C] of the report's split (test, else validation). The validation
    split's come from the last epoch's own validation pass while the model holds the weights
    it saw, else from the pipeline that evaluated it during training (already decoded and
    cached); each split is predicted at most once."""
    model, smoothing = job.model, job.cfg.model.label_smoothing
    val = recorder.probabilities(model)
    if val is None:
        val = prediction.batch_probabilities(model, job.val_ds)
    else:
        log.debug("validation probabilities from the last epoch's validation pass")
    metrics["val"] = scores(val, job.splits.val.labels, model, smoothing)
    if job.test_ds is None or job.splits.test is None:
        return val
    test = prediction.batch_probabilities(model, job.test_ds)
    metrics["test"] = scores(test, job.splits.test.labels, model, smoothing)
    return test


def _report(job: Job, probabilities: np.ndarray) -> None:
    """report.html, from the probabilities of its split (test, else validation)."""
    splits = job.splits
    on = "test" if splits.test is not None else "validation"
    evaluate(job.model, job.modality, job.feed, list(splits.class_names),
             splits.test if splits.test is not None else splits.val, job.run_dir / "report",
             batch_size=job.cfg.data.batch_size, probabilities=probabilities)
    write_report(job.run_dir, on)


def _export(job: Job) -> Path:
    """Exports once: the version is recorded in the resume state before it is written, so a
    run killed during the export finishes it instead of adding a second version."""
    base = Path(job.cfg.train.export_dir).resolve()
    state = rundir.read_state(job.run_dir)
    version = (state or {}).get("export_version")
    if version and (base / str(version)).is_dir():
        return base / str(version)
    version = version or max(versions(base), default=0) + 1
    if state is not None:
        atomic.write_json(job.run_dir / rundir.RESUME_DIR / rundir.STATE,
                          {**state, "export_version": version})
    return export(job.model, job.modality, job.feed, list(job.splits.class_names),
                  job.cfg.train.export_dir, version=version)
