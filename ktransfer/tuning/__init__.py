"""Keras Tuner searches: the head on a frozen backbone, or whole adaptation runs (`search`);
their registries in `catalog` (known without TensorFlow). The names below load with
TensorFlow on first use."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ktransfer.tuning.searching import (
        SearchResult,
        apply_adaptation,
        apply_hyperparameters,
        format_table,
        retry_orphaned_trials,
        search,
        trial_table,
    )

_SEARCH_NAMES = {"SearchResult", "apply_adaptation", "apply_hyperparameters", "format_table",
                 "retry_orphaned_trials", "search", "trial_table"}

__all__ = ["SearchResult", "apply_adaptation", "apply_hyperparameters", "format_table",
           "retry_orphaned_trials", "search", "trial_table"]


def __getattr__(name: str) -> Any:
    if name in _SEARCH_NAMES:
        return getattr(importlib.import_module(f"{__name__}.searching"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
