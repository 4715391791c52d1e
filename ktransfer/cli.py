"""Shared plumbing of the command-line entry points: quiet TF logs, flags from the config
dataclasses (choices from the registries), one-line errors and exit codes.

Each entry point is thin: flags -> one frozen config -> one library call.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported

import gc  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402

from absl import app, flags, logging  # noqa: E402

from ktransfer import config  # noqa: E402
from ktransfer.errors import KtransferError  # noqa: E402
from ktransfer.registry import registry_at  # noqa: E402

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # as a shell reports a process ended by Ctrl-C


def define_flags(groups: dict[str, type]) -> None:
    """One absl flag per field of `groups`; enum choices of registry-backed fields are the
    registry's names, and their help ends with what each entry is (`Registry.describe`)."""
    config.define_flags(flags.FLAGS, groups, lambda path: registry_at(path).names(),
                        lambda path: registry_at(path).describe())


def run(main: Callable[[list[str]], int | None], prog: str, positional: bool = False) -> None:
    """Parses flags with absl and runs `main`; a KtransferError becomes one line on stderr.

    `positional`: `main` takes arguments after the flags (e.g. files); otherwise they are an
    error."""

    def guarded(argv: list[str]) -> int | None:
        logging.set_verbosity(logging.INFO)
        logging.get_absl_handler().use_absl_log_file = (  # type: ignore[method-assign]
            lambda *a, **k: None)
        if len(argv) > 1 and not positional:
            print(f"{prog}: error: unexpected arguments {' '.join(argv[1:])!r}; flags are "
                  "written --name=value", file=sys.stderr)
            return EXIT_USAGE
        _freeze_heap()  # the modules imported by now (TensorFlow, Keras: ~380k objects)
        try:
            return main(argv)
        except KtransferError as exc:
            print(f"{prog}: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt:
            print(f"{prog}: interrupted; what was written is kept (a training run resumes "
                  "from its last finished epoch with the same command)", file=sys.stderr)
            return EXIT_INTERRUPTED
        finally:
            _freeze_heap()  # everything: the process exits next

    def parse(argv: list[str]) -> list[str]:
        try:
            return flags.FLAGS(argv)
        except flags.Error as exc:
            print(f"{prog}: error: {exc} (see --helpshort)", file=sys.stderr)
            sys.exit(EXIT_USAGE)

    app.run(guarded, flags_parser=parse)


def _freeze_heap() -> None:
    """Moves every live object out of the garbage collector's reach (`gc.freeze`): objects
    that live until the process exits need not be scanned by every full collection (0.2-0.3 s
    each over TensorFlow's and Keras's objects on 2 CPU cores), nor by the interpreter's final
    collections, which took 1-2 s after a MobileNetV2 run (0.1-0.2 s frozen). Exit handlers,
    file flushing and finalizers run as before; the memory goes back with the process. Only
    the entry points do this: a notebook that trains many models needs the collector.
    """
    gc.freeze()
