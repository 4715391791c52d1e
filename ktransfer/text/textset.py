"""`TextSet`: the labelled texts of one split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ktransfer.data.examples import Examples


@dataclass(frozen=True)
class TextSet(Examples):
    """Labelled texts.

    Args:
        texts: str [N], one text per example (object array of Python strings).
        ids: str [N] or None, where each text came from ("file.csv:12", a file name), for
            reports and predictions; None names a text by itself.
        skipped: bad texts (empty, undecodable) left out while reading the source.
    """

    texts: np.ndarray | None = None
    ids: np.ndarray | None = None
    skipped: int = 0

    def names(self) -> list[str] | None:
        if self.ids is not None:
            return [str(i) for i in self.ids]
        return None if self.texts is None else [str(t) for t in self.texts]


def text_set(class_names: tuple[str, ...], labels: list[int] | np.ndarray, texts: list[str],
             ids: list[str] | None = None, skipped: int = 0, task: str = "single_label",
             skipped_names: tuple[str, ...] = ()) -> TextSet:
    """A TextSet from Python lists (`labels`: class ids, or targets in `task`'s form)."""
    targets = labels if isinstance(labels, np.ndarray) else np.asarray(labels, np.int32)
    return TextSet(class_names=tuple(class_names), labels=targets, task=task,
                   texts=np.array(texts, dtype=object),
                   ids=None if ids is None else np.array(ids, dtype=object), skipped=skipped,
                   skipped_names=skipped_names)
