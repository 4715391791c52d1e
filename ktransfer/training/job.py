"""The job a run's phases share, and `prepare`: the data, the network, the planned stages, the
(locked) run directory and the input pipelines."""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ktransfer.config import FindLRConfig, LRFinderConfig, ModelConfig, RunConfig
from ktransfer.data import manifest
from ktransfer.data.examples import Splits
from ktransfer.deploy.saving import load_classifier
from ktransfer.domain import adaptation
from ktransfer.errors import ConfigError
from ktransfer.modality import Feed, Modality, Network
from ktransfer.network import lora
from ktransfer.network.freezing import (
    check_fine_tuning,
    describe,
    gradual_stages,
    layer_lr_multipliers,
    select,
)
from ktransfer.registry import import_object
from ktransfer.runs import atomic, rundir
from ktransfer.tasks import task_of
from ktransfer.training import batch_search
from ktransfer.training.lr_finder import FLAG_OF_PHASE, range_test
from ktransfer.training.recording import ValidationRecorder

log = logging.getLogger("ktransfer.training")


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
        recorder: the predictions of the last validation pass (`ktransfer.training.recording`).
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
    fine_tune_ds: tf.data.Dataset | None = None  # made by the fine-tuning phase
    tracking: list[keras.callbacks.Callback] = field(default_factory=list)  # --track's
    started: float = field(default_factory=time.time)

    @property
    def run_dir(self) -> Path:
        return self.run.path

    @property
    def model(self) -> keras.Model:
        return self.network.model



PROBE_RUN = "ktransfer.probing.scoring:probe_run"  # train --probe's audit


def prepare(cfg: RunConfig, modality: Modality, chief_run: Path | None = None) -> Job:
    """Reads the data and builds the network (everything that can fail on the user's input),
    then opens the run directory (resuming from `chief_run`'s state for a non-chief
    multi-worker worker) and makes the input pipelines."""
    keras.utils.set_random_seed(cfg.train.seed)
    splits = modality.load_splits(cfg)
    task = task_of(cfg)
    network = modality.build(cfg, task.outputs(splits.class_names))
    task.prepare(network.model, splits.train.labels)
    if cfg.model.init_from:
        _init_from(network.model, cfg.model, list(splits.class_names))
    cfg = batch_search.resolve(cfg, modality, splits, network)
    cfg, range_tests = _auto_rates(cfg, modality, splits)
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
    data = manifest.describe(splits, manifest.sources(cfg.data), task_of(cfg))
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
    task = task_of(cfg)
    counts = splits.counts()
    log.info("data: %d train, %d val, %d test %ss, %s", counts["train"], counts["val"],
             counts["test"], modality.presentation.noun, task.target_words(splits.class_names))
    if cfg.train.probe and not run.resume:  # the probe sits above training: named, not imported
        import_object(PROBE_RUN)(cfg, modality, splits, network, run.path / "probe",
                                 run.path / "cache")
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
               adapt=adapt, class_weights=task.class_weights(
                   splits.train.labels, splits.class_names, cfg.data.class_weights)
               if cfg.data.class_weights != "none" else None,
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


def _auto_rates(cfg: RunConfig, modality: Modality, splits: Splits
                ) -> tuple[RunConfig, Path | None]:
    """--lr=auto / --fine_tune_lr=auto as numbers: a resumed run's own (from its flags.cfg);
    else the valley rule of a learning-rate range test per phase, head first (the fine-tune
    test trains the head at that rate), on the run's examples as read (flags already checked).
    Returns the config and the folder of the tests' files (None when none ran)."""
    phases = cfg.train.auto_phases()
    if not phases:
        return cfg, None
    saved = rundir.resumed_flags(cfg)
    if saved is not None:
        rates: dict[str, Any] = {FLAG_OF_PHASE[p]: saved[FLAG_OF_PHASE[p]] for p in phases}
        return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **rates)), None
    folder = Path(tempfile.mkdtemp(prefix="ktransfer-lr-find-"))
    for phase in phases:
        test = LRFinderConfig(cfg, FindLRConfig(phase=phase, output_dir=str(folder / phase)))
        result = range_test(test, modality, splits)
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
    if t.fine_tune_epochs:  # (--lora_rank needs fine-tuning epochs: a config rule)
        check_fine_tuning(backbone, cfg)
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
                       multipliers(cfg, network)), flush=True)
        if cfg.model.lora_rank:
            print(lora.planned(backbone, cfg.model), flush=True)
    return stages


def multipliers(cfg: RunConfig, network: Network) -> dict[str, float] | None:
    decay = cfg.train.lr_layer_decay
    return layer_lr_multipliers(network.backbone, decay) if decay < 1.0 else None

