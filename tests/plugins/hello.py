"""A toy command: its entry module (flags -> one frozen config -> one library call) beside its
registration, `register_command("hello", ...)` in `register()`, made when the module is
imported (as `ktransfer hello` imports it)."""

from __future__ import annotations

from dataclasses import dataclass

from absl import flags

from ktransfer import cli, config
from ktransfer.commands import COMMANDS, register_command
from ktransfer.config import option, require


@dataclass(frozen=True)
class HelloConfig:
    """`hello`'s flags."""

    name: str = option("world", "Who to greet.")
    times: int = option(1, "How many times.")

    def __post_init__(self) -> None:
        require(self.times >= 1, "times", "must be >= 1")


def register() -> None:
    """The one registration."""
    if "hello" not in COMMANDS:
        register_command("hello", "greets", lambda: config.command_groups(HelloConfig, "hello"),
                         lambda fv: config.command_from_flags(HelloConfig, fv),
                         module="plugins.hello")


def unregister() -> None:
    """Takes it back, so that other tests see the shipped commands only."""
    COMMANDS.unregister("hello")


def greet(cfg: HelloConfig) -> str:
    """The library call."""
    return "\n".join([f"hello, {cfg.name}"] * cfg.times)


register()
COMMAND = COMMANDS.get("hello")
if __name__ == "__main__":
    cli.define_flags(COMMAND.groups())
    cli.run(lambda argv: print(greet(COMMAND.build(flags.FLAGS))) or 0, "ktransfer.hello")
