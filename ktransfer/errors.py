"""Errors that reach the user as one line, naming the flag or file at fault."""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class KtransferError(Exception):
    """A problem the user can fix; the CLI prints it as one line and exits 2."""


class ConfigError(KtransferError):
    """A bad flag value. `flag` is the flag name without dashes."""

    def __init__(self, flag: str, message: str):
        self.flag = flag
        super().__init__(f"--{flag}: {message}")


class DataError(KtransferError):
    """A data source that cannot be read (missing folder, no images, offline tfds...)."""


class WeightsError(KtransferError):
    """Pretrained weights that cannot be found or downloaded."""


class DiskFullError(KtransferError):
    """The disk filled up while a file was written; the previous version of it is kept."""


class TrainingError(KtransferError):
    """Training cannot go on (e.g. the loss became NaN); what was written is kept."""
