"""The training job: data -> backbone + head -> phase 1 (frozen) -> phase 2 (fine-tune) -> run dir.

`train(cfg)` is what `python -m ktransfer.train` calls; it is usable from a notebook as is.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

from ktransfer import atomic, distribute, features, rundir
from ktransfer.backbones import build_backbone, resolve_spec
from ktransfer.callbacks import AtomicCheckpoint, HistoryWriter, NaNGuard, ResumeState
from ktransfer.classifier import build_classifier
from ktransfer.config import ModelConfig, RunConfig, to_flagfile
from ktransfer.data.pipeline import make_dataset
from ktransfer.data.sources import Splits, class_weights, load_splits
from ktransfer.errors import ConfigError, TrainingError
from ktransfer.features import split_classifier, why_not_cacheable
from ktransfer.freezing import (
    describe,
    freeze,
    gradual_stages,
    layer_lr_multipliers,
    select,
    set_trainable,
)
from ktransfer.optimizers import make_optimizer
from ktransfer.schedules import make_schedule

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a finished run produced. `metrics` is the content of RUN_DIR/metrics.json."""

    run_dir: Path
    model: keras.Model
    metrics: dict[str, Any]


def compile_model(model: keras.Model, cfg: RunConfig, learning_rate,
                  lr_multipliers: dict[str, float] | None = None) -> None:
    """Compiles with categorical cross-entropy (label smoothing), accuracy and top-5 accuracy."""
    num_classes = model.output_shape[-1]
    metrics: list[Any] = [keras.metrics.CategoricalAccuracy(name="accuracy")]
    if num_classes > 5:
        metrics.append(keras.metrics.TopKCategoricalAccuracy(k=5, name="top5_accuracy"))
    model.compile(
        jit_compile={"on": True, "off": False}.get(cfg.distribute.jit_compile, "auto"),
        optimizer=make_optimizer(cfg.train, learning_rate, lr_multipliers),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.model.label_smoothing),
        metrics=metrics,
    )


def _datasets(cfg: RunConfig, splits: Splits, image_size: int, run_dir: Path):
    d = cfg.data
    common = {"image_size": image_size, "batch_size": d.batch_size, "cache": d.cache,
              "shuffle_buffer": d.shuffle_buffer, "seed": cfg.train.seed}
    train = make_dataset(splits.train, training=True, augment=cfg.augment,
                         cache_path=run_dir / "cache" / "train",
                         repeat=bool(cfg.train.steps_per_epoch), **common)
    val = make_dataset(splits.val, training=False, cache_path=run_dir / "cache" / "val", **common)
    test = None
    if splits.test is not None:
        test = make_dataset(splits.test, training=False, cache_path=run_dir / "cache" / "test",
                            **common)
    return train, val, test


def feature_key(cfg: RunConfig, image_size: int) -> list[str]:
    """What cached backbone features depend on: the data flags, the backbone and its input."""
    m = cfg.model
    return [to_flagfile(cfg.data), m.backbone, m.weights, m.backbone_layer, m.preprocess,
            m.hub_output_key, m.pooling, str(image_size)]


def feature_datasets(train_x, train_y, val_x, val_y, num_classes: int, batch_size: int,
                     seed: int, repeat: bool = False):
    """tf.data pipelines of cached feature vectors with one-hot labels (training shuffled)."""
    import tensorflow as tf

    def make(x, y, training):
        ds = tf.data.Dataset.from_tensor_slices((x, tf.one_hot(y, num_classes)))
        if training:
            ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
            if repeat:
                ds = ds.repeat()
        return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)

    return make(train_x, train_y, True), make(val_x, val_y, False)


def _cached_head(cfg: RunConfig, model: keras.Model, splits: Splits, image_size: int,
                 run_dir: Path):
    """(head, train, val) on cached features for phase 1, or None (logged) when augmentation
    rules caching out."""
    reason = why_not_cacheable(cfg.augment.enabled)
    if reason:
        log.info("--cache_features: off; %s", reason)
        return None
    started = time.time()
    extractor, head = split_classifier(model)
    key = feature_key(cfg, image_size)
    cache_dir = run_dir / "cache"
    train_x = features.cached(extractor, splits.train, cache_dir, [*key, "train"],
                              cfg.data.batch_size)
    val_x = features.cached(extractor, splits.val, cache_dir, [*key, "val"],
                            cfg.data.batch_size)
    log.info("--cache_features: backbone features of %d + %d images computed once in %.1f s; "
             "the head trains on them", len(train_x), len(val_x), time.time() - started)
    train_ds, val_ds = feature_datasets(
        train_x, splits.train.labels, val_x, splits.val.labels, len(splits.class_names),
        cfg.data.batch_size, cfg.train.seed, repeat=bool(cfg.train.steps_per_epoch))
    return head, train_ds, val_ds


def _target_sets(cfg: RunConfig, splits: Splits):
    """(unlabelled target images or None, labelled target evaluation images or None)."""
    from ktransfer.data.sources import open_source
    from ktransfer.evaluation import align

    a = cfg.adapt
    target = target_eval = None
    if a.target_data:
        sets = open_source(a.target_data, cfg.data.data_dir, "target_data",
                           cfg.data.on_bad_image)
        target = sets.get("train", sets.get("all"))
    if a.target_eval_data:
        sets = open_source(a.target_eval_data, cfg.data.data_dir, "target_eval_data",
                           cfg.data.on_bad_image)
        chosen = sets.get("test", sets.get("all", sets.get("train")))
        target_eval = align(chosen.relabel(tuple(c for c in splits.class_names
                                                 if c in chosen.class_names)),
                            list(splits.class_names), "target_eval_data")
    return target, target_eval


def _nan_message(guard: NaNGuard, run_dir: Path, phase: str) -> str:
    epoch, batch = guard.tripped
    last = run_dir / "checkpoints" / "last.keras"
    kept = (f"the last good checkpoint is {last} (epoch {epoch - 1})" if last.is_file()
            else "no epoch finished, so there is no checkpoint")
    return (f"the loss became NaN or infinite in epoch {epoch}, batch {batch} ({phase} phase); "
            f"training stopped and {kept}. Lower the learning rate (--lr / --fine_tune_lr), "
            "add --warmup_epochs, or check the data")


def train(cfg: RunConfig) -> TrainResult:
    """Runs both phases as configured and fills the run directory; returns the trained model.

    Builds and trains under the configured tf.distribute strategy and precision policy (the
    previous global policy is restored afterwards). A non-chief multi-worker process runs the
    same steps but writes into a temporary folder it deletes at the end.
    """
    strategy = distribute.make_strategy(cfg.distribute)
    policy = distribute.precision_policy(cfg.distribute)
    previous_policy = keras.mixed_precision.global_policy()
    scratch = None
    if not distribute.is_chief():
        scratch = Path(tempfile.mkdtemp(prefix="ktransfer-worker-"))
        export_dir = str(scratch / "export" / "model") if cfg.train.export_dir else ""
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(
            cfg.train, run_dir=str(scratch / "run"), overwrite=True, export_dir=export_dir))
    log.info("strategy %s: %s, %d replica(s); precision %s%s", cfg.distribute.strategy,
             type(strategy).__name__, strategy.num_replicas_in_sync, policy,
             f", XLA {cfg.distribute.jit_compile}")
    keras.mixed_precision.set_global_policy(policy)
    try:
        with strategy.scope():
            return _train(cfg)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _init_from(model: keras.Model, cfg: ModelConfig, class_names: list[str]) -> None:
    """Copies every weight of the classifier at `cfg.init_from` into `model` (same network)."""
    from ktransfer.saving import load_classifier

    source, names, _ = load_classifier(cfg.init_from, unsafe=cfg.unsafe_load, flag="init_from")
    if names != class_names:
        raise ConfigError("init_from", f"{cfg.init_from!r} was trained on classes "
                          f"{', '.join(names)[:200]}, the data has {', '.join(class_names)[:200]};"
                          " it can only start a run on the same classes")
    weights, ours = source.get_weights(), model.get_weights()
    if [w.shape for w in weights] != [w.shape for w in ours]:
        raise ConfigError("init_from", f"{cfg.init_from!r} is a different network (backbone, "
                          "--image_size or --head_hidden); give the flags it was trained with "
                          "(its run's flags.cfg)")
    model.set_weights(weights)
    log.info("--init_from: all weights from %s", cfg.init_from)


def _train(cfg: RunConfig) -> TrainResult:
    started = time.time()
    keras.utils.set_random_seed(cfg.train.seed)
    # Everything that can fail on user input happens before the run directory is touched.
    spec = resolve_spec(cfg.model)
    image_size = cfg.data.image_size or spec.default_size
    splits = load_splits(cfg.data)
    target, target_eval = _target_sets(cfg, splits)
    backbone = build_backbone(spec, cfg.model.weights, image_size, cfg.model.backbone_layer)
    model = build_classifier(spec, backbone, len(splits.class_names), image_size, cfg.model)
    if cfg.model.init_from:
        _init_from(model, cfg.model, list(splits.class_names))
    t = cfg.train
    selected = select(backbone, t.unfreeze) if t.fine_tune_epochs else []
    stages = gradual_stages(selected) if t.gradual_unfreeze else [selected] if selected else []
    multipliers = (layer_lr_multipliers(backbone, t.lr_layer_decay)
                   if t.lr_layer_decay < 1.0 else None)
    resume = rundir.resume_state(cfg)
    run_dir = rundir.prepare(cfg, resuming=resume is not None)
    if resume:
        log.info("resuming %s after epoch %d (%s phase)", run_dir, resume["epoch"],
                 resume["phase"])
        for stale in (run_dir / "cache").glob("*"):  # image caches may be half written
            if stale.is_file() and not stale.name.startswith("features-"):
                stale.unlink()
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, run_dir=str(run_dir)))
    rundir.write_flagfile(run_dir, cfg)
    class_names = list(splits.class_names)
    atomic.write_text(run_dir / "labels.txt", "\n".join(class_names) + "\n")
    log.info("data: %d train, %d val, %s test images, %d classes", len(splits.train),
             len(splits.val), len(splits.test) if splits.test else 0, len(class_names))

    train_ds, val_ds, test_ds = _datasets(cfg, splits, image_size, run_dir)
    steps = cfg.train.steps_per_epoch or math.ceil(len(splits.train) / cfg.data.batch_size)
    weights = (class_weights(splits.train.labels, len(class_names))
               if cfg.data.class_weights == "balanced" else None)
    adapt = None
    target_eval_ds = None
    if target_eval is not None:
        target_eval_ds = make_dataset(target_eval, training=False, image_size=image_size,
                                      batch_size=cfg.data.batch_size, cache="memory")
    if target is not None:
        from ktransfer.adaptation import DomainAdaptationModel, paired

        target_ds = make_dataset(target, training=True, augment=cfg.augment,
                                 image_size=image_size, batch_size=cfg.data.batch_size,
                                 cache=cfg.data.cache, cache_path=run_dir / "cache" / "target",
                                 shuffle_buffer=cfg.data.shuffle_buffer, seed=t.seed + 1)
        dan = DomainAdaptationModel(model, cfg.adapt)
        adapt = (dan, paired(train_ds, target_ds), paired(val_ds, target_ds), dan.mmd_layers)
        if (cfg.adapt.mmd_alignment == "class" and cfg.model.weights == "none"
                and not cfg.model.init_from and cfg.adapt.mmd_weight > 0):
            log.warning("--mmd_alignment=class weighs target images by the network's own "
                        "predictions; from random weights they mean nothing and training can "
                        "collapse: start from a trained model (--init_from=RUN)")
        log.info("adaptation: %d unlabelled target images, MMD weight %g%s on %d layer(s)",
                 len(target), cfg.adapt.mmd_weight, " (ramped up)" if cfg.adapt.mmd_rampup
                 else "", len(dan.mmd_layers))
    adaptation: dict[str, Any] = {}
    if target_eval_ds is not None:
        from ktransfer.adaptation import domain_mmd

        adaptation["mmd_before"] = domain_mmd(model, val_ds, target_eval_ds)
    if t.print_model:
        print(describe(model, backbone, stages, cfg.model.bn_trainable, multipliers), flush=True)

    guard = NaNGuard()
    history = HistoryWriter(run_dir / "history.csv", guard,
                            keep_until=resume["epoch"] if resume else 0)
    best = AtomicCheckpoint(run_dir / "checkpoints" / "best.keras", monitor=cfg.train.monitor,
                            target=model, guard=guard)
    last = AtomicCheckpoint(run_dir / "checkpoints" / "last.keras", target=model, guard=guard)
    if resume and resume.get("best") is not None:
        best.best = float(resume["best"])
    state = ResumeState(run_dir / rundir.RESUME_DIR, guard, best)
    board = ([keras.callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard"))]
             if cfg.train.tensorboard else [])

    def run_phase(name: str, epochs: int, peak_lr: float, initial_epoch: int,
                  stage_epochs: int | None = None, offset: int = 0,
                  lr_multipliers: dict[str, float] | None = None, cached=None,
                  stage: int = 0) -> int:
        """Fits `stage_epochs` (default: all `epochs`) of a phase whose schedule spans `epochs`,
        starting `offset` epochs into it; returns the global epoch count reached. `cached`:
        (head model, train dataset, validation dataset) on cached features. Continues a killed
        run of this phase and stage from its resume state."""
        stage_epochs = epochs if stage_epochs is None else stage_epochs
        fitted, fit_train, fit_val = cached or (adapt[:3] if adapt else (model, train_ds, val_ds))
        state.phase, state.stage = name, stage
        state.fitted = "head" if cached else "dan" if adapt else "model"
        same = bool(resume) and (resume["phase"], resume["stage"]) == (name, stage)
        if same and resume["complete"]:
            fitted.load_weights(run_dir / rundir.RESUME_DIR / resume["weights"])
            return int(resume["epoch"])
        compile_model(fitted, cfg, make_schedule(t, peak_lr, steps, epochs, offset),
                      lr_multipliers)
        start = initial_epoch
        if same:  # weights and optimizer state (its step count drives the schedule)
            fitted.optimizer.build(fitted.trainable_variables)
            fitted.load_weights(run_dir / rundir.RESUME_DIR / resume["weights"])
            start = int(resume["epoch"])
        history.phase = name
        callbacks = [guard, history, best, last, state, *board]
        if adapt:
            from ktransfer.adaptation import MMDRampUp

            callbacks.append(MMDRampUp(adapt[3], cfg.adapt.mmd_weight, epochs * steps,
                                       cfg.adapt.mmd_rampup, steps_done=(start - initial_epoch
                                                                         + offset) * steps))
        if t.early_stopping:
            callbacks.append(keras.callbacks.EarlyStopping(
                monitor=t.monitor, patience=t.early_stopping,
                restore_best_weights=True, verbose=int(t.verbose > 0)))
        fit = fitted.fit(fit_train, validation_data=fit_val, initial_epoch=start,
                         epochs=initial_epoch + stage_epochs,
                         steps_per_epoch=steps if t.steps_per_epoch else None,
                         class_weight=weights, callbacks=callbacks, verbose=t.verbose,
                         shuffle=False)  # the tf.data pipeline shuffles
        if guard.tripped:
            raise TrainingError(_nan_message(guard, run_dir, name))
        reached = start + len(fit.epoch)
        state.set_model(fitted)
        state.commit(reached, complete=True)
        return reached

    # A resumed run skips the stages its state shows finished.
    order = [("head", 0)] + [("fine_tune", k) for k in range(len(stages))]
    position = order.index((resume["phase"], resume["stage"])) if resume else 0

    done = 0
    if t.epochs:
        freeze(backbone)
        if position == 0:
            cached = _cached_head(cfg, model, splits, image_size, run_dir) \
                if t.cache_features and adapt is None else None
            if t.cache_features and adapt is not None:
                log.info("--cache_features: off; adaptation trains on target images too")
            done = run_phase("head", t.epochs, t.lr, 0, cached=cached)
        else:
            done = int(resume["head_epochs"])
    head_epochs = done
    state.extra = {"head_epochs": head_epochs}
    for k, layers in enumerate(stages):
        offset = done - head_epochs
        last_stage = k == len(stages) - 1
        stage_epochs = (t.fine_tune_epochs - offset if last_stage
                        else min(t.gradual_unfreeze, t.fine_tune_epochs - offset))
        if stage_epochs <= 0:
            break
        n = set_trainable(backbone, layers, cfg.model.bn_trainable)
        if order.index(("fine_tune", k)) < position:
            done += stage_epochs  # finished before the restart; the resumed stage loads weights
            continue
        log.info("fine-tuning %d backbone layers%s", n,
                 f" (stage {k + 1} of {len(stages)})" if len(stages) > 1 else "")
        reached = run_phase("fine_tune", t.fine_tune_epochs, t.fine_tune_lr, done,
                            stage_epochs, offset, multipliers, stage=k)
        stopped_early = reached - done < stage_epochs
        done = reached
        if stopped_early:
            break

    if not model.compiled:  # fitted: a head on cached features, or the adaptation model
        compile_model(model, cfg, t.lr)
    if target is not None and cfg.adapt.adabn:
        from ktransfer.adaptation import recalibrate_batchnorm

        if target_eval_ds is not None:
            adaptation["target_accuracy_before_adabn"] = model.evaluate(
                target_eval_ds, return_dict=True, verbose=0)["accuracy"]
        n = recalibrate_batchnorm(model, make_dataset(
            target, training=False, image_size=image_size, batch_size=cfg.data.batch_size,
            cache="memory"))
        log.info("--adabn: BatchNorm statistics of %d layer(s) re-estimated on %d target "
                 "images", n, len(target))
    metrics: dict[str, Any] = {
        "val": model.evaluate(val_ds, return_dict=True, verbose=0),
        "epochs": {"head": head_epochs, "fine_tune": done - head_epochs},
        "num_images": {"train": len(splits.train), "val": len(splits.val),
                       "test": len(splits.test) if splits.test else 0},
        "class_names": class_names,
        "backbone": spec.name,
        "image_size": image_size,
    }
    if test_ds is not None:
        metrics["test"] = model.evaluate(test_ds, return_dict=True, verbose=0)
    if target_eval_ds is not None:
        from ktransfer.adaptation import domain_mmd

        adaptation["mmd_after"] = domain_mmd(model, val_ds, target_eval_ds)
        adaptation["target_accuracy"] = model.evaluate(
            target_eval_ds, return_dict=True, verbose=0)["accuracy"]
        adaptation["num_target_eval_images"] = len(target_eval)
    if target is not None:
        adaptation["num_target_images"] = len(target)
        adaptation["mmd_weight"] = cfg.adapt.mmd_weight
    if adaptation:
        metrics["adaptation"] = adaptation
    atomic.save_with(run_dir / "model.keras", model.save)
    atomic.save_with(run_dir / "backbone.weights.h5", backbone.save_weights)
    metrics["seconds"] = round(time.time() - started, 1)
    atomic.write_json(run_dir / "metrics.json", metrics)
    if t.report:
        from ktransfer.evaluation import evaluate
        from ktransfer.report import write_report

        on = "test" if splits.test is not None else "validation"
        evaluate(model, class_names, splits.test if splits.test is not None else splits.val,
                 run_dir / "report", batch_size=cfg.data.batch_size)
        write_report(run_dir, on)
    if t.export_dir:
        from ktransfer.serving import export

        metrics["export"] = str(export(model, class_names, t.export_dir))
        atomic.write_json(run_dir / "metrics.json", metrics)
        log.info("exported a SavedModel to %s", metrics["export"])
    rundir.finish(run_dir)
    return TrainResult(run_dir=run_dir, model=model, metrics=metrics)
