"""One registry per concept: a name mapped to what builds it.

Each concept package declares its registries in its `catalog` module (`optim.catalog.SCHEDULES`,
`domain.catalog.ALIGNMENTS`, `image.catalog.BACKBONES`, ...) or its light `__init__`
(`tasks.TASKS`, `modality.MODALITIES`); flag choices and pre-flight checks read the names from
there, so a new entry is one registration. Entries are `"module:attribute"` strings, imported
on first use: knowing the names never imports TensorFlow, so a misspelt name is refused before
TensorFlow loads (tests/test_registry.py checks every registry a flag names).

Example:

    SCHEDULES = Registry("learning-rate schedule", flag="lr_schedule")

    @SCHEDULES.register("constant")
    def constant(cfg, peak, steps_per_epoch, epochs):
        return peak

    SCHEDULES.get("constant")      # the function
    SCHEDULES.get("wavy")          # ConfigError: --lr_schedule: unknown learning-rate schedule ...
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from ktransfer.errors import ConfigError

T = TypeVar("T")


def import_object(path: str) -> Any:
    """The object a `"package.module:attribute"` string names."""
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


class Registry(Generic[T]):
    """Names of one concept mapped to their builders (or lazily imported `"module:attr"` paths).

    Args:
        concept: what the entries are, for messages ("learning-rate schedule").
        flag: the flag whose value names an entry, for messages (without dashes).
    """

    def __init__(self, concept: str, flag: str, entries: dict[str, T | str] | None = None,
                 about: dict[str, str] | None = None):
        self.concept = concept
        self.flag = flag
        self._entries: dict[str, T | str] = dict(entries or {})
        self._about: dict[str, str] = dict(about or {})

    def register(self, name: str, value: T | str | None = None, about: str = "") -> Any:
        """Adds `name` (with a few words `about` it for the flag's help); with no `value`,
        returns a decorator that registers what it decorates."""
        if about:
            self._about[name] = about
        if value is not None:
            self._entries[name] = value
            return value

        def decorate(obj: T) -> T:
            self._entries[name] = obj
            return obj

        return decorate

    def unregister(self, name: str) -> None:
        """Takes `name` back (and what was said of it); nothing if it is not registered. For
        tests that register a plug-in for a while."""
        self._entries.pop(name, None)
        self._about.pop(name, None)

    def describe(self) -> str:
        """'name: about; name: about; ...' of every entry, for a flag's help; names alone
        where nothing was said about them. Loads no entry."""
        return "; ".join(f"{name}: {self._about[name]}" if name in self._about else name
                         for name in self._entries)

    def about(self, name: str) -> str:
        """The few words said about `name` ("" when none)."""
        self.check(name)
        return self._about.get(name, "")

    def names(self) -> tuple[str, ...]:
        """Every registered name, in registration order."""
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def check(self, name: str, flag: str | None = None) -> None:
        """Raises ConfigError naming the flag unless `name` is registered."""
        if name not in self._entries:
            raise ConfigError(flag or self.flag, f"unknown {self.concept} {name!r}; choose one "
                              f"of {', '.join(self._entries)}")

    def get(self, name: str, flag: str | None = None) -> T:
        """The entry `name` (imported on first use when registered as a path)."""
        self.check(name, flag)
        value = self._entries[name]
        if isinstance(value, str):
            value = import_object(value)
            self._entries[name] = value
        return value

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def values(self) -> list[T]:
        """Every entry, loaded, in registration order."""
        return [self.get(name) for name in self._entries]

    def items(self) -> list[tuple[str, T]]:
        """(name, entry) pairs, every entry loaded."""
        return [(name, self.get(name)) for name in self._entries]


def registry_at(path: str) -> Registry[Any]:
    """The registry a config field names in its metadata
    (`"ktransfer.optim.catalog:SCHEDULES"`)."""
    found = import_object(path)
    if not isinstance(found, Registry):
        raise TypeError(f"{path} is not a Registry")
    return found


Builder = Callable[..., Any]


# Keras classes whose modules are slow to import (keras-hub's), imported only when a model file
# names them: registered name (or its "package>" prefix) -> module. A task or modality whose
# models hold such a class adds it beside its registration.
KERAS_ON_DEMAND: dict[str, str] = {"keras_hub>": "keras_hub"}


def import_on_demand(config: object) -> None:
    """Imports the modules of the KERAS_ON_DEMAND classes a model's config names, before Keras
    reads the file, so that it finds them registered."""
    text = str(config)
    for name, module in KERAS_ON_DEMAND.items():
        if f"'{name}" in text:
            importlib.import_module(module)
