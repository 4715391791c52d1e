"""Labelled examples of any kind, and the train / validation / test splits of a run.

`Examples` holds what every kind shares: class names and the targets (in the form of the run's
task: `ktransfer.tasks`). Each modality subclasses it with its own per-example arrays (image
files or pixels, texts); every numpy array field with one row per example is sliced together by
`subset`, so splitting, class subsets and few-label sampling work the same way for all of them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from ktransfer.data.targets import Targets
from ktransfer.errors import DataError

E = TypeVar("E", bound="Examples")


@dataclass(frozen=True)
class Examples:
    """Labelled examples of one split.

    Args:
        class_names: the class (label, target) names the targets refer to.
        labels: the targets, in the form of the task named by `task` (`ktransfer.tasks`):
            int32 class ids [N] for single_label (what class folders and built-in sets give),
            float32 label sets [N, C] for multi_label, float32 values [N] for regression.
        task: the task whose form `labels` are in.
        skipped_names: the examples reading left out as bad, each "where (why)", for the
            report's data section.
    """

    class_names: tuple[str, ...]
    labels: np.ndarray
    task: str = dataclasses.field(default="single_label", kw_only=True)
    # what reading left out (--on_bad_image=skip, --on_bad_text=skip): "where (why)" each
    skipped_names: tuple[str, ...] = dataclasses.field(default=(), kw_only=True)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self: E, indices: np.ndarray) -> E:
        """The examples at `indices` (positions in this set), every per-example array sliced."""
        indices = np.asarray(indices, dtype=np.int64)
        n = len(self.labels)
        changes = {f.name: value[indices] for f in dataclasses.fields(self)
                   if isinstance(value := getattr(self, f.name), np.ndarray) and len(value) == n}
        return dataclasses.replace(self, **changes)

    def as_task(self: E, task: Targets, flag: str = "data") -> E:
        """These examples with targets in `task`'s form: class ids become the task's targets
        (a task that is not one class per example refuses them, naming `flag`)."""
        if self.task == task.name:
            return self
        if self.task != "single_label":
            raise DataError(f"--{flag}: holds {self.task} targets; pass --task={self.task} "
                            f"(the run is --task={task.name})")
        labels = task.from_class_ids(self.class_names, self.labels, flag)
        return dataclasses.replace(self, labels=labels, task=task.name)

    def relabel(self: E, class_names: tuple[str, ...], task: Targets) -> E:
        """Keeps only examples of `class_names` (--classes) and renumbers their targets in
        that order."""
        labels, keep = task.relabel(self.labels, self.class_names, tuple(class_names), False)
        return dataclasses.replace(self.subset(keep), class_names=tuple(class_names),
                                   labels=labels)

    def align(self: E, class_names: list[str], task: Targets, flag: str = "data") -> E:
        """Relabelled to a model's class order; a class the model does not know is an error
        (the model cannot be right about it), classes absent from the data are fine."""
        try:
            labels, keep = task.relabel(self.labels, self.class_names, tuple(class_names),
                                        True)
        except DataError as exc:
            raise DataError(f"--{flag}: {exc}") from None
        return dataclasses.replace(self.subset(keep), class_names=tuple(class_names),
                                   labels=labels)

    def names(self) -> list[str] | None:
        """A name per example for reports (file paths, ids), or None when there are none."""
        return None


@dataclass(frozen=True)
class Splits:
    """Train, validation and test examples sharing one list of class names."""

    train: Examples
    val: Examples
    test: Examples | None

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.train.class_names

    def named(self) -> dict[str, Examples]:
        """{split: its examples} of the splits there are (train, val, then test)."""
        found: dict[str, Examples] = {"train": self.train, "val": self.val}
        if self.test is not None:
            found["test"] = self.test
        return found

    def counts(self) -> dict[str, int]:
        """{split: number of examples} (test 0 when there is none)."""
        return {"train": len(self.train), "val": len(self.val),
                "test": len(self.test) if self.test is not None else 0}
