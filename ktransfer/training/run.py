"""`train`, and adapting finished runs to a new domain (`adapt`, `adapt_best`)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from ktransfer import config, preflight
from ktransfer.config import RunConfig
from ktransfer.domain.catalog import VALIDATORS
from ktransfer.errors import ConfigError
from ktransfer.runs import rundir
from ktransfer.training import distribute
from ktransfer.training.finishing import finish
from ktransfer.training.job import TrainResult, prepare
from ktransfer.training.phases import fit_stages
from ktransfer.training.tracking import tracking

log = logging.getLogger("ktransfer.training")


def train(cfg: RunConfig) -> TrainResult:
    """Runs both phases as configured and fills the run directory; returns the trained model.

    Checks every flag first (pre-flight), then builds and trains under the configured
    tf.distribute strategy and precision policy (the previous global policy is restored
    afterwards). A non-chief multi-worker process runs the same steps but writes into a
    temporary folder it deletes at the end.
    """
    cfg = preflight.with_defaults(cfg)
    modality = preflight.check_train(cfg, run_dir=distribute.is_chief())
    with _distributed(cfg) as (cfg, chief_run), \
            distribute.lost_workers_as_errors(cfg.distribute.strategy):
        job = prepare(cfg, modality, chief_run)
        with job.run, tracking(cfg if distribute.is_chief() else _untracked(cfg),
                               job.run_dir) as tracker:
            job.tracking = tracker.callbacks()
            metrics = finish(job, fit_stages(job))
            tracker.finish(metrics, job.run_dir)
    return TrainResult(run_dir=job.run_dir, model=job.model, metrics=metrics)


def _untracked(cfg: RunConfig) -> RunConfig:
    """`cfg` without tracking (a non-chief worker: the chief logs the run)."""
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, track="none"))


def adapt(run: str | Path, target: str, *, alignment: str = "class", weight: float = 0.3,
          adabn: bool = True, select: str = "source_val", epochs: int = 10, lr: float = 1e-3,
          run_dir: str = "", **flags: Any) -> TrainResult:
    """Adapts a finished run to unlabelled `target` data: its flags and every weight, then
    `epochs` of fine-tuning with the MMD `alignment` at `weight`, AdaBN and the epoch
    `select`ed without target labels (see ktransfer/domain/validators.py).

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
    (docs/guides/adaptation.md, "Adapting from several source runs"): on the digits
    benchmark, five source runs chosen among by `im` put every seed within 6 points of the
    mean.

    Args:
        runs: the source runs' directories; each adapted run goes beside its source
            (`-adapted`).
        target: unlabelled target data, any `--data` form.
        pick: a validator of `ktransfer.domain.validators` (im, bnm, snd, dev, source_val).
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

