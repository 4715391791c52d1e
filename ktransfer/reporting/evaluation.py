"""Evaluating a classifier on labelled examples of any kind and any task: what the task
computes (single-label: accuracy, top-k, per-class precision / recall / F1, confusion matrix;
see `ktransfer.tasks`) and its worst mistakes; JSON, the task's plots and the modality's view
of the mistakes (an image grid, a table of sentences).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import keras
import numpy as np

from ktransfer import preflight
from ktransfer.config import (
    EvaluateConfig,
    RunConfig,
    build,
    given_run_fields,
    replace_run_fields,
)
from ktransfer.data import manifest
from ktransfer.data.examples import Examples
from ktransfer.data.splits import pick
from ktransfer.deploy import prediction
from ktransfer.deploy.saving import Classifier, open_classifier
from ktransfer.deploy.serving import check_classifier
from ktransfer.errors import DataError
from ktransfer.modality import Feed, Modality
from ktransfer.runs import atomic
from ktransfer.tasks import DEFAULT, TASKS, default_task

MISTAKES_HTML = "mistakes.html"
SECTIONS_HTML = "evaluation.html"  # the task's report sections


def evaluate(model: keras.Model, modality: Modality, feed: Feed, class_names: list[str],
             examples: Examples, out_dir: str | os.PathLike, batch_size: int = 64,
             top_k: int = 5, probabilities: np.ndarray | None = None,
             state: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluates and writes `out_dir/evaluation.json`, the task's plots and report sections
    (`evaluation.html`) and the mistakes (`mistakes.html`, with what the modality adds);
    returns the summary. The task is the feed's (the run's).

    `probabilities`: the outputs [N, C] of `examples` when already predicted (saves a second
    pass); `state`: what the task learned after training (e.g. multi-label thresholds).
    """
    task = feed.task or default_task()
    examples = examples.as_task(task).align(class_names, task)
    if len(examples) == 0:
        raise DataError("--data: no examples to evaluate")
    if probabilities is None:
        probabilities = prediction.probabilities(model, feed, examples, batch_size)
    summary = {"task": task.name, **task.presentation.summarize(probabilities, examples.labels,
                                                   tuple(class_names), examples.names(), top_k,
                                                   state or {})}
    out = Path(out_dir)
    atomic.write_text(out / SECTIONS_HTML, task.presentation.sections(summary, out))
    gallery = modality.presentation.gallery(model, feed, examples, summary["mistakes"], out)
    atomic.write_text(out / MISTAKES_HTML, gallery)
    atomic.write_json(out / "evaluation.json", summary)
    return summary


def saved_split(cfg: EvaluateConfig, clf: Classifier) -> Examples:
    """The labelled examples `evaluate` scores: `--split` of `--data`, or, without `--data`, the
    split of the classifier's run as `train` made it (same flags, same seed)."""
    if not cfg.data:
        if clf.run_dir is None:
            raise DataError("--data: is required when --model is not a run directory")
        if cfg.split == "all":
            raise DataError("--split: all needs --data (a run's examples are split)")
        run = _run_config(cfg, clf)
        splits = clf.modality.load_splits(run)
        manifest.check_unchanged(Path(clf.run_dir),
                                 manifest.describe(splits, manifest.sources(run.data),
                                                   clf.task))
        chosen = {"train": splits.train, "val": splits.val, "test": splits.test}[cfg.split]
        if chosen is None:
            raise DataError(f"--split: the run has no {cfg.split} split; pass --data")
        return chosen
    return pick(clf.modality.open_source(cfg.data, _run_config(cfg, clf), "data"), cfg.split,
                cfg.data)


def _run_config(cfg: EvaluateConfig, clf: Classifier) -> RunConfig:
    """The reading options of the classifier's run (or the defaults for a bare .keras file),
    with this command's --data and the reading options it gives (`from_run` fields)."""
    run = clf.run_config() or build(data=cfg.data, modality=clf.modality.name,
                                    task=clf.task.name)
    return replace_run_fields(run, {"data": cfg.data or run.data.data,
                                    **given_run_fields(cfg)})


def evaluate_saved(cfg: EvaluateConfig) -> tuple[dict[str, Any], Path]:
    """`ktransfer.evaluate`: evaluates a saved classifier; returns (summary, output folder).
    Checks the flags first (pre-flight), as every public entry does."""
    preflight.check_evaluate(cfg)
    clf = open_classifier(cfg.model, unsafe=cfg.unsafe_load)
    check_classifier(clf.model, clf.class_names, task=clf.task)
    views = len(clf.feed.views(cfg.tta))
    examples = saved_split(cfg, clf).as_task(clf.task).align(clf.class_names, clf.task)
    base = clf.run_dir or os.path.dirname(os.path.abspath(cfg.model))
    out = Path(cfg.output_dir or os.path.join(base, f"evaluation-{cfg.split}"))
    probs = (prediction.probabilities(clf.model, clf.feed, examples, cfg.batch_size, cfg.tta)
             if len(examples) else None)
    summary = evaluate(clf.model, clf.modality, clf.feed, clf.class_names, examples, out,
                       cfg.batch_size, cfg.top_k, probs, clf.state)
    if cfg.tta != "none":  # beside the plain headline metric, from one more pass
        plain = prediction.probabilities(clf.model, clf.feed, examples, cfg.batch_size)
        headline = clf.task.headline
        summary["tta"] = {"views": cfg.tta, "passes": views, headline: summary[headline],
                          f"{headline}_without": clf.task.quality(plain, examples.labels,
                                                                  clf.state)}
        atomic.write_json(out / "evaluation.json", summary)
    return summary, out


def describe(summary: dict[str, Any], top_k: int = 5) -> list[str]:
    """What `ktransfer.evaluate` prints of a summary: its task's lines, then test-time
    augmentation's effect."""
    task = TASKS.get(summary.get("task", DEFAULT))
    lines = task.presentation.lines(summary, top_k)
    tta, headline = summary.get("tta"), task.headline
    if tta:
        lines.insert(1, f"test-time augmentation {tta['views']} ({tta['passes']} views): "
                        f"{headline.replace('_', ' ')} {tta[headline]:.4f}, without it "
                        f"{tta[headline + '_without']:.4f}")
    return lines
