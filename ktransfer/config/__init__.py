"""Frozen run configuration, one module per group; each field is also an absl flag of the same name.

The dataclasses here are the single source of truth: `define_flags` turns their fields into flags,
`from_flags` builds a validated config from parsed flags, and `to_flagfile` writes a config back
out as a flagfile that re-runs the same job. Library code takes these objects, never `FLAGS`.

This package holds values and their rules (ranges, cross-field rules) and imports nothing of the
package but `errors`, and nothing heavy: building a config never imports TensorFlow or touches
the file system. A field whose choices are the names of a registry says so as a string
(`registry="ktransfer.optim.catalog:SCHEDULES"`); `ktransfer.cli` turns those into flag
choices and `ktransfer.preflight` checks names and files once, before any work.
"""

from ktransfer.config.adapt import AdaptConfig
from ktransfer.config.commands import (
    EvaluateConfig,
    ExportConfig,
    FindLRConfig,
    LoadConfig,
    LRFinderConfig,
    PredictConfig,
    ProbeConfig,
    ProbeRunConfig,
    SearchConfig,
    TuneConfig,
)
from ktransfer.config.data import DataConfig
from ktransfer.config.distribute import DistributeConfig
from ktransfer.config.fields import AUTO_BATCH, AUTO_LR, FROM_RUN, option, require
from ktransfer.config.flags import (
    GROUPS,
    build,
    build_command,
    build_find_lr,
    build_probe,
    build_search,
    command_from_flags,
    command_groups,
    define_flags,
    fields_with_registry,
    find_lr_from_flags,
    find_lr_groups,
    flag_values,
    from_flagfile,
    from_flags,
    given_run_fields,
    options,
    parse_flagfile,
    probe_from_flags,
    probe_groups,
    read_run_flags,
    replace_run_fields,
    resolve_from_run,
    run_groups,
    search_from_flags,
    search_groups,
    to_flagfile,
)
from ktransfer.config.groups import declared_groups, register_group, register_recipe
from ktransfer.config.model import ModelConfig
from ktransfer.config.run import RunConfig
from ktransfer.config.train import TrainConfig

__all__ = [
    "AUTO_BATCH", "AUTO_LR", "AdaptConfig", "DataConfig", "DistributeConfig",
    "EvaluateConfig",
    "ExportConfig", "FROM_RUN", "FindLRConfig", "GROUPS", "LRFinderConfig", "LoadConfig",
    "ModelConfig", "PredictConfig", "ProbeConfig", "ProbeRunConfig", "RunConfig",
    "SearchConfig", "TrainConfig", "TuneConfig", "build", "build_command", "build_find_lr",
    "build_probe", "build_search", "command_from_flags",
    "command_groups", "declared_groups", "define_flags", "fields_with_registry",
    "find_lr_from_flags", "find_lr_groups", "flag_values", "from_flagfile", "from_flags",
    "given_run_fields", "option", "options", "parse_flagfile", "probe_from_flags",
    "probe_groups", "read_run_flags", "register_group",
    "register_recipe", "replace_run_fields", "require", "resolve_from_run", "run_groups",
    "search_from_flags", "search_groups", "to_flagfile",
]
