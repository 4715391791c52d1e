"""`Annotations`: the part of a task that reads the annotation files users export from
labelling tools (a COCO JSON file, a table of boxes), where one row of a table is not one
example. The image modality asks it first for a `--data` path it claims."""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Annotated:
    """Image files and their targets, as an annotation file gives them.

    Args:
        files: the image paths, one per example.
        class_names: what the targets' class ids refer to.
        targets: the targets in the task's form, one row per example.
    """

    files: tuple[str, ...]
    class_names: tuple[str, ...]
    targets: np.ndarray


class Annotations(abc.ABC):
    """Readers of a task's own annotation formats."""

    formats: str = ""  # for messages, e.g. "a COCO JSON file or a CSV of boxes"

    @abc.abstractmethod
    def claims(self, path: str) -> bool:
        """Whether `path` is in one of these formats (cheap: its name, its first bytes)."""

    @abc.abstractmethod
    def read(self, path: str, flag: str) -> dict[str, Annotated]:
        """The splits of `path` ('all', or some of 'train' / 'val' / 'test'); a bad
        annotation is a one-line DataError naming `--flag`, the file and the line (or the
        object's index)."""
