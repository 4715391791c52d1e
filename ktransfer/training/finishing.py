"""After training: AdaBN, metrics, model files, metrics.json, report, export (each step
idempotent, so a run killed here is finished by the same command)."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from ktransfer.data.examples import Examples
from ktransfer.deploy import prediction
from ktransfer.deploy.serving import WARMUP_EXAMPLES, card_files, export
from ktransfer.network import lora
from ktransfer.network.classifier import compile_classifier, get_backbone, inference_model
from ktransfer.reporting.evaluation import evaluate
from ktransfer.reporting.model_card import card_data, interval, write_card
from ktransfer.reporting.report import changed_flags, write_report
from ktransfer.runs import atomic, rundir
from ktransfer.runs.exportdir import origin, versions
from ktransfer.runs.progress import step
from ktransfer.runs.provenance import provenance
from ktransfer.tasks import task_of
from ktransfer.tasks.calibration import calibrate, compare
from ktransfer.tasks.task import Task, save_state
from ktransfer.training.job import Fitted, Job
from ktransfer.training.recording import ValidationRecorder

log = logging.getLogger("ktransfer.training")


def finish(job: Job, trained: Fitted) -> dict[str, Any]:
    """After training: AdaBN, metrics, model files, metrics.json, report, export. Each step
    can run again (a run killed here is finished by the same command)."""
    cfg, path = job.cfg, job.run_dir
    model = _merge_adapters(job)
    if not model.compiled:  # fitted: a head on cached features, or the adaptation model
        compile_classifier(model, cfg, cfg.train.lr)
    metrics: dict[str, Any] = {
        "modality": job.modality.name,
        "task": cfg.data.task,
        "headline": task_of(cfg).headline,
        "network": job.network.info,
        "epochs": {"head": trained.head_epochs,
                   "fine_tune": trained.epochs - trained.head_epochs},
        "num_examples": job.splits.counts(),
        "class_names": list(job.splits.class_names),
    }
    counts = {split: task_of(cfg).counts(examples.labels, job.splits.class_names)
              for split, examples in job.splits.named().items()}
    if any(counts.values()):
        metrics["class_counts"] = counts
    notes = job.modality.data_notes(job.splits, job.feed)
    skipped = sorted({n for e in job.splits.named().values() for n in e.skipped_names})
    if skipped:  # what reading left out, named (at most 100)
        notes = {**notes, "skipped": skipped[:100]}
    if notes:
        metrics["data"] = notes
    if job.adapt is not None:
        metrics["adaptation"] = job.adapt.finish(model, job.feed, job.val_ds,
                                                 cfg.data.batch_size)
    probabilities, state, val = _split_scores(job, trained.recorder, metrics)
    task = task_of(cfg)
    warning = no_better_than_baseline(task, task.quality(val, job.splits.val.labels, state),
                                      job.splits.train.labels, job.splits.val.labels)
    if warning:
        metrics["warnings"] = [warning]
        log.warning("WARNING: %s", warning)
    save_state(path, task, state)
    atomic.save_with(path / "model.keras", inference_model(model).save)
    atomic.save_with(path / "backbone.weights.h5", job.network.backbone.save_weights)
    metrics["quality"] = _meaning(job, task, probabilities, state, metrics)
    metrics["seconds"] = round(time.time() - job.started, 1)
    metrics["ktransfer"] = provenance()
    atomic.write_json(path / "metrics.json", metrics)
    _card(job, metrics, probabilities, state)
    if cfg.train.export_dir:
        with step("exporting a SavedModel"):
            metrics["export"] = str(_export(job, state))
        atomic.write_json(path / "metrics.json", metrics)
        log.info("exported a SavedModel to %s", metrics["export"])
    if cfg.train.report:  # last: it shows where the model was exported
        with step("writing the report (report.html)"):
            _report(job, probabilities, state)
    rundir.finish(path)
    return metrics


def _merge_adapters(job: Job) -> keras.Model:
    """The trained classifier, LoRA adapters merged into its kernels (the network itself when
    it has none); the adapters alone go to RUN/lora_adapters.npz first."""
    if lora.adapters(job.network.backbone):
        atomic.save_with(job.run_dir / lora.ADAPTERS_FILE,
                         lambda path: lora.save_adapters(job.network.backbone, path))
        model = lora.merged(job.model)
        job.network = dataclasses.replace(job.network, model=model,
                                          backbone=get_backbone(model))
    return job.model


BASELINE_MARGIN = 0.02  # a headline this close to the trivial predictor's: no better


def no_better_than_baseline(task: Task, value: float, train: np.ndarray, val: np.ndarray
                            ) -> str:
    """A warning when the validation `value` of the task's quality (accuracy, macro-F1, R²)
    is no better than the task's trivial predictor's, e.g. always answering the most common
    class ("" when it is better): the run has not learned, and says what to try."""
    if len(val) == 0:
        return ""
    baseline, what = task.baseline(train, val)
    if value > baseline + BASELINE_MARGIN:
        return ""
    return (f"validation {task.quality_name} {value:.3g} is no better than "
            f"{what} ({baseline:.3g}): the model has not learned. Try more head epochs "
            "(--epochs) or a higher --lr, fine-tuning (--fine_tune_epochs with a low "
            "--fine_tune_lr), or start from a template (configs/my_images.cfg, "
            "configs/my_texts.cfg)")


SMALL_SPLIT = 30  # fewer held-out examples than this cannot tell models apart


def _meaning(job: Job, task: Task, outputs: np.ndarray, state: dict[str, Any],
             metrics: dict[str, Any]) -> dict[str, Any]:
    """What the headline means: the task's quality on the report's split (test, else
    validation) with its 95 % interval and the trivial predictor's beside it; a warning (in
    metrics["warnings"] and the log) when the split is too small to tell or the model is no
    better than that predictor there."""
    on = _shown_split(job)
    split = "test" if job.splits.test is not None else "validation"
    found = {"split": split, **interval(task, outputs, on.labels, state)}
    if not len(on.labels):
        return found
    found["baseline"], found["baseline_is"] = task.baseline(job.splits.train.labels, on.labels)
    warnings = []
    if len(on.labels) < SMALL_SPLIT:
        warnings.append(f"only {len(on.labels)} {split} examples: {task.quality_name} "
                        f"{found['value']:.3g} could be anything from {found['low']:.3g} to "
                        f"{found['high']:.3g} (95 %); hold out more examples (--test_split, "
                        "--val_split) to tell")
    if found["value"] <= found["baseline"] + BASELINE_MARGIN:
        warnings.append(f"{split} {task.quality_name} {found['value']:.3g} is no better than "
                        f"{found['baseline_is']} ({found['baseline']:.3g})")
    for warning in warnings:
        log.warning("WARNING: %s", warning)
    if warnings:
        metrics["warnings"] = [*metrics.get("warnings", []), *warnings]
    return found


def _split_scores(job: Job, recorder: ValidationRecorder, metrics: dict[str, Any]
                  ) -> tuple[np.ndarray, dict[str, Any], np.ndarray]:
    """Fills metrics['val'] (and 'test') with what `model.evaluate` reports, after the task
    has learned what it learns from the validation outputs (its state: multi-label
    thresholds); returns the outputs [N, C] of the report's split (test, else validation),
    the state and the validation outputs. The validation split's come from the last epoch's
    own validation pass while the model holds the weights it saw, else from the pipeline that
    evaluated it during training (already decoded and cached); each split is predicted at most
    once."""
    model, cfg, task = job.model, job.cfg, task_of(job.cfg)
    val = recorder.probabilities(model)
    if val is None:
        val = prediction.batch_probabilities(model, job.val_ds)
    else:
        log.debug("validation outputs from the last epoch's validation pass")
    probs = task.probabilities  # present when --calibrate is (pre-flight)
    if cfg.group("task").calibrate != "none" and probs is not None:
        val, metrics["calibration"] = calibrate(model, probs, val, job.splits.val.labels)
    state = task.fit(val, job.splits.val.labels, cfg.group("task"))
    metrics["val"] = task.scores(val, job.splits.val.labels, model, cfg, state)
    if job.test_ds is None or job.splits.test is None:
        return val, state, val
    with step(f"scoring the test split ({len(job.splits.test)} examples)"):
        test = prediction.batch_probabilities(model, job.test_ds)
    metrics["test"] = task.scores(test, job.splits.test.labels, model, cfg, state)
    if "calibration" in metrics and probs is not None:  # the test outputs before, beside
        before = probs.rescale(test, metrics["calibration"]["temperature"])
        metrics["calibration"]["test"] = compare(probs, before, test, job.splits.test.labels)
    return test, state, val


def _shown_split(job: Job) -> Examples:
    """The split the report and the model card show: test, else validation."""
    return job.splits.test if job.splits.test is not None else job.splits.val


def _card(job: Job, metrics: dict[str, Any], outputs: np.ndarray, state: dict[str, Any]
          ) -> None:
    """RUN/MODEL_CARD.md from the outputs [N, C] of the report's split (test, else
    validation): the task's quality with a bootstrap interval and its measured limits."""
    task, on = task_of(job.cfg), _shown_split(job)
    summary = task.presentation.summarize(outputs, on.labels, job.splits.class_names, None, 5,
                                          state)
    flags = changed_flags((job.run_dir / rundir.FLAGFILE).read_text())
    quality = {k: v for k, v in metrics["quality"].items()
               if k in ("metric", "value", "low", "high", "examples")}
    write_card(job.run_dir, card_data(metrics, flags, quality, task.presentation.limits(summary)))


def _report(job: Job, probabilities: np.ndarray, state: dict[str, Any]) -> None:
    """report.html, from the outputs of its split (test, else validation)."""
    splits = job.splits
    on = "test" if splits.test is not None else "validation"
    evaluate(job.model, job.modality, job.feed, list(splits.class_names),
             splits.test if splits.test is not None else splits.val, job.run_dir / "report",
             batch_size=job.cfg.data.batch_size, probabilities=probabilities, state=state)
    write_report(job.run_dir, on)


def _export(job: Job, task_state: dict[str, Any]) -> Path:
    """Exports once: the version is recorded in the resume state before it is written, so a
    run killed during the export finishes it instead of adding a second version. A claimed
    version that another export took meanwhile (its origin.json names another run) is left
    alone: this run's model goes to the next free version."""
    base = Path(job.cfg.train.export_dir).resolve()
    state = rundir.read_state(job.run_dir)
    ours = {"run_id": rundir.run_id(job.run_dir), "run_dir": str(job.run_dir.resolve())}
    version = (state or {}).get("export_version")
    if version and (base / str(version)).is_dir():
        if origin(base / str(version)) == ours:
            return base / str(version)
        log.warning("version %d of %s was taken by another export meanwhile; exporting this "
                    "run's model as the next free version", version, base)
        version = None
    version = version or max(versions(base), default=0) + 1
    if state is not None:
        atomic.write_json(job.run_dir / rundir.RESUME_DIR / rundir.STATE,
                          {**state, "export_version": version})
    return export(job.model, job.modality, job.feed, list(job.splits.class_names),
                  job.cfg.train.export_dir, version=version, origin=ours, state=task_state,
                  copies=card_files(job.run_dir),
                  warmup=job.modality.serving_inputs(_shown_split(job), WARMUP_EXAMPLES))

