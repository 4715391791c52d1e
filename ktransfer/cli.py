"""Shared plumbing of the command-line entry points: quiet TF logs, flags from the config
dataclasses (choices from the registries), one-line errors and exit codes.

Each entry point is thin: flags -> one frozen config -> one library call.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported

import gc  # noqa: E402
import io  # noqa: E402
import logging as std_logging  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402
import threading  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

from absl import app, flags, logging  # noqa: E402

from ktransfer import __version__, config, preflight  # noqa: E402
from ktransfer.config.groups import recipes  # noqa: E402
from ktransfer.errors import KtransferError  # noqa: E402
from ktransfer.registry import import_object, registry_at  # noqa: E402
from ktransfer.runs import provenance  # noqa: E402

EXIT_USAGE = 2
HELP_FLAGS = ("--help", "-h", "-?", "--helpshort")
VERSION_FLAGS = ("--version",)
# What TensorFlow's C++ side and the image codecs print on their own (absl-format lines of .cc
# files: "I0000 00:00:1.2 123 cudart_stub.cc:31] Could not find cuda drivers", libjpeg's
# warnings): shown only with --verbosity=1 or more, or KTRANSFER_NATIVE_LOGS=1.
NATIVE_LINE = re.compile(rb"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+\.(?:cc|h|cpp|c):\d+\] "
                         rb"|WARNING: All log messages before absl::InitializeLog\(\)"
                         rb"|To enable the following instructions: .* rebuild TensorFlow"
                         rb"|Premature end of JPEG file|Corrupt JPEG data"
                         rb"|Improper call to JPEG library)")
_SHOW_NATIVE = threading.Event()
_FLUSH = b"\x00ktransfer: flush\n"  # written to fd 2 to learn that the filter caught up
_FLUSHED = threading.Event()
_FILTERING = threading.Event()
_GROUPS: dict[str, type] = {}  # the running command's config groups, for --help
_EXTRA: list[str] = []  # flags of the command outside the config (e.g. --list_backbones)
EXIT_INTERRUPTED = 130  # as a shell reports a process ended by Ctrl-C


def define_flags(groups: dict[str, type]) -> None:
    """One absl flag per field of `groups`. Registry-backed fields are plain strings here, so
    that parsing the flags and checking the config's rules load no registry (and no
    TensorFlow): a bad value is refused in a fraction of a second, and a name no registry
    holds is refused by pre-flight, naming the flag and the choices. `--help` lists them."""
    config.define_flags(flags.FLAGS, groups)
    _GROUPS.update(groups)


def load(path: str, cfg: Any = None) -> Any:
    """The library function a command runs (`"package.module:function"`), imported once the
    flags have been parsed and the config built, and `cfg`'s registry and backbone names
    checked (`preflight.check_names`, from light registries): TensorFlow loads only for a
    valid command, so any bad flag is refused in about a second."""
    if cfg is not None:
        preflight.check_names(cfg)
    return import_object(path)


def define_extra(name: str, default: bool, helptext: str) -> None:
    """A command's own boolean flag outside the config (listed by --help as well)."""
    flags.DEFINE_bool(name, default, helptext)
    _EXTRA.append(name)


def _describe(flag: Any, field: Any = None) -> list[str]:
    """--help lines of one flag: its form, default and choices, then its help wrapped; the
    choices of a registry-backed config `field` come from its registry (loaded for --help)."""
    name = flag.name
    choices = getattr(flag.parser, "enum_values", None)
    helptext = flag.help
    if choices and helptext.startswith("<"):  # absl put the choices in front
        helptext = helptext.split(": ", 1)[-1]
    if field is not None and field.metadata.get("registry"):
        found = registry_at(field.metadata["registry"])
        choices = [*(field.metadata.get("choices") or ()), *found.names()]
        helptext = f"{helptext} Choices: {found.describe()}."
    default = flag.default
    shown = (",".join(map(str, default)) if isinstance(default, list | tuple)
             else str(default).lower() if isinstance(default, bool) else str(default))
    if isinstance(default, bool):
        head = f"  --[no]{name}  (default: {shown})"
    else:
        value = f"<{'|'.join(choices)}>" if choices else flag.flag_type()
        head = f"  --{name}={value}  (default: {shown!r})"
    others = [f"--modality={m}: {r[name]}" for m, r in recipes().items() if name in r]
    if others:
        head = head[:-1] + f"; {', '.join(others)})"
    return [head, *textwrap.wrap(helptext, width=96, initial_indent="      ",
                                 subsequent_indent="      ")]


def usage(prog: str, groups: dict[str, type] | None = None, extra: list[str] | None = None,
          flag_values: Any = None) -> str:
    """The command's --help: its own flags grouped as the config groups them, with defaults
    and choices (absl's and TensorFlow's own flags are in --helpfull). Defaults: the running
    command's groups and flags."""
    fv = flag_values if flag_values is not None else flags.FLAGS
    groups = _GROUPS if groups is None else groups
    extra = _EXTRA if extra is None else extra
    lines = [f"usage: python -m {prog} [--flagfile=FILE] [--name=value ...]", "",
             *textwrap.wrap("Flags are read in order: one given after --flagfile overrides the "
                            "file's value, one given before it is overridden by the file. "
                            "absl's own flags: --helpfull.", width=100), ""]
    for group, cls in groups.items():
        doc = " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())  # 1st paragraph
        lines += textwrap.wrap(f"{group}: {doc}", width=100, subsequent_indent="  ")
        for f in config.options(cls):
            lines += _describe(fv[f.name], f)
        lines.append("")
    if extra:
        lines.append("other:")
        for name in extra:
            lines += _describe(fv[name])
    return "\n".join(lines).rstrip() + "\n"


def quiet_native_logs() -> None:
    """Routes what is written to the process's stderr (fd 2) by native code through a filter
    that drops TensorFlow's and the codecs' own log lines (`NATIVE_LINE`) unless they are
    asked for; Python's stderr (ktransfer's messages and errors) keeps the real one, so
    nothing of ours is delayed or lost."""
    if os.environ.get("KTRANSFER_NATIVE_LOGS") == "1" or sys.stderr is not sys.__stderr__:
        return  # asked for, or stderr is already someone else's (a test's capture, a filter)
    try:
        real = os.dup(2)
        read, write = os.pipe()
        os.dup2(write, 2)
        os.close(write)
    except OSError:
        return
    stream = io.TextIOWrapper(io.FileIO(real, "w", closefd=False), encoding="utf-8",
                              errors="backslashreplace", line_buffering=True)
    sys.stderr = stream
    logging.get_absl_handler().python_handler.stream = stream
    threading.Thread(target=_pump, args=(read, real), daemon=True, name="native-logs").start()
    _FILTERING.set()


def flush_native_logs() -> None:
    """Waits (at most 2 s) until the filter has passed on what native code wrote so far, so
    that a one-line error printed next is the last line, after any codec message it
    explains."""
    if _FILTERING.is_set():
        _FLUSHED.clear()
        os.write(2, _FLUSH)  # a pipe keeps order: when the pump reads this, it has the rest
        _FLUSHED.wait(timeout=2.0)


def _pump(read: int, real: int) -> None:
    """Copies native stderr lines to the real stderr, leaving out the unasked-for log lines."""
    with os.fdopen(read, "rb") as lines:
        for line in lines:
            if line.endswith(_FLUSH):  # after the unfinished start of a native line, if any
                line = line[:-len(_FLUSH)] and line[:-len(_FLUSH)] + b"\n"
                _FLUSHED.set()
            if line and (_SHOW_NATIVE.is_set() or not NATIVE_LINE.match(line)):
                os.write(real, line)


def run(main: Callable[[list[str]], int | None], prog: str, positional: bool = False) -> None:
    """Parses flags with absl and runs `main`; a KtransferError becomes one line on stderr.

    `positional`: `main` takes arguments after the flags (e.g. files); otherwise they are an
    error."""

    def guarded(argv: list[str]) -> int | None:
        if flags.FLAGS["verbosity"].present and flags.FLAGS.verbosity >= 1:
            _SHOW_NATIVE.set()
        logging.set_verbosity(logging.INFO)
        logging.get_absl_handler().setFormatter(  # "12:03:44 message", not glog's prefix
            std_logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
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
            flush_native_logs()
            print(f"{prog}: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt:
            flush_native_logs()
            print(f"{prog}: interrupted; what was written is kept (a training run resumes "
                  "from its last finished epoch with the same command)", file=sys.stderr)
            return EXIT_INTERRUPTED
        finally:
            _freeze_heap()  # everything: the process exits next

    def parse(argv: list[str]) -> list[str]:
        if any(arg in HELP_FLAGS for arg in argv[1:]):
            sys.stdout.write(usage(prog))
            sys.exit(0)
        if any(arg in VERSION_FLAGS for arg in argv[1:]):
            print(f"{prog} {version()}")
            sys.exit(0)
        try:
            return flags.FLAGS(argv)
        except flags.Error as exc:
            print(f"{prog}: error: {exc} (see --helpshort)", file=sys.stderr)
            sys.exit(EXIT_USAGE)

    quiet_native_logs()
    app.run(guarded, flags_parser=parse)


def version() -> str:
    """The installed ktransfer's version (the package's own when it is not installed)."""
    return provenance.version(unknown=__version__)


def _freeze_heap() -> None:
    """Moves every live object out of the garbage collector's reach (`gc.freeze`): objects
    that live until the process exits need not be scanned by every full collection (0.2-0.3 s
    each over TensorFlow's and Keras's objects on 2 CPU cores), nor by the interpreter's final
    collections, which took 1-2 s after a MobileNetV2 run (0.1-0.2 s frozen). Exit handlers,
    file flushing and finalizers run as before; the memory goes back with the process. Only
    the entry points do this: a notebook that trains many models needs the collector.
    """
    gc.freeze()
