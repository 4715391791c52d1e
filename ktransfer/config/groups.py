"""Config groups that extensions declare: a modality's own options (and a task's), each a
frozen dataclass in the extension's own package, registered by name with its one registration.

`config` reads them by string, as it reads registries: `register_group("text",
"ktransfer.text.options:TextOptions")` (called by `ktransfer.modality.register_modality`) makes
the group's fields flags of every run, held in `RunConfig.groups` and read with
`cfg.group("text")`. A field declared with `option(..., reading=True)` (how examples are read:
a bad-input policy, table columns) is also a flag of `evaluate` and `predict`, where it defaults
to the value the model's run was trained with. Shared code never names these fields.

Group modules import nothing heavy (as all of `config`): building a config imports no
TensorFlow.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import typing
from typing import Any

from ktransfer.config.fields import FROM_RUN, option
from ktransfer.errors import ConfigError

# The modules whose registrations declare groups, imported before the groups are read (so
# `config.build(max_length=64)` knows the text group without importing the modalities first).
DECLARED_BY = ("ktransfer.modality", "ktransfer.tasks")
_DECLARED: dict[str, str] = {}  # group name -> "package.module:Class"
_RECIPES: dict[str, str] = {}  # modality -> "package.module:DICT" of {flag: default}


def register_recipe(modality: str, path: str) -> None:
    """Defaults of shared flags that differ for `modality` (text: a schedule that fine-tunes a
    sentence encoder), used for every flag a run does not set: the dict at `path`
    ("module:NAME", a light module), read on first use."""
    _RECIPES[modality] = path


def recipe(modality: str) -> dict[str, Any]:
    """{flag: default} that `modality` changes (empty for none)."""
    return dict(recipes().get(modality, {}))


def recipes() -> dict[str, dict[str, Any]]:
    """{modality: {flag: default}} of every modality with a recipe (for --help)."""
    _declare()
    return {name: dict(_named(path)) for name, path in _RECIPES.items()}


def _declare() -> None:
    """Imports the modules whose registrations declare groups and recipes."""
    for module in DECLARED_BY:
        importlib.import_module(module)


def _named(path: str) -> Any:
    """The object a "module:NAME" string names (config may not import `ktransfer.registry`,
    whose `import_object` this is)."""
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


def register_group(name: str, path: str) -> None:
    """Declares the run config group `name`: the frozen dataclass at `path` ("module:Class")."""
    _DECLARED[name] = path


def declared_groups() -> dict[str, type]:
    """{name: dataclass} of every declared group, in registration order."""
    _declare()
    return {name: _named(path) for name, path in _DECLARED.items()}


def reading_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of a declared group that `evaluate` and `predict` also take."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("reading")]


@functools.cache
def reading_group(cls: type) -> type:
    """The command-side copy of a group's reading fields: same names and help, each unset by
    default ("run": as the model's run was trained)."""
    specs = []
    for f in reading_fields(cls):
        choices = f.metadata.get("choices")
        default = FROM_RUN if choices else ""
        helptext = f"{f.metadata['help']} Default ({default or 'empty'}): as the model's run."
        specs.append((f.name, str, option(default, helptext,
                                          (FROM_RUN, *choices) if choices else None,
                                          from_run=True)))
    doc = f"{(cls.__doc__ or '').strip().splitlines()[0].rstrip('.')}; unset: as the model's run."
    made = dataclasses.make_dataclass(f"{cls.__name__}Reading", specs, frozen=True,
                                      namespace={"__doc__": doc,
                                                 "__post_init__": _typed_by(cls)})
    made.__module__ = cls.__module__
    return made


def _typed_by(cls: type) -> Any:
    """The reading copy's check: a given value of a field that is not text in `cls` (a number)
    becomes that type, and passes `cls`'s own rules, or is a ConfigError naming the flag."""
    hints = typing.get_type_hints(cls)

    def post_init(self: Any) -> None:
        for f in reading_fields(cls):
            value, kind = getattr(self, f.name), hints[f.name]
            if kind is str or not isinstance(value, str) or value in ("", FROM_RUN):
                continue
            try:
                typed = kind(value)
            except ValueError:
                raise ConfigError(f.name, f"must be a {kind.__name__}, got {value!r}") from None
            cls(**{f.name: typed})  # the group's own rules, naming the flag
            object.__setattr__(self, f.name, typed)

    return post_init


def reading_groups() -> dict[str, type]:
    """{name: command-side reading group} of the declared groups that have reading fields."""
    return {name: reading_group(cls) for name, cls in declared_groups().items()
            if reading_fields(cls)}


def pick(groups: tuple[tuple[str, Any], ...], name: str, classes: dict[str, type]) -> Any:
    """The group `name` of `groups` ((name, instance) pairs), or its defaults."""
    for key, value in groups:
        if key == name:
            return value
    if name not in classes:
        raise KeyError(f"no config group {name!r}; declared: {', '.join(classes)}")
    return classes[name]()
