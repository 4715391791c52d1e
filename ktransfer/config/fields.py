"""Config fields that are also absl flags: `option` declares one, `require` states a rule."""

from __future__ import annotations

from dataclasses import field
from typing import Any

from ktransfer.errors import ConfigError

# --lr=auto / --fine_tune_lr=auto: the learning-rate range test picks the rate. A value no
# number given on the command line can take: --lr=-1 is refused, not read as auto.
AUTO_LR = float("-inf")
# --batch_size=auto: the largest batch whose training step fits, found by trying. As AUTO_LR, a
# value no batch size given can take (--batch_size=0 is refused, not read as auto).
AUTO_BATCH = -(2**31)
FROM_RUN = "run"  # a command's reading option left to what the model's run was trained with


def option(default: Any, help: str, choices: tuple[str, ...] | None = None,
           registry: str | None = None, auto: bool = False, from_run: bool = False,
           reading: bool = False) -> Any:
    """A config field that is also an absl flag.

    Args:
        default: the flag's default.
        help: the flag's help text.
        choices: fixed allowed values (an enum flag).
        registry: `"module:ATTR"` of the `ktransfer.registry.Registry` whose names are the
            allowed values (added to `choices`, if any); checked in pre-flight.
        auto: a value that may also be `auto`: a learning rate (held as AUTO_LR) or a batch
            size (held as AUTO_BATCH).
        from_run: a command's (evaluate, predict) copy of a run field of the same name: unset
            ("" or FROM_RUN) it takes the value the model's run was trained with.
        reading: a field of a declared group (`config.groups`) that says how examples are read
            (a bad-input policy, table columns): `evaluate` and `predict` take it too, with
            `from_run` defaults.
    """
    return field(default=default, metadata={"help": help, "choices": choices,
                                            "registry": registry, "auto": auto,
                                            "from_run": from_run, "reading": reading})


def require(cond: bool, flag: str, message: str) -> None:
    """Raises ConfigError(flag, message) unless `cond`."""
    if not cond:
        raise ConfigError(flag, message)
