"""The run directory: one folder per training run holding everything needed to inspect, resume
or repeat it.

Layout: flags.cfg (re-runnable flagfile), labels.txt, history.csv, lr.csv, metrics.json,
model.keras, backbone.weights.h5, checkpoints/{best,last}.keras, tensorboard/, report.html, resume/
(while unfinished). Two hidden files make it safe to share a disk with people:

- `.ktransfer-run` (the marker, written first, holding the run's id): only a folder with it is
  ever deleted by `--overwrite`, and never through a symbolic link;
- `.lock`, held with `fcntl.flock` while a process uses the run, so a second process on the same
  `--run_dir` stops at once; the OS releases it when the process dies, so a killed run never
  leaves a stale lock.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import json
import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from ktransfer.config import AUTO_BATCH, AUTO_LR, RunConfig, parse_flagfile, to_flagfile
from ktransfer.errors import ConfigError
from ktransfer.runs import atomic

FLAGFILE = "flags.cfg"
MARKER = ".ktransfer-run"
LOCK = ".lock"
RESUME_DIR = "resume"
STATE = "state.json"
HISTORY = "flags.history"
CARD_FILES = ("MODEL_CARD.md", "model_card.json")  # the model card, copied into exports
# Flags that may differ between a killed run and the command that resumes it.
_NOT_COMPARED = ("verbose", "overwrite", "print_model", "run_dir", "track", "tracking_uri",
                 "experiment")
# After a NaN stop these may change too: the documented recovery resumes from the last good
# epoch with other optimizer settings.
RECOVERY_FLAGS = ("lr", "fine_tune_lr", "warmup_epochs", "optimizer", "momentum",
                  "weight_decay", "lr_schedule", "decay_rate", "cosine_alpha", "step_every",
                  "step_factor", "lr_layer_decay", "label_smoothing")


def default_run_dir(cfg: RunConfig) -> Path:
    """runs/DATA[-TASK]-BACKBONE-TIME: what ran, when (the task only when it is not the
    default single_label), e.g. runs/reviews-multi_label-minilm-20261207-061312."""
    data = Path(cfg.data.data.split(":", 1)[-1].rstrip("/")).stem or "data"
    parts = [data, *([cfg.data.task] if cfg.data.task != "single_label" else []),
             cfg.model.backbone.lower().rstrip("/").split("/")[-1].split(":")[-1],
             time.strftime("%Y%m%d-%H%M%S")]
    return Path("runs") / "-".join(re.sub(r"[^A-Za-z0-9_.-]+", "_", p).strip("_.") or "x"
                                   for p in parts)


def run_path(cfg: RunConfig) -> Path:
    return Path(cfg.train.run_dir) if cfg.train.run_dir else default_run_dir(cfg)


def with_run_dir(cfg: RunConfig) -> RunConfig:
    """`cfg` with its run directory fixed: the default (from the clock) is derived once, at
    the start of a run, so that every later step names the same folder."""
    if cfg.train.run_dir:
        return cfg
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train,
                                                              run_dir=str(run_path(cfg))))


def _comparable(flagfile_text: str, also: tuple[str, ...] = ()) -> list[str]:
    """The flag lines that must match to resume (`also`: more flags that may differ)."""
    skip = _NOT_COMPARED + also
    lines = []
    for line in flagfile_text.splitlines():
        name = line[2:].split("=", 1)[0] if line.startswith("--") else ""
        if not name or name in skip or name[2:] in skip:
            continue
        lines.append(line)
    return lines


def is_run_dir(path: Path) -> bool:
    """Whether `path` is a ktransfer run directory (it holds the marker file)."""
    return (path / MARKER).is_file() and not path.is_symlink()


def is_finished(path: Path) -> bool:
    """A finished run: metrics.json written and no resume state left."""
    return (path / "metrics.json").is_file() and not (path / RESUME_DIR).exists()


def lock_holder(path: Path) -> int | None:
    """The pid of another live process holding the run's lock, or None (free or no lock)."""
    lock = path / LOCK
    if not lock.is_file():
        return None
    with open(lock) as f:  # read-only: a folder that cannot be written can still be asked
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            text = f.read().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(f, fcntl.LOCK_UN)
    return None


def _locked_message(path: Path, pid: int) -> str:
    who = f"process {pid}" if pid > 0 else "another process"
    return (f"{str(path)!r} is in use by another ktransfer run ({who}); wait for it to finish "
            "or choose another --run_dir")


def _saved_flags(path: Path) -> str:
    return (path / FLAGFILE).read_text() if (path / FLAGFILE).is_file() else ""


def _check_same_flags(path: Path, cfg: RunConfig) -> None:
    """An unfinished run continues only with its own flags (none saved yet: anything goes);
    after a NaN stop, its optimizer flags may change (RECOVERY_FLAGS)."""
    if not (path / FLAGFILE).is_file():
        return
    also: tuple[str, ...] = RECOVERY_FLAGS if (read_state(path) or {}).get("nan_stop") else ()
    # --lr=auto resumes with the rate its range test chose (the one in flags.cfg).
    also += tuple(name for name in ("lr", "fine_tune_lr") if getattr(cfg.train, name) == AUTO_LR)
    if cfg.data.batch_size == AUTO_BATCH:  # and --batch_size=auto with the batch it found
        also += ("batch_size", "accumulate")
    saved, ours = _comparable(_saved_flags(path), also), _comparable(to_flagfile(cfg), also)
    if saved != ours:
        changed = sorted(set(ours) ^ set(saved))
        after_nan = "" if also else " (after a NaN stop, optimizer flags such as --lr may)"
        raise ConfigError("run_dir", f"{str(path)!r} holds an unfinished run with other flags "
                          f"({', '.join(changed[:3])}); run the same command to resume it"
                          f"{after_nan}, or pass --overwrite to start fresh")


def check(cfg: RunConfig) -> None:
    """Pre-flight: raises ConfigError when `--run_dir` cannot be used as asked (a file, a
    finished run without --overwrite, a foreign folder, another run's flags, in use)."""
    path = run_path(cfg)
    if path.exists() and not path.is_dir():
        raise ConfigError("run_dir", f"{str(path)!r} is a file; give a folder path")
    if not path.is_dir() or not any(path.iterdir()):
        return
    if path.is_symlink():
        raise ConfigError("run_dir", f"{str(path)!r} is a symbolic link; ktransfer neither "
                          "writes through nor deletes links: give the folder it points to, or "
                          "another --run_dir")
    if not is_run_dir(path):
        raise ConfigError("run_dir", f"{str(path)!r} is not empty and is not a ktransfer run "
                          f"directory (no {MARKER} file); refusing to use or delete it: choose "
                          "another --run_dir")
    holder = lock_holder(path)
    if holder is not None:
        raise ConfigError("run_dir", _locked_message(path, holder))
    if cfg.train.overwrite:
        return
    if is_finished(path):
        raise ConfigError("run_dir", f"{str(path)!r} already holds a run; pass --overwrite to "
                          "replace it or choose another --run_dir")
    _check_state_readable(path)
    _check_same_flags(path, cfg)


def run_id(path: Path) -> str:
    """The id the run's marker holds (new for every fresh start of the folder)."""
    try:
        return str(json.loads((path / MARKER).read_text()).get("id", ""))
    except (OSError, ValueError, AttributeError):
        return ""


def _check_state_readable(path: Path) -> None:
    """An unfinished run whose resume state is damaged (empty, truncated) is refused, not
    restarted: restarting would delete its finished epochs, checkpoints and history."""
    state = path / RESUME_DIR / STATE
    if state.is_file() and read_state(path) is None:
        raise ConfigError("run_dir", f"{str(state)!r} is unreadable (empty or truncated: a "
                          "full disk?); nothing was deleted. Pass --overwrite to start this run "
                          "again from scratch, or choose another --run_dir")


def read_state(path: Path) -> dict[str, Any] | None:
    """The resume state of an unfinished run (None when there is none or it is unreadable)."""
    try:
        return json.loads((path / RESUME_DIR / STATE).read_text())
    except (OSError, ValueError):
        return None


def resume_state(cfg: RunConfig) -> dict[str, Any] | None:
    """The saved state of an unfinished run in --run_dir that these flags continue, or None
    (fresh start: no run there, nothing saved yet, or --overwrite). An unfinished run with
    other flags is a ConfigError."""
    path = run_path(cfg)
    if cfg.train.overwrite or not is_run_dir(path) or is_finished(path):
        return None
    state = read_state(path)
    if state is not None:
        _check_same_flags(path, cfg)
    return state


def resumed_flags(cfg: RunConfig) -> dict[str, Any] | None:
    """{flag: value} of the flags.cfg of the unfinished run these flags continue (what its
    `auto` values became), or None for a fresh start."""
    if resume_state(cfg) is None:
        return None
    return parse_flagfile(run_path(cfg) / FLAGFILE)


class Run:
    """An open run directory: created (or reused), locked and marked.

    Use as a context manager; `release()` unlocks. `resume` is the state to continue from, or
    None for a fresh start; `resume_dir` holds its weights (the chief's, for a multi-worker
    worker that writes elsewhere).
    """

    def __init__(self, path: Path, resume: dict[str, Any] | None, lock_file: Any,
                 resume_dir: Path | None = None):
        self.path = path
        self.resume = resume
        self.resume_dir = resume_dir or path / RESUME_DIR
        self._lock_file = lock_file

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release_lock(self) -> Any:
        """Hands the lock over (to a Run that replaces this one)."""
        lock, self._lock_file = self._lock_file, None
        return lock

    def release(self) -> None:
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None


def _lock(path: Path) -> Any:
    try:
        f = open(path / LOCK, "a+")
    except OSError as exc:
        raise ConfigError("run_dir", f"cannot write to {str(path)!r} ({exc.strerror or exc}); "
                          "choose a folder you can write to") from None
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise
        f.seek(0)
        text = f.read().strip()
        f.close()
        raise ConfigError("run_dir", _locked_message(path, int(text) if text.isdigit() else -1)
                          ) from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


def _clear(path: Path) -> None:
    """Deletes everything in the run directory but its lock (links are removed, never
    followed)."""
    for child in path.iterdir():
        if child.name == LOCK:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def open_run(cfg: RunConfig, resume_from: Path | None = None) -> Run:
    """Creates or reuses `--run_dir` as `check` allows, takes its lock and writes the marker.

    A fresh start (no saved state) clears the folder first, so an --overwrite or a run killed
    before its first epoch ended leaves nothing stale behind. `resume_from`: a multi-worker
    worker other than the chief writes into its own folder but continues from the chief's
    run directory (the same `--run_dir` on a shared file system), as every worker must.
    """
    if resume_from is not None:
        run = open_run(cfg)
        return Run(run.path, _shared_state(resume_from), run.release_lock(),
                   resume_from / RESUME_DIR)
    check(cfg)
    path = run_path(cfg)
    path.mkdir(parents=True, exist_ok=True)
    lock_file = _lock(path)
    try:
        state = resume_state(cfg)
        if state is None:
            _clear(path)
            atomic.write_json(path / MARKER, {"id": uuid.uuid4().hex, "created":
                                              time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    except BaseException:
        fcntl.flock(lock_file, fcntl.LOCK_UN)
        lock_file.close()
        raise
    return Run(path, state, lock_file)


def _shared_state(chief_run: Path) -> dict[str, Any] | None:
    """The chief's resume state, for a worker that restarts with it (None: start fresh)."""
    return None if is_finished(chief_run) else read_state(chief_run)


def mark_nan_stop(path: Path) -> None:
    """Records in the resume state that the run stopped on a NaN loss (see RECOVERY_FLAGS)."""
    state = read_state(path)
    if state is not None:
        atomic.write_json(path / RESUME_DIR / STATE, {**state, "nan_stop": True})


def finish(path: Path) -> None:
    """Removes the resume state of a finished run."""
    shutil.rmtree(path / RESUME_DIR, ignore_errors=True)


def write_flagfile(path: Path, cfg: RunConfig) -> None:
    """Writes the fully resolved flags; `ktransfer.train --flagfile=RUN/flags.cfg` repeats the run
    (with --overwrite, or another --run_dir)."""
    header = ("Resolved flags of this run, written by ktransfer.train.\n"
              f"Re-run: python -m ktransfer.train --flagfile={path / FLAGFILE} --overwrite")
    text = to_flagfile(cfg, header)
    old = _saved_flags(path)
    if old and _comparable(old) != _comparable(text):  # resumed with new optimizer flags
        history = (path / HISTORY).read_text() if (path / HISTORY).is_file() else ""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        atomic.write_text(path / HISTORY, f"{history}# flags until {stamp}\n{old}")
    atomic.write_text(path / FLAGFILE, text)
