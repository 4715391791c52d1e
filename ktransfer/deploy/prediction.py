"""Predicting classes of unlabelled examples of any kind, and writing them as text, CSV or JSON.

The modality reads the examples (`Modality.read_inputs`) and feeds them (`Feed.inputs`) exactly
as in training; this module ranks the classes and formats the result.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import os
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ktransfer import preflight
from ktransfer.config import PredictConfig, resolve_from_run
from ktransfer.data.examples import Examples
from ktransfer.deploy.saving import open_classifier
from ktransfer.deploy.serving import check_classifier
from ktransfer.errors import ConfigError
from ktransfer.modality import Feed, Presentation
from ktransfer.runs.escape import cell
from ktransfer.runs.progress import PassProgress
from ktransfer.tasks import default_task
from ktransfer.tasks.task import Task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """The task's answers for one example, best first (single-label: the top-k classes and
    their probabilities); `probabilities`: the model's whole output. `name` is the example as
    shown (a file path, the text itself); `source` where it came from when that is not the
    name (`stdin:3`, `reviews.txt:12`)."""

    name: str
    top_k: list[tuple[str, float]]
    probabilities: np.ndarray
    source: str = ""
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)  # the task's `extras`


SHOWN_CHARACTERS = 80  # of a long input in the one-line text format

def probabilities(model: keras.Model, feed: Feed, examples: Examples,
                  batch_size: int = 64, tta: str = "none") -> np.ndarray:
    """Class probabilities float64 [N, C] of `examples`, in order: the mean over the views of
    test-time augmentation `tta` (one pass per view)."""
    inputs = feed.inputs(examples, batch_size)
    views = feed.views(tta)
    count = -(-len(examples) // batch_size)
    total = sum(np.asarray(model.predict(inputs.map(view), verbose=0, callbacks=[
        PassProgress(f"predicting {len(examples)} examples", count)]), dtype=np.float64)
        for view in views)
    return np.asarray(total) / len(views)


def batch_probabilities(model: keras.Model, batches: tf.data.Dataset) -> np.ndarray:
    """Class probabilities float64 [N, C] of the inputs of `batches` (of (inputs, labels); the
    labels are not used), in order."""
    count = int(batches.cardinality())
    progress = PassProgress("predicting", count) if count > 0 else None
    return np.asarray(model.predict(batches, verbose=0, callbacks=[progress] if progress else
                                    None), dtype=np.float64)


def predict(model: keras.Model, feed: Feed, examples: Examples, class_names: list[str],
            top_k: int = 3, batch_size: int = 64, tta: str = "none",
            state: dict[str, Any] | None = None) -> list[Prediction]:
    """The answers of the feed's task for every example, in order (single-label: the `top_k`
    classes); names from `examples.names()`."""
    probs = probabilities(model, feed, examples, batch_size, tta)
    names = examples.names() or [str(i) for i in range(len(examples))]
    task = feed.task or default_task()
    answers = task.answers(probs, list(class_names), top_k, state or {})
    extras = task.extras(probs, list(class_names), state or {})
    return [Prediction(name, rows, row, extra=extra)
            for name, rows, row, extra in zip(names, answers, probs, extras, strict=True)]


def _escape(value: str) -> str:
    """One TSV field: backslash, tab, newline and carriage return written as \\\\, \\t, \\n,
    \\r, so every prediction stays one line of tab-separated fields."""
    return (value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
            .replace("\r", "\\r"))


def format_predictions(predictions: list[Prediction], fmt: str, key: str = "file",
                       fields: tuple[str, str, str] = ("top_k", "class", "probability"),
                       records: str = "") -> str:
    """text: `name<TAB>class<TAB>probability[...]` per line (tabs and newlines escaped); csv
    with a header; json list. Text and CSV cells that a spreadsheet would take for a formula
    start with `'` (`runs.escape.cell`); JSON keeps every value as it is. `key` names the
    first column ("file", "text"); `fields` the answers (the task's `answer_fields`: list key,
    item name, item score); `records` the extra field that holds the answers as records (the
    task's `answer_records`: detection's boxes), written one row each and in JSON in place of
    the list."""
    if records:
        return _records(predictions, fmt, key, records)
    sources = any(p.source for p in predictions)
    many, item, score = fields
    if fmt == "json":
        return json.dumps([{key: p.name, **({"source": p.source} if sources else {}),
                            many: [{item: c, score: round(s, 6)} for c, s in p.top_k],
                            **p.extra}
                           for p in predictions], indent=1, ensure_ascii=False) + "\n"
    extra = list(predictions[0].extra) if predictions else []
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        k = max((len(p.top_k) for p in predictions), default=0)
        writer.writerow([key, *(["source"] if sources else [])]
                        + [f"{w}{i}" for i in range(1, k + 1) for w in (item, score)] + extra)
        for p in predictions:
            writer.writerow([cell(p.name), *([cell(p.source)] if sources else [])]
                            + [v for c, s in p.top_k for v in (cell(c), f"{s:.6f}")]
                            + [""] * (2 * (k - len(p.top_k)))
                            + [cell(_field(p.extra[e])) for e in extra])
        return buffer.getvalue()
    return "".join(_escape(cell(_short(p.name) if p.source else p.name))
                   + "".join(f"\t{_escape(cell(c))}\t{s:.4f}" for c, s in p.top_k)
                   + "".join(f"\t{e}={_escape(_field(p.extra[e]))}" for e in extra) + "\n"
                   for p in predictions)


def _records(predictions: list[Prediction], fmt: str, key: str, records: str) -> str:
    """Answers that are records (detection's boxes: label, score, xmin, ...): JSON keeps
    them as a list per example; CSV and text write a row per record after the example's name,
    and a row with the name alone for an example with none (so every input shows)."""
    if fmt == "json":
        return json.dumps([{key: p.name, records: p.extra[records]} for p in predictions],
                          indent=1, ensure_ascii=False) + "\n"
    columns = list(dict.fromkeys(k for p in predictions for r in p.extra[records] for k in r))
    rows = [[p.name, *(_field(r.get(c, "")) for c in columns)]
            for p in predictions for r in p.extra[records] or [{}]]
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow([key, *columns])
        writer.writerows([[cell(v) for v in row] for row in rows])
        return buffer.getvalue()
    return "".join("\t".join(_escape(cell(v)) for v in row).rstrip("\t") + "\n"
                   for row in rows)


def _field(value: Any) -> str:
    """An extra field as one CSV / text cell: lists joined by |, numbers as they print."""
    if isinstance(value, list):
        return "|".join(_field(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _short(shown: str) -> str:
    """A long input (a text) cut for the one-line format, marked with an ellipsis."""
    if len(shown) <= SHOWN_CHARACTERS:
        return shown
    return shown[:SHOWN_CHARACTERS - 1].rstrip() + "\u2026"


def predict_run(model: str | os.PathLike, values: list[str], top_k: int = 3
                ) -> list[Prediction]:
    """The answers of a saved run (or .keras file) for `values`: texts for a text model,
    image file paths for an image one. For notebooks, in one line:
    `predict_run("runs/sentiment", ["What a film!"])[0].top_k`."""
    clf = open_classifier(model)
    shown = clf.modality.presentation
    examples = shown.from_values(list(values))
    found = predict(clf.model, clf.feed, examples, clf.class_names, top_k, state=clf.state)
    return _with_inputs(_placed(found, clf.task, shown, examples), shown.shown(examples))


def _with_inputs(predictions: list[Prediction], shown: list[str] | None) -> list[Prediction]:
    """Predictions named by the input itself (a text), with where it came from as `source`;
    as they are when the name says it (a file)."""
    if shown is None:
        return predictions
    return [dataclasses.replace(p, name=text, source=p.name)
            for p, text in zip(predictions, shown, strict=True)]


def _placed(predictions: list[Prediction], task: Task, shown: Presentation,
            examples: Examples) -> list[Prediction]:
    """Answers that lie in the image (a task's `Geometry`: boxes) in the pixels of each
    example as given, where the modality knows its size."""
    geometry = task.geometry
    sizes = shown.sizes(examples) if geometry is not None else None
    if geometry is None or sizes is None:
        return predictions
    return [dataclasses.replace(p, extra=geometry.placed(p.extra, width, height))
            for p, (width, height) in zip(predictions, sizes, strict=True)]


def predict_saved(cfg: PredictConfig, inputs: list[str]) -> str:
    """`ktransfer.predict`: the formatted predictions of a saved classifier for `inputs` (the
    command's positional arguments, read by the classifier's modality). Checks the flags
    first (pre-flight)."""
    preflight.check_predict(cfg)
    clf = open_classifier(cfg.model, unsafe=cfg.unsafe_load)
    cfg = resolve_from_run(cfg, clf.run_config())  # its reading options, unless given
    check_classifier(clf.model, clf.class_names, task=clf.task)
    clf.feed.views(cfg.tta)  # refuses --tta where the modality has none, before reading
    shown = clf.modality.presentation
    explain = (shown.explainer(clf.model, clf.feed, cfg.explain_layer) if cfg.explain
               else None)
    geometry = clf.task.geometry
    if cfg.draw and geometry is None:
        raise ConfigError("draw", f"{clf.task.name} models have no answers in the image to "
                          "draw (detection has)")
    examples = shown.read_inputs(inputs, cfg)
    state = clf.task.answering(clf.state, cfg.group("task"))
    predictions = predict(clf.model, clf.feed, examples, clf.class_names, cfg.top_k,
                          cfg.batch_size, cfg.tta, state)
    predictions = _with_inputs(_placed(predictions, clf.task, shown, examples),
                               shown.shown(examples))
    if explain is not None:
        written = explain(examples, [int(np.argmax(p.probabilities)) for p in predictions],
                          list(clf.class_names), cfg.explain)
        log.info("--explain: %d heat maps in %s", len(written), cfg.explain)
    if cfg.draw and geometry is not None:
        drawn = shown.draw(examples, [p.extra for p in predictions], geometry.draw, cfg.draw)
        log.info("--draw: %d images in %s", len(drawn), cfg.draw)
    return format_predictions(predictions, cfg.format, shown.input_key, clf.task.answer_fields,
                              clf.task.answer_records)
