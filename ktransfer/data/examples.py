"""Labelled examples of any kind, and the train / validation / test splits of a run.

`Examples` holds what every kind shares: class names and one integer label per example. Each
modality subclasses it with its own per-example arrays (image files or pixels, texts); every
numpy array field with one row per example is sliced together by `subset`, so splitting, class
subsets and few-label sampling work the same way for all of them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from ktransfer.errors import DataError

E = TypeVar("E", bound="Examples")


@dataclass(frozen=True)
class Examples:
    """Labelled examples of one split.

    Args:
        class_names: the class of label i is `class_names[i]`.
        labels: int32 [N], one label per example.
    """

    class_names: tuple[str, ...]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self: E, indices: np.ndarray) -> E:
        """The examples at `indices` (positions in this set), every per-example array sliced."""
        indices = np.asarray(indices, dtype=np.int64)
        n = len(self.labels)
        changes = {f.name: value[indices] for f in dataclasses.fields(self)
                   if isinstance(value := getattr(self, f.name), np.ndarray) and len(value) == n}
        return dataclasses.replace(self, **changes)

    def relabel(self: E, class_names: tuple[str, ...]) -> E:
        """Keeps only examples of `class_names` and renumbers labels in that order."""
        missing = [c for c in class_names if c not in self.class_names]
        if missing:
            raise DataError(f"class {missing[0]!r} is not in the data; it has: "
                            f"{', '.join(self.class_names)}")
        new_index = {name: i for i, name in enumerate(class_names)}
        mapping = np.array([new_index.get(c, -1) for c in self.class_names], dtype=np.int32)
        mapped = mapping[self.labels]
        keep = np.flatnonzero(mapped >= 0)
        out = self.subset(keep)
        return dataclasses.replace(out, class_names=tuple(class_names), labels=mapped[keep])

    def align(self: E, class_names: list[str], flag: str = "data") -> E:
        """Relabelled to a model's class order; a class the model does not know is an error
        (the model cannot be right about it), classes absent from the data are fine."""
        unknown = [c for c in self.class_names if c not in class_names]
        if unknown:
            raise DataError(f"--{flag}: class {unknown[0]!r} is not a class of the model "
                            f"(labels.txt: {', '.join(class_names[:20])})")
        index = {name: i for i, name in enumerate(class_names)}
        mapping = np.array([index[c] for c in self.class_names], dtype=np.int32)
        return dataclasses.replace(self, class_names=tuple(class_names),
                                   labels=mapping[self.labels])

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

    def counts(self) -> dict[str, int]:
        """{split: number of examples} (test 0 when there is none)."""
        return {"train": len(self.train), "val": len(self.val),
                "test": len(self.test) if self.test is not None else 0}
