"""Labelled images: a folder of class sub-folders, a table of image files and labels (CSV /
TSV / JSON lines: multi-label tags, regression targets), a TFDS dataset, or a built-in set.

Every source becomes `ImageSet`s (one per split) with integer labels; splitting and sampling are
shared with every modality (`ktransfer.data.splits`). Every file of a folder is decoded once up
front, so a corrupt one is named before training starts (`--on_bad_image=fail|skip`); a folder
whose files all passed and have not changed since is not decoded again (`ktransfer.data.memo`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from PIL import Image

from ktransfer.data import memo, tables, tfds
from ktransfer.data.folders import class_folders
from ktransfer.data.splits import SPLIT_NAMES
from ktransfer.errors import DataError, first_line
from ktransfer.image.builtin import BUILTIN
from ktransfer.image.header import MAX_PIXELS
from ktransfer.image.imageset import ImageSet, decode_file
from ktransfer.tasks.task import Task

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
DECODE_CHECK = f"images decode, at most {MAX_PIXELS} pixels, v1"  # the memo's name of the check


# ---------------------------------------------------------------------------------- folders


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))


def _too_many_pixels(path: str) -> str | None:
    """A decompression bomb (a small file of a huge image), from the header alone."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except Image.DecompressionBombError as exc:  # PIL itself refuses beyond 179 M pixels
        return f"a decompression bomb ({first_line(exc)[:80]})"
    except (OSError, ValueError):
        return None  # not for PIL to judge: TensorFlow decodes it or names the problem
    if width * height > MAX_PIXELS:
        return (f"{width}x{height} pixels, more than the {MAX_PIXELS // 10**6} million an "
                "image may have")
    return None


def image_problem(path: str) -> str | None:
    """Why `path` is not an image TensorFlow can decode (as the pipeline will), or None."""
    try:
        if os.path.getsize(path) == 0:
            return "empty file"
        too_large = _too_many_pixels(path)
        if too_large:
            return too_large
        decode_file(path)
    except (tf.errors.OpError, OSError) as exc:
        text = re.sub(r"\{\{.*?\}\}\s*|\s*\[Op:.*$", "", str(exc), flags=re.S)
        message = text.strip().splitlines()
        return (message[0] if message else type(exc).__name__)[:120]
    return None


def _header_problem(path: str) -> bool:
    try:
        return os.path.getsize(path) == 0 or bool(_too_many_pixels(path))
    except OSError:
        return True


def _undecodable(files: list[str]) -> list[int]:
    """Indices of the files that are empty, too large or that TensorFlow fails to decode.

    The headers are read one by one (cheap, and before any pixel is decoded); the decoding runs
    in parallel in a tf.data pipeline (2,000 JPEGs on 2 cores: 0.5-0.7 s, against 0.8 s one
    file at a time).
    """
    suspects = {i for i, f in enumerate(files) if _header_problem(f)}
    fine = [i for i in range(len(files)) if i not in suspects]
    ds = tf.data.Dataset.from_tensor_slices(
        (np.array(fine, np.int64), np.array([files[i] for i in fine], str))).map(
        lambda i, path: (i, tf.shape(decode_file(path))),
        num_parallel_calls=tf.data.AUTOTUNE)
    decoded = ds.ignore_errors().map(lambda i, _: i).batch(1024)
    ok = {int(i) for batch in decoded.as_numpy_iterator() for i in batch}
    return sorted(suspects | (set(fine) - ok))


def drop_bad_images(images: ImageSet, on_bad_image: str, flag: str = "data") -> ImageSet:
    """Decodes every file once (unless these files, unchanged, all passed before); a bad one
    stops with an error naming it (`fail`) or is left out with one warning line naming the
    files and their count (`skip`)."""
    if images.files is None:
        return images
    files = images.files.tolist()
    checked = memo.key(DECODE_CHECK, files)
    if memo.seen(checked):
        return images
    suspects = _undecodable(files)
    problems = [(i, files[i], image_problem(files[i])) for i in suspects]
    bad = [(i, f, why) for i, f, why in problems if why]
    if not bad:
        memo.remember(checked)
        return images
    if on_bad_image == "fail":
        _, f, why = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise DataError(f"--{flag}: {f} is not a readable image ({why}){more}; fix or remove it, "
                        "or pass --on_bad_image=skip")
    names = ", ".join(f for _, f, _ in bad[:10]) + (" ..." if len(bad) > 10 else "")
    log.warning("--%s: skipped %d unreadable image file(s): %s", flag, len(bad), names)
    bad_ids = {i for i, _, _ in bad}
    kept = images.subset(np.array([i for i in range(len(images)) if i not in bad_ids]))
    return dataclasses.replace(kept, skipped_names=tuple(f"{f} ({why})" for _, f, why in bad))


def read_class_folders(root: str | os.PathLike, flag: str = "data",
                       on_bad_image: str = "fail") -> ImageSet:
    """Reads ROOT/<class>/**/<image> into an ImageSet; class names are the sorted folder names.

    Every file is decoded once up front, so a corrupt file is found here, not mid-training."""
    root = Path(root)
    if root.is_file():
        raise DataError(f"--{flag}: {str(root)!r} is a file; give a folder of class "
                        "sub-folders of images")
    if not root.is_dir():
        raise DataError(f"--{flag}: folder {str(root)!r} does not exist")
    classes = class_folders(root, flag)
    if not classes:
        raise DataError(f"--{flag}: {str(root)!r} has no class sub-folders; expected "
                        f"{root}/<class name>/<image files>")
    files: list[str] = []
    labels: list[int] = []
    names: list[str] = []
    empty: list[str] = []
    for folder in classes:
        found = _image_files(folder)
        if not found:
            empty.append(folder.name)
            continue
        files.extend(str(p) for p in found)
        labels.extend([len(names)] * len(found))
        names.append(folder.name)
    if empty:
        log.warning("--%s: skipped %d class folder(s) with no images (%s): %s", flag, len(empty),
                    "/".join(IMAGE_EXTENSIONS), ", ".join(empty))
    if not files:
        raise DataError(f"--{flag}: no images ({', '.join(IMAGE_EXTENSIONS)}) under {str(root)!r}")
    images = drop_bad_images(ImageSet(class_names=tuple(names), labels=np.array(labels, np.int32),
                                      files=np.array(files)), on_bad_image, flag)
    if len(images) == 0:
        raise DataError(f"--{flag}: none of the image files under {str(root)!r} is readable")
    return images


def _folder(root: Path, flag: str, on_bad_image: str = "fail") -> dict[str, ImageSet]:
    """A folder of classes, or of train/val/test folders of classes."""
    if not root.is_dir():
        raise DataError(f"--{flag}: folder {str(root)!r} does not exist")
    found = {}
    for split, names in SPLIT_NAMES.items():
        for name in names:
            if (root / name).is_dir() and class_folders(root / name, flag, warn=False):
                found[split] = root / name
                break
    if "train" in found:
        return {split: read_class_folders(path, flag, on_bad_image)
                for split, path in found.items()}
    return {"all": read_class_folders(root, flag, on_bad_image)}


# ---------------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class TableReading:
    """How an image table is read: its columns and the run's task (`options`: its group)."""

    file_column: str
    label_column: str
    task: Task
    options: Any


def read_image_table(path: Path, reading: TableReading, flag: str = "data",
                     on_bad_image: str = "fail") -> ImageSet:
    """A CSV / TSV / JSON-lines table of image paths (relative to its folder) and labels, the
    labels read by the run's task: how multi-label tags and regression targets reach images.
    A missing file or bad row names its line."""
    rows = tables.table_rows(path, flag)
    table = path.suffix.lower() != ".jsonl"
    columns = {reading.file_column: "file_column", reading.label_column: "label_column"}
    if table:  # the header names the columns of every row
        tables.check_columns(path, 1, rows[0][1], columns, flag)
    files, values, where = [], [], []
    for number, row in rows:
        if not table:
            tables.check_columns(path, number, row, columns, flag)
        label = tables.label_value(row, reading.label_column)
        problem = tables.row_problem(row, label, table, number)
        name = str(row.get(reading.file_column) or "").strip()
        file = path.parent / name if name else None
        if not problem and (file is None or not file.is_file()):
            problem = f"image file {name!r} not found (paths are relative to {path.parent})"
        if problem:
            raise DataError(f"--{flag}: {path}:{number}: {problem}")
        files.append(str(file))
        values.append(label)
        where.append(f"{path}:{number}")
    names, targets = reading.task.parse(values, where, reading.options, flag,
                                        reading.label_column)
    images = drop_bad_images(ImageSet(class_names=names, labels=targets, files=np.array(files),
                                      task=reading.task.name), on_bad_image, flag)
    if len(images) == 0:
        raise DataError(f"--{flag}: none of the image files of {path} is readable")
    return images


# ---------------------------------------------------------------------------------- TFDS


def _tfds(name: str, data_dir: str, flag: str, label_key: str) -> dict[str, ImageSet]:
    found = tfds.builder(name, data_dir, flag)
    reading = tfds.supervised(found, name, flag, "Image", label_key)
    return {split: ImageSet(class_names=reading.class_names, labels=labels, task=reading.task,
                            tfds_split=(name, tfds_name, data_dir, reading.input_key),
                            tfds_index=np.arange(len(labels), dtype=np.int64))
            for split, (tfds_name, labels) in tfds.split_labels(found, name, flag,
                                                                reading).items()}


# ---------------------------------------------------------------------------------- opening


def open_source(spec: str, data_dir: str = "", flag: str = "data", on_bad_image: str = "fail",
                reading: TableReading | None = None) -> dict[str, ImageSet]:
    """Opens a source string; returns its splits ('all', or some of 'train'/'val'/'test').
    A table file needs `reading` (its columns and the task)."""
    if spec.startswith("builtin:"):
        return BUILTIN.get(spec.split(":", 1)[1], flag)()
    if spec.startswith("tfds:"):
        return _tfds(spec.split(":", 1)[1], data_dir, flag,
                     reading.label_column if reading is not None else "label")
    path = spec.split(":", 1)[1] if spec.startswith("folder:") else spec
    if tables.is_table(path) and os.path.isfile(path) and reading is not None:
        return {"all": read_image_table(Path(path), reading, flag, on_bad_image)}
    return _folder(Path(path), flag, on_bad_image)


