"""Configs <-> absl flags and flagfiles: `define_flags` turns the dataclasses' fields into flags,
`build` / `from_flags` make validated configs, `to_flagfile` writes one back out."""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from collections.abc import Callable
from typing import Any

from ktransfer.config.adapt import AdaptConfig
from ktransfer.config.commands import (
    FindLRConfig,
    LRFinderConfig,
    ProbeConfig,
    ProbeRunConfig,
    ReadConfig,
    SearchConfig,
    TuneConfig,
)
from ktransfer.config.data import DataConfig
from ktransfer.config.distribute import DistributeConfig
from ktransfer.config.fields import AUTO_BATCH, AUTO_LR, FROM_RUN, require
from ktransfer.config.groups import declared_groups, reading_groups, recipe
from ktransfer.config.model import ModelConfig
from ktransfer.config.run import RunConfig
from ktransfer.config.train import TrainConfig
from ktransfer.errors import ConfigError

# The groups every run has; the declared groups (a modality's own, `config.groups`) follow
# them in `run_groups()`.
GROUPS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "distribute": DistributeConfig,
    "adapt": AdaptConfig,
}

Choices = Callable[[str], tuple[str, ...]]


def run_groups() -> dict[str, type]:
    """{name: dataclass} of every group of a run: the shared ones, then the declared ones."""
    return {**GROUPS, **declared_groups()}


def search_groups() -> dict[str, type]:
    """The groups of `ktransfer.tune`: a run's and the search's."""
    return {**run_groups(), "tune": TuneConfig}


def find_lr_groups() -> dict[str, type]:
    """The groups of `ktransfer.find_lr`: a run's and the range test's."""
    return {**run_groups(), "find": FindLRConfig}


def probe_groups() -> dict[str, type]:
    """The groups of `ktransfer.probe`: a run's and the probe's."""
    return {**run_groups(), "probe": ProbeConfig}


def command_groups(cls: type, name: str = "command") -> dict[str, type]:
    """The groups of a command's flags: its config `cls` under `name` and, for `evaluate` and
    `predict`, the declared groups' reading options."""
    return {name: cls, **(reading_groups() if issubclass(cls, ReadConfig) else {})}


def options(cls: type) -> list[dataclasses.Field]:
    """The fields of a config dataclass that are flags (declared with `option`)."""
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


def define_flags(flag_values: Any = None, groups: dict[str, type] | None = None,
                 registry_names: Choices | None = None,
                 registry_help: Callable[[str], str] | None = None) -> None:
    """Defines one absl flag per config field of `groups` (default: a run's), idempotent per
    FlagValues.

    `registry_names(path)` gives the names of the registry a field names; without it such
    fields are free strings (checked in pre-flight), so parsing a flagfile imports nothing.
    `registry_help(path)` describes the entries, appended to the field's help as its choices.
    """
    from absl import flags

    fv = flag_values if flag_values is not None else flags.FLAGS
    for cls in (run_groups() if groups is None else groups).values():
        hints = typing.get_type_hints(cls)
        for f in options(cls):
            if f.name not in fv:
                _define(flags, fv, f, hints[f.name], registry_names, registry_help)


def _define(flags: Any, fv: Any, f: dataclasses.Field, kind: Any,
            registry_names: Choices | None, registry_help: Callable[[str], str] | None) -> None:
    helptext = f.metadata["help"]
    if f.metadata.get("registry") and registry_help is not None:
        helptext = f"{helptext} Choices: {registry_help(f.metadata['registry'])}."
    choices = tuple(f.metadata.get("choices") or ())
    if f.metadata.get("registry") and registry_names is not None:
        choices += registry_names(f.metadata["registry"])
    elif f.metadata.get("registry"):
        choices = ()
    if f.metadata.get("auto"):
        parser = _BatchParser(flags) if kind is int else _RateParser(flags)
        flags.DEFINE(parser, f.name, f.default, helptext, flag_values=fv)
    elif typing.get_origin(kind) is tuple:  # comma-separated list
        flags.DEFINE_list(f.name, [str(v) for v in typing.cast(tuple, f.default)], helptext,
                          flag_values=fv)
    elif choices:
        flags.DEFINE_enum(f.name, f.default, list(choices), helptext, flag_values=fv)
    elif kind is bool:
        flags.DEFINE_bool(f.name, f.default, helptext, flag_values=fv)
    elif kind is int:
        flags.DEFINE_integer(f.name, f.default, helptext, flag_values=fv)
    elif kind is float:
        flags.DEFINE_float(f.name, f.default, helptext, flag_values=fv)
    else:
        flags.DEFINE_string(f.name, f.default, helptext, flag_values=fv)


def _RateParser(flags: Any) -> Any:  # noqa: N802 (a class made on demand: absl is imported late)
    """An absl parser of a float that may also be `auto` (parsed as AUTO_LR)."""

    class RateParser(flags.FloatParser):
        def parse(self, argument: Any) -> float:
            if isinstance(argument, str) and argument.strip().lower() == "auto":
                return AUTO_LR
            value = super().parse(argument)
            if not math.isfinite(value):
                raise ValueError(f"give a positive number or auto, got {argument!r}")
            return value

    return RateParser()


def _BatchParser(flags: Any) -> Any:  # noqa: N802 (as _RateParser)
    """An absl parser of an integer that may also be `auto` (parsed as AUTO_BATCH)."""

    class BatchParser(flags.IntegerParser):
        def parse(self, argument: Any) -> int:
            if isinstance(argument, str) and argument.strip().lower() == "auto":
                return AUTO_BATCH
            value = super().parse(argument)
            if value < 1:
                raise ValueError(f"give a positive number or auto, got {argument!r}")
            return value

    return BatchParser()


def fields_with_registry(cfg: Any) -> list[tuple[str, Any, str]]:
    """(flag, value, registry path) of every registry-backed field of `cfg`, for pre-flight."""
    out = []
    for part in _parts(cfg):
        for f in dataclasses.fields(part):
            if f.metadata.get("registry"):
                value = getattr(part, f.name)
                fixed = tuple(f.metadata.get("choices") or ())
                values = value if isinstance(value, tuple) else (value,)
                out += [(f.name, v, f.metadata["registry"]) for v in values if v not in fixed]
    return out


def _convert(cls: type, f: dataclasses.Field, value: Any) -> Any:
    name = f.name
    kind = typing.get_type_hints(cls)[name]
    if typing.get_origin(kind) is tuple:
        item = typing.get_args(kind)[0]
        items = [str(v).strip() for v in (value or []) if str(v).strip()]
        try:
            value = tuple(item(v) for v in items)
        except ValueError:
            raise ConfigError(name, f"expected comma-separated {item.__name__} values, "
                              f"got {','.join(items)!r}") from None
    _check_choices(f, value)
    return value


def _check_choices(f: dataclasses.Field, value: Any) -> None:
    """A field's fixed choices hold for every way of building a config, as the command line's
    enum flags hold them (registry-backed names are checked in pre-flight)."""
    choices = f.metadata.get("choices")
    if not choices or f.metadata.get("registry"):
        return
    for item in value if isinstance(value, tuple) else (value,):
        require(item in choices, f.name, f"expected one of {', '.join(choices)}, got {item!r}")


def _build_parts(groups: dict[str, type], values: dict[str, Any]) -> dict[str, Any]:
    """{group: its dataclass built from `values`}, the modality's recipe (`register_recipe`)
    giving flags not in `values`; unknown names are an error."""
    known = {f.name for cls in groups.values() for f in options(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(unknown[0], "is not a known option")
    if "modality" in known:
        default = next(f.default for cls in groups.values() for f in options(cls)
                       if f.name == "modality")
        values = {**recipe(str(values.get("modality", default))), **values}
    return {group: cls(**{f.name: _convert(cls, f, values[f.name])
                          for f in options(cls) if f.name in values})
            for group, cls in groups.items()}


def _run(parts: dict[str, Any]) -> RunConfig:
    """A `RunConfig` of built groups: the shared ones by name, the declared ones in `groups`."""
    shared = {name: parts.pop(name) for name in GROUPS}
    return RunConfig(**shared, groups=tuple(parts.items()))


def build(**values: Any) -> RunConfig:
    """Builds a validated `RunConfig` from keyword values (unknown names are an error).

    The notebook-friendly way to make a config:
    `config.build(data="builtin:digits", backbone="small_cnn", weights="none")`.
    """
    return _run(_build_parts(run_groups(), values))


def build_search(**values: Any) -> SearchConfig:
    """Builds a validated `SearchConfig` (run flags plus search flags) from keyword values."""
    parts = _build_parts(search_groups(), values)
    tune = parts.pop("tune")
    return SearchConfig(run=_run(parts), tune=tune)


def build_probe(**values: Any) -> ProbeRunConfig:
    """Builds a validated `ProbeRunConfig` (run flags plus probe flags) from keyword values."""
    parts = _build_parts(probe_groups(), values)
    probe = parts.pop("probe")
    return ProbeRunConfig(run=_run(parts), probe=probe)


def build_find_lr(**values: Any) -> LRFinderConfig:
    """Builds a validated `LRFinderConfig` (run flags plus range-test flags) from keyword
    values."""
    parts = _build_parts(find_lr_groups(), values)
    find = parts.pop("find")
    return LRFinderConfig(run=_run(parts), find=find)


def build_command(cls: type, **values: Any) -> Any:
    """Builds a validated command config (`EvaluateConfig`, `PredictConfig`, ...) from keyword
    values, the declared groups' reading options included:
    `config.build_command(PredictConfig, model="runs/x", on_bad_image="skip")`."""
    parts = _build_parts(command_groups(cls), values)
    command = parts.pop("command")
    return dataclasses.replace(command, reading=tuple(parts.items())) if parts else command


def flag_values(fv: Any, groups: dict[str, type], given_only: bool = False
                ) -> dict[str, Any]:
    """{field name: parsed flag value} for every field of `groups` (`given_only`: those set
    on the command line or in a flagfile, so that the others take the modality's recipe)."""
    return {f.name: fv[f.name].value for cls in groups.values() for f in options(cls)
            if not given_only or fv[f.name].present}


def command_from_flags(cls: type, flag_values_: Any = None) -> Any:
    """A command's config (`EvaluateConfig`, ...) from parsed absl flags."""
    from absl import flags

    fv = flag_values_ if flag_values_ is not None else flags.FLAGS
    return build_command(cls, **flag_values(fv, command_groups(cls)))


def from_flags(flag_values_: Any = None) -> RunConfig:
    """Builds a validated `RunConfig` from parsed absl flags."""
    from absl import flags

    fv = flag_values_ if flag_values_ is not None else flags.FLAGS
    return build(**flag_values(fv, run_groups(), given_only=True))


def find_lr_from_flags(flag_values_: Any = None) -> LRFinderConfig:
    """Builds a validated `LRFinderConfig` from parsed absl flags."""
    from absl import flags

    fv = flag_values_ if flag_values_ is not None else flags.FLAGS
    return build_find_lr(**flag_values(fv, find_lr_groups(), given_only=True))


def probe_from_flags(flag_values_: Any = None) -> ProbeRunConfig:
    """Builds a validated `ProbeRunConfig` from parsed absl flags."""
    from absl import flags

    fv = flag_values_ if flag_values_ is not None else flags.FLAGS
    return build_probe(**flag_values(fv, probe_groups(), given_only=True))


def search_from_flags(flag_values_: Any = None) -> SearchConfig:
    """Builds a validated `SearchConfig` from parsed absl flags."""
    from absl import flags

    fv = flag_values_ if flag_values_ is not None else flags.FLAGS
    return build_search(**flag_values(fv, search_groups(), given_only=True))


def parse_flagfile(path: str | os.PathLike, groups: dict[str, type] | None = None,
                   skip_unknown: bool = False) -> dict[str, Any]:
    """{field: value} of a flagfile, parsed as `--flagfile=PATH` would be (default: a run's
    groups); with `skip_unknown` lines of flags outside `groups` are left out (a run's
    flags.cfg read by another command)."""
    from absl import flags

    fv = flags.FlagValues()
    groups = run_groups() if groups is None else groups
    define_flags(fv, groups)
    argv = [f"--flagfile={os.fspath(path)}"]
    if skip_unknown:
        try:
            lines = [line.strip() for line in open(path, encoding="utf-8")]
        except OSError as exc:
            raise ConfigError("model", f"cannot read the run's flags: {exc}") from None
        argv = [line for line in lines if line.startswith("--") and _known(line, fv)]
    try:
        fv(["ktransfer", *argv])
    except flags.Error as exc:
        raise ConfigError("flagfile", f"{os.fspath(path)}: {exc}") from None
    return flag_values(fv, groups, given_only=True)


def _known(line: str, fv: Any) -> bool:
    """Whether a `--name=value` / `--noname` line sets a flag defined in `fv`."""
    name = line[2:].split("=", 1)[0]
    return name in fv or (name.startswith("no") and "=" not in line and name[2:] in fv)


def from_flagfile(path: str | os.PathLike, **overrides: Any) -> RunConfig:
    """Builds a config from a flagfile, as `--flagfile=PATH` would, then applies `overrides`.

    For notebooks: `config.from_flagfile("configs/quickstart.cfg", verbose=0)`.
    """
    return build(**{**parse_flagfile(path), **overrides})


def read_run_flags(path: str | os.PathLike) -> RunConfig:
    """The `RunConfig` of a run's resolved flags.cfg (flags of other commands in it skipped)."""
    return build(**parse_flagfile(path, run_groups(), skip_unknown=True))


def to_flagfile(cfg: Any, header: str = "") -> str:
    """Returns a flagfile that reproduces `cfg` exactly (every field written)."""
    lines = [f"# {line}" for line in header.splitlines()]
    for part in _parts(cfg):
        for f in options(type(part)):
            value = getattr(part, f.name)
            if isinstance(value, bool):
                lines.append(f"--{f.name}" if value else f"--no{f.name}")
            elif f.metadata.get("auto") and value in (AUTO_LR, AUTO_BATCH):
                lines.append(f"--{f.name}=auto")
            elif isinstance(value, tuple):
                lines.append(f"--{f.name}={','.join(str(v) for v in value)}")
            else:
                lines.append(f"--{f.name}={value}")
    return "\n".join(lines) + "\n"


def _parts(cfg: Any) -> list[Any]:
    """The flag-holding dataclasses of a RunConfig, SearchConfig or single group."""
    if isinstance(cfg, SearchConfig):
        return [*_parts(cfg.run), cfg.tune]
    if isinstance(cfg, RunConfig):
        return [getattr(cfg, name) for name in GROUPS] + [cfg.group(name)
                                                          for name in declared_groups()]
    return [cfg]


def _run_fields() -> dict[str, tuple[str, dataclasses.Field]]:
    """{field name: (group, field)} of every run group."""
    return {f.name: (group, f) for group, cls in run_groups().items() for f in options(cls)}


def _command_parts(cmd: Any) -> list[Any]:
    """A command's config and its reading groups (evaluate, predict)."""
    return [cmd, *(part for _, part in getattr(cmd, "reading", ()))]


def _unset(part: Any, f: dataclasses.Field) -> bool:
    return bool(f.metadata.get("from_run")) and getattr(part, f.name) in ("", FROM_RUN)


def given_run_fields(cmd: Any) -> dict[str, Any]:
    """The `from_run` fields of a command's config (and of its reading groups) that were given
    (not "" / FROM_RUN)."""
    return {f.name: getattr(part, f.name) for part in _command_parts(cmd)
            for f in options(type(part)) if f.metadata.get("from_run") and not _unset(part, f)}


def replace_run_fields(run: RunConfig, values: dict[str, Any]) -> RunConfig:
    """`run` with the fields named in `values` replaced, in whichever group holds each."""
    where = _run_fields()
    by_group: dict[str, dict[str, Any]] = {}
    for name, value in values.items():
        by_group.setdefault(where[name][0], {})[name] = value
    declared = dict(run.groups)
    shared = {}
    for group, changes in by_group.items():
        if group in GROUPS:
            shared[group] = dataclasses.replace(getattr(run, group), **changes)
        else:
            declared[group] = dataclasses.replace(run.group(group), **changes)
    return dataclasses.replace(run, **shared, groups=tuple(declared.items()))


def _resolved(part: Any, run: RunConfig | None) -> Any:
    """`part` (a command config or a reading group) with its unset `from_run` fields taken
    from `run`, or from the run fields' defaults without one."""
    where, filled = _run_fields(), {}
    for f in options(type(part)):
        if _unset(part, f):
            group, run_field = where[f.name]
            held = (None if run is None else getattr(run, group) if group in GROUPS
                    else run.group(group))
            filled[f.name] = run_field.default if held is None else getattr(held, f.name)
    return dataclasses.replace(part, **filled)


def resolve_from_run(cmd: Any, run: RunConfig | None) -> Any:
    """A command's config with each unset `from_run` field (its own and its reading groups')
    taken from `run` (the run the model was trained by), or from the run fields' defaults for
    a model without a run."""
    cmd = _resolved(cmd, run)
    reading = getattr(cmd, "reading", None)
    if reading is None:
        return cmd
    groups = reading_groups()
    complete = [(name, _resolved(dict(reading).get(name) or cls(), run))
                for name, cls in groups.items()]
    return dataclasses.replace(cmd, reading=tuple(complete))
