"""What the data layer asks of a run's task, declared here so that data depends on nothing
above it: `tasks.Task` meets this protocol (tests/test_tasks.py checks every registered task).

Targets are the task's own form (class ids [N], label sets [N, C], values [N], or whatever a
new task reads, such as boxes per image): the data layer only hands them back to the task to
make, relabel, split, sample, check and write out.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Targets(Protocol):
    """A task as the data layer sees it (see `tasks.Task` for each method's contract)."""

    name: str

    def from_class_ids(self, class_names: tuple[str, ...], ids: np.ndarray, flag: str
                       ) -> Any: ...

    def relabel(self, targets: Any, names: tuple[str, ...], wanted: tuple[str, ...],
                strict: bool) -> tuple[Any, np.ndarray]: ...

    def split(self, targets: Any, fraction: float, seed: int
              ) -> tuple[np.ndarray, np.ndarray]: ...

    def sample(self, targets: Any, per_class: int, seed: int) -> np.ndarray: ...

    def check_splits(self, train: Any, val: Any, names: tuple[str, ...]) -> None: ...

    def target_text(self, target: Any, names: tuple[str, ...]) -> str: ...
