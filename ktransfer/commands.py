"""The commands, listed in one place: what each does, which config groups its flags come from
and how the parsed flags become its one frozen config. `python -m ktransfer.NAME` runs the
entry module `ktransfer/NAME.py` (flags -> config -> one library call); `ktransfer NAME ...`
(the console script) does the same through this registry.

A new command is its entry module plus one `register_command` line (tests/plugins/ shows a toy
one); the flag reference (docs/reference/generate.py), the docs' command check and `ktransfer
--help` read this registry. Light: no TensorFlow, no command module imported.
"""

from __future__ import annotations

import runpy
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ktransfer import config
from ktransfer.registry import Registry


@dataclass(frozen=True)
class Command:
    """One command.

    Args:
        about: what it does, in a few words (help texts, the flag reference).
        groups: () -> {group name: config dataclass} of its flags.
        build: (parsed absl FlagValues) -> its frozen config, every rule checked.
        module: its entry module, run as `python -m MODULE`.
    """

    about: str
    groups: Callable[[], dict[str, type]]
    build: Callable[[Any], Any]
    module: str


COMMANDS: Registry[Command] = Registry("command", "command")


def register_command(name: str, about: str, groups: Callable[[], dict[str, type]],
                     build: Callable[[Any], Any], module: str = "") -> Command:
    """Registers command `name` (entry module `ktransfer.NAME` unless `module` is given)."""
    command = Command(about, groups, build, module or f"ktransfer.{name}")
    COMMANDS.register(name, command, about=about)
    return command


def _config_command(name: str, cls: type, about: str) -> None:
    register_command(name, about, lambda: config.command_groups(cls, name),
                     lambda fv: config.command_from_flags(cls, fv))


register_command("train", "train a classifier: a new head on a backbone, then fine-tuning",
                 config.run_groups, config.from_flags)
_config_command("evaluate", config.EvaluateConfig,
                "score a run's model on its test split or other data")
_config_command("predict", config.PredictConfig, "answers for new images or texts")
_config_command("export", config.ExportConfig,
                "a SavedModel for TF Serving (and TFLite / ONNX copies) from a run")
register_command("tune", "search the head's hyperparameters with Keras Tuner",
                 config.search_groups, config.search_from_flags)
register_command("find_lr", "a learning-rate range test", config.find_lr_groups,
                 config.find_lr_from_flags)
register_command("probe", "rank backbones from frozen features and audit the labels, before "
                 "training", config.probe_groups, config.probe_from_flags)


def main() -> None:
    """`ktransfer NAME [flags]`: runs command NAME's entry module as `python -m` would."""
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print("usage: ktransfer COMMAND [--flags]; commands:\n" + "\n".join(
            f"  {name:<10} {COMMANDS.about(name)}" for name in COMMANDS), file=sys.stderr)
        sys.exit(0 if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help") else 2)
    command = COMMANDS.get(sys.argv[1])
    sys.argv = [command.module, *sys.argv[2:]]
    runpy.run_module(command.module, run_name="__main__", alter_sys=True)
