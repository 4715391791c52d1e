"""Labelled texts: a folder of class sub-folders of .txt files (the layout of
`keras.utils.text_dataset_from_directory`), CSV / TSV / JSON-lines tables, TFDS text sets, and
the built-in sentiment sets.

Every text is decoded and checked while it is read, so a bad one is named before training: an
empty text or bytes that are not UTF-8 stop with the file and line (`--on_bad_text=fail`) or are
left out and counted (`skip`); a missing column or key names the file and line.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ktransfer.config import RunConfig
from ktransfer.data import tables, tfds
from ktransfer.data.folders import class_folders
from ktransfer.data.splits import SPLIT_NAMES
from ktransfer.data.tables import TABLE_EXTENSIONS
from ktransfer.errors import DataError
from ktransfer.tasks import task_of
from ktransfer.tasks.task import Task
from ktransfer.text.builtin import BUILTIN
from ktransfer.text.textset import TextSet, text_set

log = logging.getLogger(__name__)



class BadTexts:
    """The bad-text policy while reading one source: `fail` raises at the first bad text,
    naming where it is; `skip` counts them and warns once (`done`)."""

    def __init__(self, policy: str, flag: str):
        self.policy, self.flag = policy, flag
        self.bad: list[str] = []

    def check(self, text: str | None, where: str, why: str = "") -> str | None:
        """`text` stripped, or None when it is bad (and skipped)."""
        problem = why or ("empty text" if text is None or not text.strip() else "")
        if not problem and any("\udc80" <= c <= "\udcff" for c in text or ""):
            problem = "not valid UTF-8 text"  # bytes `_decode` kept as surrogates
        if not problem:
            return (text or "").strip()
        if self.policy == "fail":
            raise DataError(f"--{self.flag}: {where}: {problem}; fix or remove it, or pass "
                            "--on_bad_text=skip")
        self.bad.append(f"{where} ({problem})")
        return None

    def done(self) -> int:
        if self.bad:
            log.warning("--%s: skipped %d bad row(s) or text(s): %s", self.flag,
                        len(self.bad), ", ".join(self.bad[:10]) + (" ..." if len(self.bad) > 10
                                                                   else ""))
        return len(self.bad)


def read_class_folders(root: Path, flag: str, policy: str) -> TextSet:
    """ROOT/<class>/**/*.txt, one text per file; class names are the sorted folder names."""
    classes = class_folders(root, flag)
    if not classes:
        raise DataError(f"--{flag}: {str(root)!r} has no class sub-folders; expected "
                        f"{root}/<class name>/<files>.txt")
    bad = BadTexts(policy, flag)
    texts: list[str] = []
    labels: list[int] = []
    ids: list[str] = []
    names: list[str] = []
    for folder in classes:
        files = sorted(p for p in folder.rglob("*.txt") if p.is_file()
                       and not p.name.startswith("."))
        checked = [(str(p), bad.check(tables.decode(p.read_bytes()), str(p))) for p in files]
        kept = [(f, t) for f, t in checked if t is not None]
        if not kept:
            log.warning("--%s: class folder %s has no usable .txt files; skipped", flag,
                        folder.name)
            continue
        ids += [f for f, _ in kept]
        texts += [t for _, t in kept]
        labels += [len(names)] * len(kept)
        names.append(folder.name)
    if not texts:
        raise DataError(f"--{flag}: no usable .txt files under {str(root)!r}")
    return text_set(tuple(names), labels, texts, ids, skipped=bad.done(),
                    skipped_names=tuple(bad.bad))


def read_table(path: Path, text_column: str, label_column: str, flag: str,
               policy: str, task: Task, options: Any) -> TextSet:
    """A CSV / TSV / JSON-lines file with a text and a label column, its label values read
    by `task` (`options`: the task group): single-label class names are the sorted values."""
    rows = tables.table_rows(path, flag)
    table = path.suffix.lower() != ".jsonl"
    columns = {text_column: "text_column", label_column: "label_column"}
    if table:  # the header names the columns of every row
        tables.check_columns(path, 1, rows[0][1], columns, flag)
    bad = BadTexts(policy, flag)
    texts, label_values, ids, where = [], [], [], []
    for number, row in rows:
        if not table:
            tables.check_columns(path, number, row, columns, flag)
        label = tables.label_value(row, label_column)
        why = tables.row_problem(row, label, table, number)
        text = bad.check(None if row.get(text_column) is None else str(row[text_column]),
                         f"{path}:{number}", why)
        if text is not None:
            texts.append(text)
            label_values.append(label)
            ids.append(f"{path.name}:{number}")
            where.append(f"{path}:{number}")
    names, targets = task.parse(label_values, where, options, flag, label_column)
    return text_set(names, targets, texts, ids, skipped=bad.done(), task=task.name,
                    skipped_names=tuple(bad.bad))


def _folder(root: Path, flag: str, policy: str) -> dict[str, TextSet]:
    """A folder of classes, or of train/val/test folders of classes."""
    found = {}
    for split, names in SPLIT_NAMES.items():
        for name in names:
            if (root / name).is_dir():
                found[split] = root / name
                break
    if "train" in found:
        return {split: read_class_folders(path, flag, policy) for split, path in found.items()}
    return {"all": read_class_folders(root, flag, policy)}


def _tfds(name: str, data_dir: str, flag: str, policy: str, label_key: str
          ) -> dict[str, TextSet]:
    """A TFDS text set (e.g. imdb_reviews), every split read into memory."""
    found = tfds.builder(name, data_dir, flag)
    reading = tfds.supervised(found, name, flag, "Text", label_key)
    out = {}
    for split, candidates in SPLIT_NAMES.items():
        tfds_name = next((n for n in candidates if n in found.info.splits), None)
        if tfds_name is None:
            continue
        bad = BadTexts(policy, flag)
        texts, labels = [], []
        for i, record in enumerate(found.as_dataset(split=tfds_name).as_numpy_iterator()):
            text = bad.check(tables.decode(record[reading.input_key]),
                             f"tfds:{name}/{tfds_name}[{i}]")
            if text is not None:
                texts.append(text)
                labels.append(record[reading.label_key])
        out[split] = text_set(reading.class_names, reading.targets(labels), texts,
                              skipped=bad.done(), task=reading.task,
                              skipped_names=tuple(bad.bad))
    if "train" not in out:
        raise DataError(f"--{flag}=tfds:{name}: has no train split")
    return out


def open_source(spec: str, cfg: RunConfig, flag: str = "data") -> dict[str, TextSet]:
    """Opens a text source string; returns its splits ('all', or some of 'train'/'val'/'test')."""
    text = cfg.group("text")
    policy = text.on_bad_text
    if spec.startswith("builtin:"):
        return BUILTIN.get(spec.split(":", 1)[1], flag)()
    if spec.startswith("tfds:"):
        return _tfds(spec.split(":", 1)[1], cfg.data.data_dir, flag, policy,
                     cfg.group("task").label_column)
    path = Path(spec.split(":", 1)[1] if spec.startswith("folder:") else spec)
    if path.is_dir():
        return _folder(path, flag, policy)
    if path.suffix.lower() in TABLE_EXTENSIONS and path.is_file():
        return {"all": read_table(path, text.text_column, cfg.group("task").label_column, flag,
                                  policy, task_of(cfg), cfg.group("task"))}
    raise DataError(f"--{flag}: {os.fspath(path)!r} is neither a folder of class folders nor "
                    f"a {'/'.join(TABLE_EXTENSIONS)} file")
