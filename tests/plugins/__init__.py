"""Toy plug-ins, one per extension axis, each added the way docs/extending.md says: new files
plus one registration, touching no file of the package. Each module has `register()` (its one
registration) and `unregister()` (taken back, so that other tests see the shipped entries
only); `installed(NAME)` does both around a test. tests/test_registry.py checks that every
axis of AXES has its toy and that registering it adds exactly one entry to exactly its
registry; each axis's own contract test runs the toy as it runs the shipped entries."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

# axis: (its registry, the toy's module under plugins/, the name it registers)
AXES = {
    "modality": ("ktransfer.modality:MODALITIES", "vectors", "vectors"),
    "task": ("ktransfer.tasks:TASKS", "one_box", "one_box"),
    "backbone source": ("ktransfer.image.catalog:SOURCES", "convs", "convs"),
    "alignment": ("ktransfer.domain.catalog:ALIGNMENTS", "mean_gap", "mean_gap"),
    "export format": ("ktransfer.deploy.catalog:FORMATS", "keras_copy", "keras_copy"),
    "command": ("ktransfer.commands:COMMANDS", "hello", "hello"),
    "tuner space": ("ktransfer.tuning.catalog:SPACES", "lr_grid", "lr_grid"),
}


@contextmanager
def installed(module: str) -> Iterator[ModuleType]:
    """The toy `plugins.MODULE`, registered for the duration, then taken back."""
    plugin = importlib.import_module(f"plugins.{module}")
    plugin.register()
    try:
        yield plugin
    finally:
        plugin.unregister()
