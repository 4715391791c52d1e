"""The run directory: one folder per training run holding everything needed to inspect or repeat it.

Layout: flags.cfg (re-runnable flagfile), labels.txt, history.csv, metrics.json, model.keras,
backbone.weights.h5, checkpoints/{best,last}.keras, tensorboard/.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from ktransfer import atomic
from ktransfer.config import RunConfig, to_flagfile
from ktransfer.errors import ConfigError

FLAGFILE = "flags.cfg"


def default_run_dir(backbone: str) -> Path:
    return Path("runs") / f"{backbone.lower()}-{time.strftime('%Y%m%d-%H%M%S')}"


RESUME_DIR = "resume"
# Flags that may differ between a killed run and the command that resumes it.
_NOT_COMPARED = ("verbose", "overwrite", "print_model", "run_dir")


def _comparable(flagfile_text: str) -> list[str]:
    lines = []
    for line in flagfile_text.splitlines():
        name = line[2:].split("=", 1)[0] if line.startswith("--") else ""
        if not name or name in _NOT_COMPARED or name[2:] in _NOT_COMPARED:
            continue
        lines.append(line)
    return lines


def run_path(cfg: RunConfig) -> Path:
    return Path(cfg.train.run_dir) if cfg.train.run_dir else default_run_dir(cfg.model.backbone)


def resume_state(cfg: RunConfig) -> dict | None:
    """The saved state of an unfinished run in --run_dir that these flags can continue, or None.

    A finished run (metrics.json written, resume state removed) is not resumable, and an
    unfinished run with different flags is an error, unless --overwrite.
    """
    path = run_path(cfg)
    state_file = path / RESUME_DIR / "state.json"
    if cfg.train.overwrite or not state_file.is_file() or (path / "metrics.json").exists():
        return None
    saved = (path / FLAGFILE).read_text() if (path / FLAGFILE).is_file() else ""
    if _comparable(saved) != _comparable(to_flagfile(cfg)):
        changed = sorted(set(_comparable(to_flagfile(cfg))) ^ set(_comparable(saved)))
        raise ConfigError("run_dir", f"{str(path)!r} holds an unfinished run with other flags "
                          f"({', '.join(changed[:3])}); run the same command to resume it, "
                          "or pass --overwrite to start fresh")
    try:
        return json.loads(state_file.read_text())
    except (OSError, ValueError):
        return None


def finish(path: Path) -> None:
    """Removes the resume state of a finished run."""
    shutil.rmtree(path / RESUME_DIR, ignore_errors=True)


def prepare(cfg: RunConfig, resuming: bool = False) -> Path:
    """Creates the run directory; refuses to reuse a non-empty one unless --overwrite (or
    `resuming` the unfinished run in it)."""
    path = run_path(cfg)
    if resuming:
        return path
    if path.exists() and not path.is_dir():
        raise ConfigError("run_dir", f"{str(path)!r} is a file; give a folder path")
    if path.is_dir() and any(path.iterdir()):
        if not cfg.train.overwrite:
            raise ConfigError("run_dir", f"{str(path)!r} already holds a run; pass --overwrite "
                              "to replace it or choose another --run_dir")
        if not (path / FLAGFILE).exists():
            raise ConfigError("run_dir", f"{str(path)!r} is not empty and is not a ktransfer run "
                              f"directory (no {FLAGFILE}); refusing to delete it")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_flagfile(path: Path, cfg: RunConfig) -> None:
    """Writes the fully resolved flags; `ktransfer.train --flagfile=RUN/flags.cfg` repeats the run
    (with --overwrite, or another --run_dir)."""
    header = ("Resolved flags of this run, written by ktransfer.train.\n"
              f"Re-run: python -m ktransfer.train --flagfile={path / FLAGFILE} --overwrite")
    atomic.write_text(path / FLAGFILE, to_flagfile(cfg, header))
