"""The training phases: the head on the frozen backbone (on cached features when it can), then
the fine-tuning stages; the callbacks every fit shares."""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from ktransfer.deploy import prediction
from ktransfer.errors import TrainingError
from ktransfer.network import features, lora, remat
from ktransfer.network.classifier import compile_classifier, inference_model
from ktransfer.network.freezing import (
    freeze,
    set_trainable,
)
from ktransfer.optim.schedules import make_schedule
from ktransfer.runs import rundir
from ktransfer.runs.progress import TrainProgress
from ktransfer.tasks import task_of
from ktransfer.training.callbacks import (
    AtomicCheckpoint,
    EMAWeights,
    HistoryWriter,
    NaNGuard,
    ResumeState,
    TensorBoard,
    load_resumed,
    weights_fingerprint,
)
from ktransfer.training.job import Fitted, Job, Stage, multipliers
from ktransfer.training.recording import EpochScores, ValidationRecorder

log = logging.getLogger("ktransfer.training")
FINE_TUNE_SEED = 1  # the fine-tuning pipeline's seed: --seed + this


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
                                     target=plain, guard=self.guard, deferred=True,
                                     mode_max=task_of(job.cfg).higher_is_better(t.monitor))
        self.best.discard()  # of an epoch a killed run did not commit
        self.last = AtomicCheckpoint(path / "checkpoints" / "last.keras", target=plain,
                                     guard=self.guard, twin=self.best)
        if resume and resume.get("best") is not None:
            self.best.best = float(resume["best"])
        self.state = ResumeState(path / rundir.RESUME_DIR, self.guard, self.best)
        self.board = ([TensorBoard(log_dir=str(path / "tensorboard"))]
                      if t.tensorboard else [])
        self.recorder = ValidationRecorder(len(job.splits.val),
                                           tuple(job.model.output_shape[1:]))

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
        out = [*recorder, *_epoch_scores(job, recorder), self.guard, *ema, self.history,
               self.best, self.last, *adapt,
               *job.tracking, self.state, *self.board,
               TrainProgress(stage.phase, first + stage.stage_epochs)]
        if t.early_stopping:
            out.append(keras.callbacks.EarlyStopping(
                monitor=t.monitor, patience=t.early_stopping, restore_best_weights=True,
                mode="max" if task_of(job.cfg).higher_is_better(t.monitor) else "min",
                verbose=int(t.verbose > 0)))
        return out


def _epoch_scores(job: Job, recorder: list[ValidationRecorder]) -> list[EpochScores]:
    """The task's whole-split validation metrics (`Task.epoch_scores`), if it has any."""
    task, labels = task_of(job.cfg), job.splits.val.labels
    if not task.epoch_metrics:
        return []

    def score(outputs: Any) -> dict[str, float]:
        state = task.fit(outputs, labels, job.cfg.group("task"))
        return task.epoch_scores(outputs, labels, state)

    return [EpochScores(score, recorder[0] if recorder else None,
                        lambda: prediction.batch_probabilities(job.model, job.val_ds))]


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
    earlier: list[int] = []  # epochs of the stages before this one in its phase
    for i, stage in enumerate(stages):
        stopped, before = False, done
        if i and stage.phase != stages[i - 1].phase:
            earlier = []
        if stage.phase == "fine_tune":
            n = set_trainable(backbone, stage.layers, bn_trainable)
            if lora.enable(backbone, job.cfg.model):
                callbacks.state.lora = backbone
            remat.enable(backbone, job.cfg.train.remat)
        if i < position:  # finished before the restart (position > 0: resuming)
            done = int(resume["head_epochs"]) if resume and stage.phase == "head" else \
                done + stage.stage_epochs
        else:
            if stage.phase == "fine_tune":
                log.info("fine-tuning %d backbone layers%s%s", n,
                         f" through rank-{job.cfg.model.lora_rank} adapters"
                         if job.cfg.model.lora_rank else "",
                         f" (stage {stage.index + 1})" if job.cfg.train.gradual_unfreeze else "")
            reached = fit_stage(job, stage, callbacks, done,
                                resume if i == position else None, tuple(earlier))
            # An early stop ends the fine-tuning; after the head phase, fine-tuning still runs.
            stopped = stage.phase == "fine_tune" and reached - done < stage.stage_epochs
            done = reached
        earlier.append(done - before)
        if stage.phase == "head":
            head_epochs = done
            callbacks.state.extra = {"head_epochs": head_epochs}
        if stopped:
            break
    return Fitted(head_epochs, done, callbacks.recorder)


def fit_stage(job: Job, stage: Stage, callbacks: Callbacks, first: int,
              resume: dict[str, Any] | None, earlier: tuple[int, ...] = ()) -> int:
    """Fits one stage from global epoch `first` (or from `resume`, the state of this stage
    when the run was killed in it; `earlier`: the epochs of the phase's stages before it,
    which drew from the same pipeline); returns the global epoch count reached."""
    fitted, fit_train, fit_val, kind = _fit_target(job, stage)
    state, t = callbacks.state, job.cfg.train
    state.phase, state.stage, state.fitted = stage.phase, stage.index, kind
    if resume and resume["complete"]:
        load_resumed(fitted, job.run.resume_dir, resume, job.network.backbone)
        return int(resume["epoch"])
    schedule = make_schedule(t, stage.peak_lr, job.steps, stage.epochs, stage.offset)
    compile_classifier(fitted, job.cfg, schedule,
                       multipliers(job.cfg, job.network) if stage.phase == "fine_tune"
                       else None, job.anchors)
    _check_ema(t.ema, stage.stage_epochs * job.steps // t.accumulate)
    start = first
    if resume:  # weights and optimizer state (its step count drives the schedule)
        fitted.optimizer.build(fitted.trainable_variables)
        load_resumed(fitted, job.run.resume_dir, resume, job.network.backbone)
        start = int(resume["epoch"])
    if start > first:
        fit_train = replay(fit_train, earlier, start - first,
                           job.steps if t.steps_per_epoch else 0)
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


class _Drain(keras.Model):
    """Draws batches as `fit` does and trains nothing: replays a pipeline's finished epochs
    (Keras' own iteration, so shuffle and augmentation advance exactly as in training)."""

    def call(self, inputs: Any) -> Any:  # a distribution strategy builds the model first
        return inputs

    def train_step(self, data: Any) -> dict:
        return {"examples": tf.shape(keras.tree.flatten(data)[0])[0]}


def replay(batches: tf.data.Dataset, earlier: tuple[int, ...], done: int, steps: int
           ) -> tf.data.Dataset:
    """`batches` as a resumed stage continues them: what the phase drew from them before the
    kill is drawn again, with no model work, so the run goes on as if never killed.
    `earlier`: epochs of the phase's finished stages; `done`: this stage's finished epochs.
    Without `steps` Keras draws one pass per epoch, whatever the stage; with `steps` (a repeated
    pipeline) one iterator per stage: the finished stages' are drawn again and this stage's
    first `done * steps` batches skipped on the iterator it trains from."""
    started, drain = time.time(), _Drain(name="drain")
    drain.compile()
    epochs = [sum(earlier) + done] if not steps else list(earlier)
    for count in (e for e in epochs if e):
        drain.fit(batches, epochs=count, steps_per_epoch=steps or None, verbose=0)
    if any(epochs):
        log.info("resuming: %d epoch(s) of the input pipeline drawn again in %.1f s",
                 sum(epochs), time.time() - started)
    return batches.skip(done * steps) if steps else batches


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
        reason = features.why_not_cacheable(job.cfg, job.feed, job.model)
        if reason is None:
            return (*_cached_head(job), "head")
        log.info("--cache_features: off; %s", reason)
    if stage.phase == "fine_tune":
        return job.model, _fine_tune_batches(job), job.val_ds, "model"
    return job.model, job.train_ds, job.val_ds, "model"


def _fine_tune_batches(job: Job) -> tf.data.Dataset:
    """The fine-tuning phase's training batches: a pipeline of its own, seeded for the phase,
    so that its shuffle (and augmentation) order does not depend on how the head phase was
    fed (on cached features it never drew from `job.train_ds`; without them it drew one pass
    per epoch). Made once per phase (its gradual-unfreezing stages share it)."""
    if job.fine_tune_ds is None:
        cfg = job.cfg
        job.fine_tune_ds = job.feed.dataset(
            job.splits.train, batch_size=cfg.data.batch_size, training=True,
            seed=cfg.train.seed + FINE_TUNE_SEED, repeat=bool(cfg.train.steps_per_epoch),
            cache_path=job.run_dir / "cache" / "train-fine_tune")
    return job.fine_tune_ds


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

