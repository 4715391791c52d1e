"""The part of a task that people read, apart from what training and export need.

A task's `Presentation` makes evaluation's summary of a split (evaluation.json), the lines
`ktransfer.evaluate` prints, the report's HTML sections, the model card's measured limits and
the galleries' exemplars. It is optional: a task without one (`Task.presentation_entry` empty)
gets `Plain`, which shows the example count and the task's quality and nothing per class.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Protocol

import numpy as np


class Scored(Protocol):
    """What a presentation reads of its task (a `ktransfer.tasks.task.Task`)."""

    headline: str

    def quality(self, outputs: np.ndarray, targets: np.ndarray, state: dict[str, Any]
                ) -> float: ...


class Presentation:
    """What evaluation shows of a task's outputs; built with its task (`self.task`)."""

    def __init__(self, task: Scored):
        self.task = task

    def summarize(self, outputs: np.ndarray, targets: np.ndarray, names: tuple[str, ...],
                  ids: list[str] | None, top_k: int, state: dict[str, Any]) -> dict[str, Any]:
        """evaluation.json: the metrics, per-class (label) rows and `mistakes`, the worst
        examples for the galleries: rows of index, file, true, predicted (as text), how (how
        wrong, as text: "97%"), output (the output that explains it, e.g. the class taken)."""
        return {"num_examples": int(len(targets)), "class_names": list(names),
                self.task.headline: self.task.quality(outputs, targets, state),
                "mistakes": []}

    def lines(self, summary: dict[str, Any], top_k: int) -> list[str]:
        """What `ktransfer.evaluate` prints of `summary`: the metrics first, then a line per
        class (label) or the worst examples."""
        headline = self.task.headline
        return [f"examples: {summary['num_examples']}  {headline.replace('_', ' ')}: "
                f"{summary[headline]:.4f}"]

    def sections(self, summary: dict[str, Any], out_dir: Path) -> str:
        """The report's HTML for `summary` (plots written into `out_dir` and embedded)."""
        return "".join(f"<p>{html.escape(line)}</p>" for line in self.lines(summary, 5))

    def limits(self, summary: dict[str, Any]) -> list[str]:
        """The model card's measured limits from a split's `summarize` (the weakest classes,
        the largest errors), one Markdown sentence each: names from the data go in
        `runs.escape.md_code`."""
        return []

    def exemplars(self, targets: np.ndarray) -> list[tuple[int, int]]:
        """(position, output) of an example of each class (label), for galleries; none by
        default."""
        return []


Plain = Presentation  # what a task without a presentation of its own shows
